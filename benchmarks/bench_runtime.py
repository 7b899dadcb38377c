"""python benchmarks/bench_runtime.py [--threads 2] [--batches 1 64]

Question: does genrt.load run an exported DCGAN-64 generator faster than a plain onnxruntime session would?

In one process, on the same latents and threads: genrt.load on genrt's native export (ONNX Runtime plus genrt's
kernels, ConvTranspose layers fused where genrt's kernel measured faster), a plain onnxruntime.InferenceSession on
genrt's portable export with all default optimizations, and torch eager on the module itself. Medians and ratios;
genrt and onnxruntime are timed in turn within each repeat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from _util import interleaved_medians, machine, median_time  # noqa: E402

import genrt  # noqa: E402


def dcgan64_generator(nz=100, ngf=64) -> torch.nn.Module:
    """The DCGAN paper's 64x64 generator: 100 -> 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x3."""

    def up(cin, cout, stride, pad):
        conv = torch.nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False)
        return [conv, torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]

    layers = [torch.nn.Unflatten(1, (nz, 1, 1))]
    layers += up(nz, ngf * 8, 1, 0) + up(ngf * 8, ngf * 4, 2, 1) + up(ngf * 4, ngf * 2, 2, 1) + up(ngf * 2, ngf, 2, 1)
    layers += [torch.nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), torch.nn.Tanh()]
    net = torch.nn.Sequential(*layers)
    torch.manual_seed(0)
    for m in net.modules():  # the paper's init, and BatchNorm statistics as after training
        if isinstance(m, torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; threads: {args.threads}; genrt {genrt.__version__} isa={genrt.kernels.cpu_isa()}; "
          f"onnxruntime {ort.__version__}; torch {torch.__version__}")  # fmt: skip
    net = dcgan64_generator()
    latents = {b: np.random.default_rng(b).standard_normal((b, 100), dtype=np.float32) for b in args.batches}
    # torch first: right after torch.onnx.export its eager calls were seen to be transiently slow.
    t_torch = {}
    with torch.inference_mode():
        for batch, z in latents.items():
            zt = torch.from_numpy(z)
            t_torch[batch] = median_time(lambda zt=zt: net(zt), repeats=9, min_time=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        z2 = torch.randn(2, 100)
        native = genrt.export(net, Path(tmp) / "g.onnx", z2, kind="generator")
        portable = genrt.export(net, Path(tmp) / "g-portable.onnx", z2, kind="generator", portable=True)
        model = genrt.load(native, threads=args.threads)  # measures and caches its layer choices on first load
        print(f"genrt kernels: {model.kernels or 'none'}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        plain = ort.InferenceSession(str(portable), options, providers=["CPUExecutionProvider"])
        name = plain.get_inputs()[0].name
        print(f"{'batch':>5} | {'torch ms':>9} {'ORT ms':>9} {'genrt ms':>9} | {'vs ORT':>7} {'vs torch':>8}")
        for batch, z in latents.items():
            got, want = model(z), plain.run(None, {name: z})[0]
            assert np.allclose(got, want, atol=1e-4), "genrt and onnxruntime disagree"
            medians = interleaved_medians(
                {"ort": lambda z=z: plain.run(None, {name: z}), "genrt": lambda z=z: model(z)}, repeats=21
            )
            t_ort, t_genrt = medians["ort"], medians["genrt"]
            print(f"{batch:5d} | {t_torch[batch] * 1e3:9.2f} {t_ort * 1e3:9.2f} {t_genrt * 1e3:9.2f} | "
                  f"{t_ort / t_genrt:6.2f}x {t_torch[batch] / t_genrt:7.2f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
