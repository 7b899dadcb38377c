"""Trains several DCGAN digit recipes side by side and prints the digit metrics along the way (one JSON line per
run and checkpoint), to choose the bundled dcgan-digits recipe.

    python scripts/sweep_dcgan_digits.py --device cuda --every 2100 --out runs/sweep \\
        base:0: r1-0.1:0:--r1=0.1 r1-0.1:1:--r1=0.1 sn:0:--spectral-norm

Each run is NAME:SEED:FLAGS (FLAGS comma-separated, added to BASE below, the recipe the sweep started from: the
bundle before R1) and trains in its own process (one CPU thread each; on a GPU they share it). Every ``--every``
steps the generator (eval mode) draws ``--n`` latents of seed 0, the images go through the same uint8 round trip
as ``genrt.load`` gives, and ``training.evaluate.evaluate_digits`` scores them; coverage is also given for the
first 2000 (the standard evaluation's size). No export: the point is the trajectory of each recipe, not a model
to ship.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's training package

BASE = "--epochs 600 --batch-size 128 --latent-dim 16 --diff-augment translation --historical-averaging 0.01".split()


def worker(name: str, seed: int, flags: list[str], args) -> None:
    import torch

    from training import dcgan, evaluate
    from training.loop import parse_config, train

    argv = BASE + flags + ["--seed", str(seed), "--out", f"{args.out}/{name}-s{seed}", "--device", args.device]
    argv += ["--no-progress", "--no-export", "--threads", "1", "--sample-every", "1000000000"]
    cfg = parse_config(dcgan.DCGANConfig, argv)
    z = torch.randn(args.n, cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    started = time.time()

    def on_step(step, parts, losses):
        if step % args.every:
            return
        G = parts.G.eval()
        with torch.no_grad():
            x = torch.cat([G(z[i : i + 2000].to(cfg.device)).cpu() for i in range(0, len(z), 2000)])
        G.train()
        x = evaluate.quantise(x)  # what genrt.load's uint8 images hold
        r = evaluate.evaluate_digits(x)
        row = {"name": name, "seed": seed, "step": step, "seconds": round(time.time() - started, 1)}
        row |= {"coverage": r["coverage"], "coverage_2000": evaluate.evaluate_digits(x[:2000])["coverage"]}
        row |= {k: r[k] for k in ("confidence", "frechet", "copy_fraction", "class_share")}
        print(json.dumps(row), flush=True)

    train(cfg, dcgan.build, on_step=on_step)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="NAME:SEED:FLAGS, FLAGS comma-separated (--r1=0.1,--k=2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    parser.add_argument("--every", type=int, default=2100, help="steps between evaluations (2100 = 150 epochs)")
    parser.add_argument("--n", type=int, default=20000, help="latents per evaluation (20000)")
    parser.add_argument("--out", default="runs/sweep", help="folder of the run folders (runs/sweep)")
    parser.add_argument("--deadline", type=float, default=0, help="stop every run after this many seconds (0: none)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    runs = []
    for spec in args.runs:
        name, seed, flags = spec.split(":", 2)
        runs.append((name, int(seed), [f for flag in flags.split(",") if flag for f in flag.split("=", 1)]))
    if args.worker is not None:
        worker(*runs[int(args.worker)], args)
        return 0

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    passed = sys.argv[1:] if argv is None else list(argv)
    procs = []
    for i in range(len(runs)):
        cmd = [sys.executable, os.path.abspath(__file__), *passed, "--worker", str(i)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    sel = selectors.DefaultSelector()
    for p in procs:
        sel.register(p.stdout, selectors.EVENT_READ)
    started, open_streams = time.time(), len(procs)
    while open_streams and not (args.deadline and time.time() - started > args.deadline):
        for key, _ in sel.select(timeout=5):
            line = key.fileobj.readline()
            if not line:
                sel.unregister(key.fileobj)
                open_streams -= 1
            elif line.startswith("{") or "Error" in line:
                print(line.rstrip(), flush=True)
    for p in procs:
        p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
