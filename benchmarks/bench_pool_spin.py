"""python benchmarks/bench_pool_spin.py [--threads 2] [--rounds 7]

Question: what does the 50 us spin of genrt's idle pool workers (GENRT_SPIN_US, read once per process) buy on
short kernels, against no spinning (GENRT_SPIN_US=0: workers sleep on a condition variable at once)?

Layers: the DCGAN-64 generator's middle transposed convolutions at batch 1 (0.1-0.3 ms each, where a futex
wake-up per parallel region is a visible share), through genrt.kernels.PackedConvTranspose2d. Each round starts
one child process per setting, in turn, and each child reports the median of 30 timings of 50 calls per layer;
printed are the medians over rounds and the ratio (no spin / spin).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

LAYERS = [(512, 256, 4), (256, 128, 8), (128, 64, 16)]  # C_in, C_out, input size; k4 s2 p1


def child(threads: int) -> None:
    import time

    import numpy as np

    from genrt import kernels

    rng = np.random.default_rng(0)
    out = {}
    for cin, cout, hw in LAYERS:
        x = rng.standard_normal((1, cin, hw, hw), dtype=np.float32)
        conv = kernels.PackedConvTranspose2d(
            rng.standard_normal((cin, cout, 4, 4), dtype=np.float32), stride=2, padding=1
        )
        for _ in range(20):
            conv(x, threads=threads)
        times = []
        for _ in range(30):
            t = time.perf_counter()
            for _ in range(50):
                conv(x, threads=threads)
            times.append((time.perf_counter() - t) / 50)
        out[f"{cin}->{cout} {hw}x{hw}"] = statistics.median(times)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.threads)
        return
    settings = {"spin 50 us": "50", "no spin": "0"}
    results: dict = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, value in settings.items():
            env = dict(os.environ, GENRT_SPIN_US=value)
            cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads)]
            results[name].append(json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True).stdout))
    print(f"threads={args.threads}, {args.rounds} rounds, medians in ms")
    print(f"{'layer (batch 1)':<22}{'spin 50 us':>12}{'no spin':>10}{'no spin / spin':>16}")
    for layer in results["no spin"][0]:
        spin = statistics.median(r[layer] for r in results["spin 50 us"])
        none = statistics.median(r[layer] for r in results["no spin"])
        print(f"{layer:<22}{spin * 1e3:>12.3f}{none * 1e3:>10.3f}{none / spin:>15.2f}x")


if __name__ == "__main__":
    main()
