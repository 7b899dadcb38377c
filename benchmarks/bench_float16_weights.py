"""python benchmarks/bench_float16_weights.py RUN... (training/style.py run folders, e.g. runs/style-gravel)

Question: what do float16-stored weights (genrt.export(weights="float16"), how the bundled stylizers ship) cost in
output fidelity, and save in bytes? For each run, its checkpoint is exported again with float32 weights and both
files run through genrt.load on scikit-learn's china.jpg and flower.jpg (256 pixels, every style of a multi-style
model); prints the PSNR of the float16 file's uint8 output against the float32 file's, and both file sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import genrt
from training import style
from training.style_eval import _photos


def compare(run: Path, folder: Path) -> str:
    cfg = style.StyleConfig(**json.loads((run / "config.json").read_text()))
    names = [style.load_style(s.strip(), 32)[0] for s in cfg.style.split(",") if s.strip()]
    net = style.TransformerNet(cfg.width, cfg.blocks, cfg.upsample, styles=len(names))
    style.load_checkpoint(run, net, torch.optim.Adam(net.parameters()))
    half = run / "stylizer.onnx"
    full = style.export_stylizer(
        net, dataclasses.replace(cfg, export_weights="float32"), names, cfg.loss_net, folder / f"{run.name}.onnx"
    )
    a, b = genrt.load(half), genrt.load(full)
    psnr = []
    for photo in _photos():
        for s in names if len(names) > 1 else [None]:
            x, y = a.stylize(photo, style=s).astype(np.float64), b.stylize(photo, style=s).astype(np.float64)
            psnr.append(10 * np.log10(255**2 / max(((x - y) ** 2).mean(), 1e-12)))
    return (
        f"| {run.name} | {min(psnr):.1f} | {np.mean(psnr):.1f} | {half.stat().st_size / 1e6:.2f} | "
        f"{full.stat().st_size / 1e6:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print("| run | PSNR min dB | PSNR mean dB | float16 file MB | float32 file MB |")
    print("|---|--:|--:|--:|--:|")
    with tempfile.TemporaryDirectory() as folder:
        for run in args.runs:
            print(compare(run, Path(folder)), flush=True)


if __name__ == "__main__":
    main()
