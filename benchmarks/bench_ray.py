"""python benchmarks/bench_ray.py [--photos 16] [--side 1024] [--rounds 3] [--quick]

One question: what does `--ray` cost on one machine? `genrt stylize style-gravel photos/ -o out/` on the local
engine (one process, ONNX Runtime threads on all cores) against the same command with `--ray` (a local Ray instance
that the command starts and stops, one actor per core holding one model and one thread: `--cpus-per-actor 1`).
Each command runs in its own process, rounds interleaved, the whole command timed: what a user waits for. Two
folder sizes (1 photo and --photos) split each engine's time into a fixed cost (start-up, Ray's start, model loads)
and a cost per photo; images per second is one over the latter. The photos are scikit-image's sample photos resized
to --side on their longer side (1024: about 0.8 MP).

Then the figures the scaling plan in BENCHMARKS.md starts from: one 1 MP photo (1000x1000) through style-gravel
and through sr-x4 (x4: a 16 MP output) in this process, with 1 thread and with all cores (medians).

Needs: pip install "genrt[ray]" scikit-image
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine  # noqa: E402
from bench_peer_stylize import make_photos  # noqa: E402


def timed(command: list[str]) -> float:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def per_image_seconds(name: str, method: str, threads: int, repeats: int, side: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one side x side photo; CPU time is what a scaling plan counts in core-seconds,
    and is less inflated than wall time on a busy machine."""
    import genrt

    model = genrt.load(name, threads=threads)
    photo = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    run = getattr(model, method)
    run(photo)  # warm up: kernel choice, arena
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run(photo)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 photos of 256 px, 1 round: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.photos, args.side, args.rounds = 4, 256, 1

    genrt_cli = str(Path(sys.executable).with_name("genrt"))
    cpus = os.cpu_count() or 1
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        root = Path(tmp)
        for folder, count in (("many", args.photos), ("one", 1)):
            (root / folder).mkdir()
            make_photos(root / folder, count, args.side)
        engines = {
            "local engine": [],
            "--ray (local Ray)": ["--ray", "--cpus-per-actor", "1"],
        }
        times: dict[tuple[str, str], list[float]] = {(e, f): [] for e in engines for f in ("one", "many")}
        for _ in range(args.rounds):
            for folder in ("one", "many"):
                for engine, extra in engines.items():
                    command = [genrt_cli, "stylize", "style-gravel", str(root / folder), "-o", str(root / "out"),
                               "--overwrite", *extra]  # fmt: skip
                    times[(engine, folder)].append(timed(command))

    print(f"style-gravel on {args.photos} photos of {args.side} px (longer side), medians of {args.rounds} rounds:")
    rates = {}
    for engine in engines:
        one, many = (statistics.median(times[(engine, f)]) for f in ("one", "many"))
        slope = (many - one) / max(args.photos - 1, 1)
        rates[engine] = 1 / slope if slope > 0 else None
        split = f"fixed {one - slope:5.2f} s + {slope:5.3f} s a photo ({1 / slope:5.2f} img/s)" if slope > 0 else (
            "no split: the timings are noise at this size (more --photos or --rounds)")  # fmt: skip
        print(f"  {engine:18s} {many:7.2f} s for {args.photos} ({args.photos / many:5.2f} img/s in all); {split}")
    local, ray = rates["local engine"], rates["--ray (local Ray)"]
    if local and ray:
        print(f"  --ray's throughput once running: {ray / local:.2f}x the local engine's (on {cpus} CPUs)")

    repeats, side = (1, 256) if args.quick else (5, 1000)
    print(f"one photo of {side}x{side} ({side * side / 1e6:.2f} MP), in process, medians (wall, CPU seconds):")
    for name, method in (("style-gravel", "stylize"), ("sr-x4", "upscale")):
        single = per_image_seconds(name, method, 1, repeats, side)
        every = per_image_seconds(name, method, cpus, repeats, side)
        print(f"  {name:13s} 1 thread {single[0]:6.2f} s (CPU {single[1]:6.2f} s)   {cpus} threads {every[0]:6.2f} s")


if __name__ == "__main__":
    main()
