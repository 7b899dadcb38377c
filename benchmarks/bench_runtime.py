"""python benchmarks/bench_runtime.py [--threads 2] [--rounds 5] [--cases dcgan-b1 dcgan-b64 johnson-256 ...]

Question: does genrt.load run models that people export themselves faster than a plain onnxruntime session, and
than torch eager? Models (tests/reference_nets.py, random weights):
- pytorch/examples' DCGAN-64 generator, z shaped (N, 100, 1, 1), at batch 1 and 64;
- Johnson et al. 2016's image transformation network (width 32, five residual blocks) exported with dynamic
  height and width, called at 256x256, 512x512 and 1024x1024 (batch 1).

genrt.load runs genrt's native export (ONNX Runtime plus genrt's kernels, ConvTranspose layers rewritten where
genrt's kernel measured faster for the call's shape class); plain onnxruntime runs genrt's portable export (standard
ONNX ops only) with all default optimizations; torch eager runs the module. Each engine runs in its own process
(ONNX Runtime's spinning thread pools slow whatever runs next in the same process): every round starts one child per
engine, in turn, and each child prints the median of its timings per case. Printed are medians over rounds, the
ratios, the PSNR of genrt's output against plain ONNX Runtime's (outputs in [-1, 1] read as [0, 1]; this check runs
both engines in the parent, after the timings), and then, from ONNX Runtime's profiler, where the time goes in the
Johnson network (node time per op type) in genrt's session and in the plain one.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT / "benchmarks"))

CASES = {  # name: (network, input shape)
    "dcgan-b1": ("dcgan", (1, 100, 1, 1)),
    "dcgan-b64": ("dcgan", (64, 100, 1, 1)),
    "johnson-256": ("johnson", (1, 3, 256, 256)),
    "johnson-512": ("johnson", (1, 3, 512, 512)),
    "johnson-1024": ("johnson", (1, 3, 1024, 1024)),
}
ENGINES = ("genrt", "ort", "torch")


def _module(network: str):
    from tests.reference_nets import DCGANGenerator, JohnsonTransformer, dcgan_init, johnson_init

    return dcgan_init(DCGANGenerator()) if network == "dcgan" else johnson_init(JohnsonTransformer())


def _export(folder: Path) -> None:
    import torch

    import genrt

    z = torch.randn(2, 100, 1, 1)
    genrt.export(_module("dcgan"), folder / "dcgan.onnx", z, kind="generator")
    genrt.export(_module("dcgan"), folder / "dcgan-portable.onnx", z, kind="generator", portable=True)
    x = torch.randn(1, 3, 64, 64)
    genrt.export(_module("johnson"), folder / "johnson.onnx", x, kind="stylizer")
    genrt.export(_module("johnson"), folder / "johnson-portable.onnx", x, kind="stylizer", portable=True)


def _runner(engine: str, folder: Path, network: str, threads: int):
    """A function running one input on `engine`, plus a note on which kernels it uses."""
    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
        net = _module(network)

        def run(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()

        return run, ""
    if engine == "genrt":
        import genrt

        model = genrt.load(folder / f"{network}.onnx", threads=threads)
        return model, model
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if os.environ.get("BENCH_PROFILE"):
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(os.environ["BENCH_PROFILE"], "ort-profile")
    session = ort.InferenceSession(
        str(folder / f"{network}-portable.onnx"), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})[0]), session


def child(engine: str, folder: Path, cases: list[str], threads: int, profile_runs: int) -> None:
    import numpy as np

    out = {}
    runners = {}
    for case in cases:
        network, shape = CASES[case]
        if network not in runners:
            runners[network] = _runner(engine, folder, network, threads)
        run, _ = runners[network]
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        if profile_runs:
            for _ in range(profile_runs + 1):
                run(x)
            continue
        run(x)  # first call: genrt decides this shape class (from the cache after the first round)
        times, start = [], time.perf_counter()
        while len(times) < 7 or (len(times) < 50 and time.perf_counter() - start < 3.0):
            t0 = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t0)
        out[case] = {"s": statistics.median(times)}
        if engine == "genrt":
            out[case]["kernels"] = runners[network][1].kernels
    runners.clear()  # releases the sessions, which writes ORT's profiles
    print(json.dumps(out))


def _spawn(engine, folder, cases, threads, env=None, profile_runs=0) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--dir", str(folder), "--threads", str(threads)]
    cmd += ["--cases", *cases, "--profile-runs", str(profile_runs)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{engine} child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _op_times(folder: Path) -> dict:
    """Milliseconds per run of each op type, over the profile JSONs in `folder` (genrt's nodes marked), leaving
    out each session's first run (it includes one-time work)."""
    totals: dict = {}
    runs = 0
    for path in folder.glob("*.json"):
        events = json.loads(path.read_text())
        model_runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
        if len(model_runs) < 2:
            continue  # a session that only answered the loader's questions
        runs += len(model_runs) - 1
        first_end = model_runs[0][1]
        for event in events:
            if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
                continue
            if event["ts"] <= first_end:
                continue
            op = event.get("args", {}).get("op_name", "?")
            if event["name"].removesuffix("_kernel_time").endswith("_genrt"):
                op += " (genrt)"
            totals[op] = totals.get(op, 0) + event["dur"]
    return {op: us / 1e3 / max(runs, 1) for op, us in totals.items()}


def _psnr_vs_ort(folder: Path, cases: list[str], threads: int) -> dict[str, float]:
    """PSNR of genrt.load's output against plain onnxruntime's on each case (outputs in [-1, 1] read as [0, 1])."""
    import numpy as np

    out = {}
    for case in cases:
        network, shape = CASES[case]
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        genrt_run, _ = _runner("genrt", folder, network, threads)
        ort_run, _ = _runner("ort", folder, network, threads)
        mse = float(np.mean(((genrt_run(x) - ort_run(x)) / 2.0) ** 2))
        out[case] = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--profile-runs", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.dir, args.cases, args.threads, args.profile_runs)
        return

    import onnxruntime as ort
    import torch
    from _util import machine

    import genrt

    print(f"machine: {machine()}; threads: {args.threads}; genrt {genrt.__version__} isa={genrt.kernels.cpu_isa()}; "
          f"onnxruntime {ort.__version__}; torch {torch.__version__}; rounds: {args.rounds}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _export(folder)
        env = {"GENRT_CACHE_DIR": str(folder / "cache")}  # kernel choices measured in round 1, reused after
        results: dict = {e: {c: [] for c in args.cases} for e in ENGINES}
        kernels = {}
        for _ in range(args.rounds):
            for engine in ENGINES:
                for case, value in _spawn(engine, folder, args.cases, args.threads, env).items():
                    results[engine][case].append(value["s"])
                    kernels.setdefault(case, value.get("kernels"))
        psnr = _psnr_vs_ort(folder, args.cases, args.threads)
        print(f"{'case':<12} | {'torch ms':>9} {'ORT ms':>9} {'genrt ms':>9} | {'vs ORT':>7} {'vs torch':>8} | "
              f"{'PSNR dB':>7} | kernels")  # fmt: skip
        for case in args.cases:
            t = {e: statistics.median(results[e][case]) for e in ENGINES}
            print(f"{case:<12} | {t['torch'] * 1e3:9.2f} {t['ort'] * 1e3:9.2f} {t['genrt'] * 1e3:9.2f} | "
                  f"{t['ort'] / t['genrt']:6.2f}x {t['torch'] / t['genrt']:7.2f}x | {psnr[case]:7.1f} | "
                  f"{kernels[case]}")  # fmt: skip
        johnson = [c for c in args.cases if c.startswith("johnson")]
        for case in johnson:
            shares = {}
            for engine, var in (("genrt", "GENRT_ORT_PROFILE"), ("ort", "BENCH_PROFILE")):
                prof = folder / f"profile-{engine}-{case}"
                prof.mkdir()
                _spawn(engine, folder, [case], args.threads, {**env, var: str(prof)}, profile_runs=10)
                shares[engine] = _op_times(prof)
            print(f"\n{case}: node time per op type, ms per run and share (ONNX Runtime profiler, 10 runs)")
            ops = sorted(
                set(shares["genrt"]) | set(shares["ort"]), key=lambda op: -max(s.get(op, 0) for s in shares.values())
            )
            total = {e: sum(shares[e].values()) for e in shares}
            print(f"  {'op':<24} {'genrt.load':>19} {'plain ORT':>19}")
            for op in ops + ["all nodes"]:
                cells = []
                for e in ("genrt", "ort"):
                    ms = total[e] if op == "all nodes" else shares[e].get(op, 0.0)
                    cells.append(f"{ms:8.2f} ms {ms / total[e]:6.1%}")
                print(f"  {op:<24} {cells[0]:>19} {cells[1]:>19}")


if __name__ == "__main__":
    main()
