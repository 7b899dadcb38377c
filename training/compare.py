"""python -m training.compare --epochs 15 --seeds 0 1 2 --jobs 2 --out runs/compare

Plain DCGAN against each Improved-GAN technique, and DiffAugment, PacGAN, R1 and spectral norm, on digits.
Same budget, same seeds, the numbers of evaluate.py.

Each (technique, seed) pair trains ``python -m training.dcgan`` in its own process (one thread each, ``--jobs``
at a time), is evaluated through its exported ONNX file, and the table (mean +- std over seeds) is printed as
markdown and written to OUT/compare.md, with every number in OUT/compare.json. Finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

TECHNIQUES = {
    "plain": [],
    "feature matching": ["--feature-matching"],
    "minibatch discrimination": ["--minibatch-discrimination"],
    "historical averaging": ["--historical-averaging", "0.01"],
    "label smoothing": ["--label-smoothing", "0.1"],
    "VBN": ["--vbn"],
    # beyond Improved-GAN: data-efficient augmentation (Zhao et al. 2020), packing (Lin et al. 2018), the R1
    # penalty (Mescheder et al. 2018) and spectral normalization (Miyato et al. 2018)
    "DiffAugment": ["--diff-augment", "translation"],
    "PacGAN": ["--pack", "2"],
    "R1": ["--r1", "0.1"],
    "spectral norm": ["--spectral-norm"],
}
METRICS = ["coverage", "confidence", "frechet", "copy_fraction", "nn_ratio"]


def _run_one(name: str, flags: list[str], seed: int, args) -> dict:
    out = Path(args.out) / f"{name.replace(' ', '-')}-s{seed}"
    result_path = out / "eval.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    cmd = [sys.executable, "-m", "training.dcgan", "--dataset", "digits", "--epochs", str(args.epochs)]
    cmd += ["--seed", str(seed), "--out", str(out), "--threads", "1", "--no-progress", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.time()
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    seconds = time.time() - started
    subprocess.run(
        [sys.executable, "-m", "training.evaluate", str(out), "--json", str(result_path)],
        check=True,
        capture_output=True,
        env=env,
    )
    result = json.loads(result_path.read_text())
    result["train_seconds"] = seconds
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(results: dict[str, list[dict]]) -> str:
    head = "| technique | flag | coverage | confidence | Frechet | copy fraction | NN ratio | train s |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        cells = []
        for m in [*METRICS, "train_seconds"]:
            v = np.array([r[m] for r in runs], dtype=float)
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if m != "train_seconds" else f"{v.mean():.0f}")
        flag = " ".join(TECHNIQUES[name]) or "(none)"
        lines.append(f"| {name} | `{flag}` | " + " | ".join(cells) + " |")
    real = next(iter(results.values()))[0]
    lines.append(
        f"| real digits | | {real['real_coverage']:.3f} | {real['real_confidence']:.3f} | "
        f"{real['real_frechet']:.3f} | {real['real_copy_fraction']:.3f} | 1.000 | |"
    )
    return "\n".join(lines)


def seed_table(out: Path, table: dict[str, dict[int, float]], **extra) -> dict:
    """Rows of one number per seed (e.g. {"ssgan": {0: 0.95, 1: 0.96}}): per row mean, std (n - 1) and min;
    prints the markdown table, writes OUT/compare.json (with ``extra``) and returns what it wrote."""
    summary = {}
    for name, row in table.items():
        values = np.array(list(row.values()), dtype=float)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary[name] = {"mean": float(values.mean()), "std": std, "min": float(values.min())}
    seeds = list(next(iter(table.values())))
    print("| | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std |")
    print("|---|" + "---|" * (len(seeds) + 1))
    for name, row in table.items():
        cells = " | ".join(f"{row[s]:.4f}" for s in seeds)
        print(f"| {name} | {cells} | {summary[name]['mean']:.4f} +- {summary[name]['std']:.4f} |")
    result = {"per_seed": table, "summary": summary, **extra}
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.compare", description=__doc__.split("\n\n")[1].splitlines()[0]
    )
    parser.add_argument("--epochs", type=int, default=15, help="epochs per run, the same for all (15)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds, the same for all (0 1 2)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (2)")
    parser.add_argument("--only", nargs="+", choices=list(TECHNIQUES), help="a subset of the techniques")
    parser.add_argument("--out", default="runs/compare", help="folder of the runs and the table (runs/compare)")
    args = parser.parse_args(argv)
    names = args.only or list(TECHNIQUES)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jobs = [(n, s) for n in names for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda job: _run_one(job[0], TECHNIQUES[job[0]], job[1], args), jobs))
    results: dict[str, list[dict]] = {n: [] for n in names}
    for (n, _), r in zip(jobs, done, strict=True):
        results[n].append(r)
    md = table(results)
    print(md)
    (Path(args.out) / "compare.md").write_text(md + "\n")
    (Path(args.out) / "compare.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
