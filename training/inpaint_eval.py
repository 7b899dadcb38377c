"""python -m training.inpaint_eval inpaint-photos [--data photos] [--mask centre] [--out table.png] [--zoom 3]

How well an inpainter fills holes in images it never trained on, against the classic methods, on the same holes:

- data ``photos``: training/context_encoder.evaluation_crops, 30 windows of 128x128 of scikit-learn's china.jpg and
  flower.jpg at their own resolution (the evaluation images: no genrt model trains on them); ``held-out-photos``: 60
  windows of training.photos.HELD_OUT, the second held-out set (context_encoder.held_out_photo_crops, never tuned on);
  ``faces``: the held-out
  lfw_subset faces; ``digits``: the held-out digits (both at the model's size).
- masks: ``centre``, the paper's centre square of half the side (64x64 of 128); ``stroke``: free-form strokes
  (training/context_encoder's, seeded, the same for every method).
- methods: a mean fill (the context's mean colour), OpenCV's Navier-Stokes and Telea inpainting (radius 3),
  scikit-image's biharmonic inpainting (CLASSIC), genrt's harmonic fill and its biharmonic sweeps (the networks'
  starting points, ``--skip harmonic`` and ``--skip biharmonic``, no network) and each
  model given, run as users run it (genrt.load, then Inpainter.inpaint with blend="none": only the hole replaced).
- measures on the hole's pixels only: PSNR (dB, per window, then the mean), mean L1 (0-255 levels) and SSIM
  (scikit-image, over the hole's bounding box, channels averaged), each the mean over the windows.

Printed as a Markdown table; ``--out`` writes a picture: per window, the input with its hole, each model, biharmonic,
Telea and the truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import genrt
from genrt.demo_apps import classic_fill
from genrt.image import make_grid, save_png
from training import context_encoder as ce

CLASSIC = ("mean fill", "Navier-Stokes", "Telea", "biharmonic")  # the methods a bundled inpainter must beat
# ... and the in-graph fills the networks start from (--skip harmonic, --skip biharmonic), run without a network
BASELINES = (*CLASSIC, "harmonic (no network)", "biharmonic sweeps (no network)")


def windows(data: str, size: int) -> np.ndarray:
    """The held-out windows, uint8 (N, size, size, 3)."""
    if data == "photos":
        x = ce.evaluation_crops(size)
    elif data == "held-out-photos":
        x = ce.held_out_photo_crops(size)
    else:
        x = ce.held_out_set(data, size)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def masks(kind: str, n: int, size: int) -> np.ndarray:
    """Boolean (n, size, size) holes: the centre square, or seeded strokes."""
    if kind == "centre":
        return np.repeat(ce.centre_mask(size).numpy() > 0.5, n, axis=0)
    g = torch.get_rng_state()
    torch.manual_seed(123)
    m = ce.random_masks(n, size, ("stroke",))[:, 0].numpy() > 0.5
    torch.set_rng_state(g)
    return m


def baseline(method: str, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """One classic method's fill of uint8 (H, W, 3) ``image`` at ``hole``, uint8."""
    f = image.astype(np.float64) / 255.0
    if method == "mean fill":
        out = f.copy()
        out[hole] = f[~hole].mean(0)
    elif method in ("Navier-Stokes", "Telea", "biharmonic"):
        return classic_fill(method, image, hole)
    elif method in ("harmonic (no network)", "biharmonic sweeps (no network)"):
        x = torch.from_numpy(f.transpose(2, 0, 1)).float()[None]
        known = torch.from_numpy(~hole).float()[None, None]
        if method.startswith("harmonic"):
            out = ce.harmonic_fill(x, known)[0].numpy().transpose(1, 2, 0)
        else:
            out = ce.biharmonic_fill(x, known)[0].numpy().transpose(1, 2, 0)
    else:
        raise ValueError(method)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def measure(filled: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """PSNR (dB), L1 (levels) on the hole's pixels and SSIM over its bounding box."""
    from skimage.metrics import structural_similarity

    a, b = filled.astype(np.float64), truth.astype(np.float64)
    mse = float(np.mean((a[hole] - b[hole]) ** 2))
    ys, xs = np.nonzero(hole)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    side = min(box[0].stop - box[0].start, box[1].stop - box[1].start)
    win = min(7, side - (1 - side % 2))  # SSIM's window: odd, at most the box
    ssim = structural_similarity(a[box], b[box], data_range=255, channel_axis=-1, win_size=max(win, 3))
    return {
        "psnr": float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse),
        "l1": float(np.mean(np.abs(a[hole] - b[hole]))),
        "ssim": float(ssim),
    }


def evaluate(models: list[str], data: str = "photos", mask: str = "centre", size: int | None = None):
    """({method: {"psnr", "l1", "ssim"} means}, {method: filled uint8 (N, H, W, 3)}, windows, holes)."""
    loaded = {name: genrt.load(name) for name in models}
    if size is None:
        size = next(iter(loaded.values())).size if loaded else 128
    truth = windows(data, size)
    holes = masks(mask, len(truth), size)
    fills = {m: np.stack([baseline(m, x, h) for x, h in zip(truth, holes, strict=True)]) for m in BASELINES}
    for name, model in loaded.items():
        fills[name] = np.stack([model.inpaint(x, h, blend="none") for x, h in zip(truth, holes, strict=True)])
    table = {}
    for method, out in fills.items():
        rows = [measure(o, t, h) for o, t, h in zip(out, truth, holes, strict=True)]
        table[method] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return table, fills, truth, holes


def markdown(table: dict) -> str:
    lines = ["| method | hole PSNR (dB) | hole L1 (levels) | SSIM |", "|---|---|---|---|"]
    for method, r in table.items():
        lines.append(f"| {method} | {r['psnr']:.2f} | {r['l1']:.2f} | {r['ssim']:.3f} |")
    return "\n".join(lines)


def picture(fills: dict, truth: np.ndarray, holes: np.ndarray, models: list[str], pick: list[int], zoom: int = 1):
    """Rows of windows: with the hole (white), each model, biharmonic, Telea, the truth; each cell shown ``zoom``
    times larger (nearest)."""
    cells = []
    for i in pick:
        cells.append(np.where(holes[i][..., None], 255, truth[i]).astype(np.uint8))
        cells += [fills[m][i] for m in [*models, "biharmonic", "Telea"]]
        cells.append(truth[i])
    grid = np.stack(cells).repeat(zoom, axis=1).repeat(zoom, axis=2)
    return make_grid(grid, nrow=len(models) + 4)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.inpaint_eval", description=__doc__.split("\n\n")[1])
    p.add_argument("models", nargs="*", help="inpainters: files or bundled names")
    p.add_argument("--data", choices=["photos", "held-out-photos", "faces", "digits"], default="photos")
    p.add_argument("--mask", choices=["centre", "stroke"], default="centre")
    p.add_argument("--size", type=int, default=None, help="window size without a model (default: the model's)")
    p.add_argument("--out", default=None, help="PNG of the fills side by side")
    p.add_argument("--rows", default="1,7,12,16,22,27", help="windows shown in --out (indices)")
    p.add_argument("--zoom", type=int, default=1, help="cells in --out this many times larger (nearest)")
    args = p.parse_args(argv)
    table, fills, truth, holes = evaluate(args.models, args.data, args.mask, args.size)
    print(f"{args.data}, {args.mask} hole, {len(truth)} held-out windows of {truth.shape[1]}x{truth.shape[2]}")
    print(markdown(table))
    if args.out:
        pick = [int(v) for v in args.rows.split(",") if int(v) < len(truth)]
        save_png(Path(args.out), picture(fills, truth, holes, args.models, pick, args.zoom))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
