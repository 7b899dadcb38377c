"""python benchmarks/bench_conv_transpose.py [--threads 2] [--repeats 15] [--batches 1,16,64] [--allow-spinning]
[--bf16]

genrt's transposed convolution vs torch.nn.functional.conv_transpose2d vs ONNX Runtime (a one-node ConvTranspose
model on the CPU provider, the weight an initializer), float32, all on the same thread count, in one process with
the three interleaved per repeat (the machine may be shared, so medians of interleaved runs are what compare).
Layers: the DCGAN-64 generator's five transposed convolutions (100->512 k4 s1 p0 from 1x1, then k4 s2 p1 up to 64->3
at 64x64) at several batch sizes, and the Johnson et al. super-resolution / style-transfer upsampling layers (k3 s2
p1 op1 to 256x256). The ceiling is torch.mm (sgemm) of a comparable size on the same threads (numpy's OpenBLAS sgemm
is printed for reference). Idle thread pools are told not to spin (OMP_WAIT_POLICY=PASSIVE, ONNX Runtime's
session.intra_op.allow_spinning=0), else one framework's spinning threads take the cores of the next one timed;
--allow-spinning keeps the defaults.

genrt is timed as genrt.kernels.PackedConvTranspose2d (weights packed once, reused by every call: what ONNX
Runtime does with an initializer and what genrt's ONNX Runtime op does with constant weights), and also as the
stateless genrt.kernels.conv_transpose2d ("stateless ms", which packs or streams the weights on every call).

--bf16: instead, genrt's bfloat16 kernel (precision="bf16") against its float32 one, both packed once, interleaved,
on the same layers plus sr-x4's two upsampling layers (64->64 at 256x256 and 512x512): milliseconds, the ratio, and
the bfloat16 output's PSNR against float32 (peak: the float32 output's range).

Prints per layer: milliseconds (median), GFLOP/s (2 * N * C_in * H * W * C_out/groups * kH * kW useful flops),
ratios genrt/torch and genrt/ORT as speedups (their time / genrt's time), and genrt's rate as a fraction of sgemm.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Idle worker threads must not spin between calls: in one interleaved process, one framework's spinning pool
# would steal the cores of the next one timed (torch's OpenMP waits actively by default, ONNX Runtime's pool
# spins after each Run). Must be set before torch is imported. --allow-spinning keeps both defaults.
SPIN = "--allow-spinning" in sys.argv
if not SPIN:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# numpy's OpenBLAS (the reference sgemm) on the same thread count; read before numpy is imported.
_argv_threads = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--threads"), "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", _argv_threads)
if not SPIN:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # OpenBLAS workers spin 2**4 cycles, not 2**28

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from genrt import kernels  # noqa: E402

DCGAN = [  # name, cin, cout, hw, k, stride, padding, output_padding
    ("dcgan1 100->512 1->4", 100, 512, 1, 4, 1, 0, 0),
    ("dcgan2 512->256 4->8", 512, 256, 4, 4, 2, 1, 0),
    ("dcgan3 256->128 8->16", 256, 128, 8, 4, 2, 1, 0),
    ("dcgan4 128->64 16->32", 128, 64, 16, 4, 2, 1, 0),
    ("dcgan5 64->3 32->64", 64, 3, 32, 4, 2, 1, 0),
]
JOHNSON = [
    ("johnson 128->64 64->128", 128, 64, 64, 3, 2, 1, 1),
    ("johnson 64->32 128->256", 64, 32, 128, 3, 2, 1, 1),
]
SRX4 = [  # sr-x4 at a 256x256 input
    ("sr-x4 64->64 256->512", 64, 64, 256, 3, 2, 1, 1),
    ("sr-x4 64->64 512->1024", 64, 64, 512, 3, 2, 1, 1),
]


def ort_session(w, stride, padding, output_padding, threads):
    k = list(w.shape[2:])
    node = helper.make_node(
        "ConvTranspose",
        ["x", "w"],
        ["y"],
        strides=[stride] * 2,
        pads=[padding] * 4,
        output_padding=[output_padding] * 2,
        kernel_shape=k,
    )
    graph = helper.make_graph(
        [node],
        "ct",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not SPIN:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(fns, repeats, min_time=0.02):
    """Median seconds per call of each fn; every repeat runs each fn (inner-looped to >= min_time) in turn."""
    for f in fns:
        f()
    inner = [max(1, int(min_time / max(timed(f), 1e-6))) for f in fns]
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            for _ in range(inner[i]):
                f()
            times[i].append((time.perf_counter() - t) / inner[i])
    return [float(np.median(t)) for t in times]


def sgemm_rate(threads, repeats):
    """torch.mm and numpy (OpenBLAS) sgemm rates, GFLOP/s, for 2048x1024 @ 1024x1024 float32."""
    a = torch.randn(2048, 1024)
    b = torch.randn(1024, 1024)
    an, bn = a.numpy(), b.numpy()
    (tn,) = interleaved([lambda: an @ bn], repeats)  # separately: OpenBLAS threads may spin after a call
    (t,) = interleaved([lambda: torch.mm(a, b)], repeats)
    return 2 * 2048 * 1024 * 1024 / t / 1e9, 2 * 2048 * 1024 * 1024 / tn / 1e9


def bench_layer(spec, n, threads, repeats, rng):
    name, cin, cout, hw, k, s, p, op = spec
    x = rng.standard_normal((n, cin, hw, hw), dtype=np.float32)
    w = (rng.standard_normal((cin, cout, k, k), dtype=np.float32) / np.sqrt(cin * k)).astype(np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    sess = ort_session(w, s, p, op, threads)
    packed = kernels.PackedConvTranspose2d(w, stride=s, padding=p, output_padding=op)
    yg = packed(x, threads=threads)
    yt = torch.nn.functional.conv_transpose2d(xt, wt, stride=s, padding=p, output_padding=op)
    err = float(np.abs(yg - yt.numpy()).max())
    if err > 1e-3 * max(1.0, float(np.abs(yt.numpy()).max())):
        raise SystemExit(f"{name}: genrt differs from torch by {err}")
    fns = [
        lambda: packed(x, threads=threads),
        lambda: torch.nn.functional.conv_transpose2d(xt, wt, stride=s, padding=p, output_padding=op),
        lambda: sess.run(None, {"x": x}),
        lambda: kernels.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op, threads=threads),
    ]
    tg, tt, to, ts = interleaved(fns, repeats)
    flops = 2.0 * n * cin * hw * hw * cout * k * k
    return flops, tg, tt, to, ts


def bench_bf16(threads, repeats, batches, rng):
    """genrt bf16 against genrt f32 per layer (both PackedConvTranspose2d), interleaved."""
    print(f"threads={threads} isa={kernels.cpu_isa()}: genrt bf16 vs genrt f32 (packed weights), medians\n")
    print(f"{'layer':<26}{'batch':>6}{'f32 ms':>9}{'bf16 ms':>9}{'bf16 vs f32':>12}{'PSNR':>9}")
    runs = [(DCGAN, batches), (JOHNSON, [1]), (SRX4, [1])]
    for layers, ns in runs:
        for n in ns:
            for name, cin, cout, hw, k, s, p, op in layers:
                x = np.maximum(rng.standard_normal((n, cin, hw, hw), dtype=np.float32), 0)
                w = (rng.standard_normal((cin, cout, k, k), dtype=np.float32) / np.sqrt(cin * k)).astype(np.float32)
                f32, bf16 = (
                    kernels.PackedConvTranspose2d(w, stride=s, padding=p, output_padding=op, precision=prec)
                    for prec in ("f32", "bf16")
                )
                ref, out = f32(x, threads=threads), bf16(x, threads=threads)
                psnr = 10 * np.log10(np.ptp(ref) ** 2 / np.mean((ref - out).astype(np.float64) ** 2))
                calls = [lambda conv=conv, x=x: conv(x, threads=threads) for conv in (f32, bf16)]
                tf, tb = interleaved(calls, repeats)
                print(f"{name:<26}{n:>6}{tf * 1e3:>9.3f}{tb * 1e3:>9.3f}{tf / tb:>11.2f}x{psnr:>7.1f}dB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument(
        "--allow-spinning",
        action="store_true",
        help="leave torch's OpenMP and ONNX Runtime's pool spinning between calls (their defaults)",
    )
    ap.add_argument("--bf16", action="store_true", help="genrt bfloat16 against genrt float32 instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    if args.bf16:
        return bench_bf16(args.threads, args.repeats, [int(b) for b in args.batches.split(",")], rng)
    peak, peak_np = sgemm_rate(args.threads, args.repeats)
    print(
        f"threads={args.threads} isa={kernels.cpu_isa()} torch={torch.__version__} onnxruntime={ort.__version__}"
        f" spinning={'default' if SPIN else 'off'}"
    )
    print(
        f"sgemm ceiling (torch.mm 2048x1024 @ 1024x1024): {peak:.1f} GFLOP/s"
        f"  [numpy/OpenBLAS, for reference: {peak_np:.1f} GFLOP/s; 'of sgemm' is relative to torch.mm]\n"
    )
    hdr = (
        f"{'layer':<26}{'batch':>6}{'genrt ms':>10}{'torch ms':>10}{'ORT ms':>9}{'genrt GF/s':>11}"
        f"{'torch GF/s':>11}{'ORT GF/s':>9}{'vs torch':>9}{'vs ORT':>8}{'of sgemm':>9}{'stateless ms':>13}"
    )
    batches = [int(b) for b in args.batches.split(",")]
    runs = [("DCGAN-64 generator", DCGAN, batches), ("Johnson upsampling", JOHNSON, [1])]
    for model, layers, batches in runs:
        for n in batches:
            print(f"{model}, batch {n}")
            print(hdr)
            tot = np.zeros(5)
            big = np.zeros(2)
            for spec in layers:
                flops, tg, tt, to, ts = bench_layer(spec, n, args.threads, args.repeats, rng)
                tot += [flops, tg, tt, to, ts]
                if spec[0].startswith(("dcgan2", "dcgan3", "dcgan4")):
                    big += [flops, tg]
                print(
                    f"{spec[0]:<26}{n:>6}{tg * 1e3:>10.3f}{tt * 1e3:>10.3f}{to * 1e3:>9.3f}{flops / tg / 1e9:>11.1f}"
                    f"{flops / tt / 1e9:>11.1f}{flops / to / 1e9:>9.1f}{tt / tg:>8.2f}x{to / tg:>7.2f}x"
                    f"{flops / tg / 1e9 / peak:>9.0%}{ts * 1e3:>13.3f}"
                )
            f, tg, tt, to, ts = tot
            print(
                f"{'total':<26}{n:>6}{tg * 1e3:>10.3f}{tt * 1e3:>10.3f}{to * 1e3:>9.3f}{f / tg / 1e9:>11.1f}"
                f"{f / tt / 1e9:>11.1f}{f / to / 1e9:>9.1f}{tt / tg:>8.2f}x{to / tg:>7.2f}x"
                f"{f / tg / 1e9 / peak:>9.0%}{ts * 1e3:>13.3f}"
            )
            if big[0]:
                rate = big[0] / big[1] / 1e9
                print(
                    f"{'layers 2-4 (big three)':<26}{n:>6}{big[1] * 1e3:>10.3f}{'':>30}{rate:>11.1f}"
                    f"{'':>37}{rate / peak:>9.0%}"
                )
            print()


if __name__ == "__main__":
    main()
