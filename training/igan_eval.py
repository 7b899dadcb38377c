"""python -m training.igan_eval igan-digits [--n 100] [--grid out.png]

Projection quality of a manipulator on held-out real images (the last 450 digits, or the 20 held-out faces; the
first --n of them), through genrt's runtime as users run it. Mean PSNR (dB, on [0, 255] images) of:

- ``nearest of 1000 samples``: the closest of 1000 random G(z) (the baseline any projection must beat);
- ``encoder``: G(E(x)), E's guess alone;
- ``optimization, random starts``: project(..., encoder=False), 4 random starts;
- ``encoder + optimization``: project(...), E's guess and 3 random starts (what ``project`` does).

Then an edit check: for each of the first 20 images, a white colour stroke across the image's middle row is
applied to its projection (``edit``, k=1): the mean stroke-region intensity before and after, and, for digits,
the evaluation classifier's confidence (training/evaluate.py) on the projections and on the edits.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import genrt
from genrt.apps.manipulate import Stroke, rasterize
from genrt.image import make_grid, save_png, to_uint8_images
from training.igan import held_out_images

STROKE = {"tool": "color", "points": [[0.15, 0.5], [0.85, 0.5]], "width": 0.12, "color": [255, 255, 255]}


def _psnr255(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def evaluate(name: str, n: int = 100, grid: str | None = None) -> dict:
    m = genrt.load(name)
    data = m.metadata["dataset"]
    real = held_out_images(data, m.image_size[0])[:n].numpy()  # (n, C, H, W) in [-1, 1]
    real_u8 = to_uint8_images(real, (-1.0, 1.0))  # (n, H, W, C)
    samples = m.generate(m.sample_latents(1000, seed=123))
    rows = {"nearest of 1000 samples": [], "encoder": [], "optimization, random starts": [],
            "encoder + optimization": []}  # fmt: skip
    pictures = []
    started = time.time()
    for x in real_u8:
        d = ((samples.astype(np.float32) - x.astype(np.float32)) ** 2).mean((1, 2, 3))
        nearest = samples[int(np.argmin(d))]
        enc = m.generate(m.encoder(m.prepare_image(x)[None]))[0]
        rand = m.project(x, encoder=False).image
        full = m.project(x)
        rows["nearest of 1000 samples"].append(_psnr255(nearest, x))
        rows["encoder"].append(_psnr255(enc, x))
        rows["optimization, random starts"].append(_psnr255(rand, x))
        rows["encoder + optimization"].append(_psnr255(full.image, x))
        pictures.append([x, nearest, enc, rand, full.image])
    seconds = (time.time() - started) / len(real_u8)
    result = {"model": name, "images": len(real_u8), "psnr": {k: float(np.mean(v)) for k, v in rows.items()},
              "seconds_per_image": seconds}  # fmt: skip
    # The edit check
    mask = rasterize([Stroke.of(STROKE)], m.image_size, m.channels)[0] > 0.5
    before, after, edits, projections = [], [], [], []
    for x in real_u8[:20]:
        p = m.project(x)
        e = m.edit(p.z, [STROKE], k=1, seed=0)[0]
        before.append(float(p.image[..., 0][mask].mean()))
        after.append(float(e.image[..., 0][mask].mean()))
        projections.append(p.image)
        edits.append(e.image)
    result["edit"] = {"stroke_mean_before": float(np.mean(before)), "stroke_mean_after": float(np.mean(after))}
    if data == "digits":
        result["edit"] |= _digit_confidence(np.stack(projections), np.stack(edits))
    if grid:
        cells = [c for row in pictures[:12] for c in row]
        save_png(grid, make_grid(np.stack(cells), nrow=5))
        save_png(grid.replace(".png", "-edits.png"), make_grid(np.stack(
            [c for pair in zip(projections[:12], edits[:12], strict=True) for c in pair]), nrow=8))  # fmt: skip
    return result


def _digit_confidence(projections: np.ndarray, edits: np.ndarray) -> dict:
    import torch

    from training import data as data_mod
    from training.evaluate import _classify, load_classifier

    ds = data_mod.load("digits", 32)
    net, _ = load_classifier(ds.images, ds.labels)
    out = {}
    for key, u8 in (("confidence_projections", projections), ("confidence_edits", edits)):
        x = torch.from_numpy(u8.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
        probs, _ = _classify(net, x)
        out[key] = float(probs.max(1).mean())
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.igan_eval", description=__doc__.split("\n\n")[1])
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=100, help="held-out images (default 100; faces have 20)")
    ap.add_argument("--grid", default=None, help="PNG: real, nearest sample, E, random starts, E + optimization")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    result = evaluate(args.model, args.n, args.grid)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
