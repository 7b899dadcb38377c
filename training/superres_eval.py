"""python -m training.superres_eval sr-x4 sr-x4-perceptual runs/sr-x8/upscaler.onnx [--out crops.png]

How good an upscaler is, on images it never trained on (scikit-learn's china.jpg and flower.jpg, the evaluation
images): each photo is cropped to a multiple of the scale, downscaled with Pillow's BICUBIC (antialiased, what
training/superres.py trains on) and upscaled back by the model (through genrt.load, as users run it), by bicubic and
by Lanczos. Printed as a Markdown table per model:

- PSNR (dB) of the luma (ITU-R BT.601 Y), a border of `scale` pixels left out: the usual SR protocol.
- SSIM (scikit-image, on the same luma, data range 255).
- sharpness: the mean squared luma gradient over that of the truth (genrt.apps.upscale.sharpness): 1 is as much
  edge and texture energy as the original, bicubic and PSNR-trained models score far below. PSNR rewards the
  blurry average of plausible answers; this says how much of the detail came back, which is what the perceptual
  models are for (a higher PSNR and a higher sharpness cannot both be had from blur or from noise alone).

- grid: the strength of a pattern repeating at the scale's period (a network's stride, the dot grid of a
  checkerboard artifact): the output's luma minus bicubic's, its scale x scale tiles averaged into one tile, that
  tile's RMS in grey levels. Detail that is not periodic averages out: the truth scores 0.1-0.2 at x8, a visible
  dot grid 1.7-2.9.
``--out`` writes the side-by-side crops: per model and photo, the input (nearest), bicubic, Lanczos, the model and
the truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import genrt
from genrt.apps import upscale as upscale_app
from genrt.demo_apps import sr_crops
from genrt.image import make_grid, save_png
from training.superres import evaluation_photos

NAMES = ("china", "flower")


def _bicubic_pair(photo: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(the photo cropped to a multiple of the scale, its Pillow-bicubic downscale)."""
    from PIL import Image

    h, w = (d - d % scale for d in photo.shape[:2])
    hr = photo[:h, :w]
    return hr, np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.Resampling.BICUBIC))


def _resized(lr: np.ndarray, size: tuple[int, int], method) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(lr).resize((size[1], size[0]), method))


def grid_strength(out: np.ndarray, bicubic: np.ndarray, period: int) -> float:
    """RMS (grey levels) of the period x period tile that averages all tiles of luma(out) - luma(bicubic), its mean
    removed: what repeats at the period."""
    r = upscale_app.luma(out).astype(np.float64) - upscale_app.luma(bicubic).astype(np.float64)
    h, w = (d - d % period for d in r.shape)
    tile = r[:h, :w].reshape(h // period, period, w // period, period).mean(axis=(0, 2))
    return float(np.sqrt(np.mean((tile - tile.mean()) ** 2)))


def evaluate(upscale, scale: int, photos=None) -> list[dict]:
    """[{"image", "method", "psnr", "ssim", "sharpness", "grid"}] for bicubic, Lanczos and ``upscale`` (uint8
    (h, w, 3) -> uint8 (h * scale, w * scale, 3)) on the evaluation photos."""
    from PIL import Image
    from skimage.metrics import structural_similarity

    rows = []
    for name, photo in zip(NAMES, evaluation_photos() if photos is None else photos, strict=False):
        hr, lr = _bicubic_pair(photo, scale)
        methods = {
            "bicubic": _resized(lr, hr.shape[:2], Image.Resampling.BICUBIC),
            "lanczos": _resized(lr, hr.shape[:2], Image.Resampling.LANCZOS),
            "model": upscale(lr),
        }
        truth_y = upscale_app.luma(hr)[scale:-scale, scale:-scale]
        for method, out in methods.items():
            y = upscale_app.luma(out)[scale:-scale, scale:-scale]
            rows.append({
                "image": name, "method": method, "psnr": upscale_app.psnr_y(out, hr, shave=scale),
                "ssim": float(structural_similarity(y, truth_y, data_range=255.0)),
                "sharpness": upscale_app.sharpness(out, hr, scale),
                "grid": grid_strength(out, methods["bicubic"], scale),
            })  # fmt: skip
    return rows


def crops(model) -> np.ndarray:
    """Rows per crop of `genrt demo` (genrt.demo_apps.sr_crops): the input (nearest), bicubic, Lanczos, the model,
    the truth."""
    from PIL import Image

    rows = []
    for _, truth, lr in sr_crops(model.scale):
        cells = [_resized(lr, truth.shape[:2], m) for m in (Image.Resampling.NEAREST, Image.Resampling.BICUBIC,
                                                             Image.Resampling.LANCZOS)]  # fmt: skip
        rows.append(make_grid(np.stack(cells + [model.upscale(lr), truth]), nrow=5))
    return np.concatenate(rows)


def table(name: str, rows: list[dict]) -> str:
    lines = [f"{name}:", "", "| image | method | PSNR (dB) | SSIM | sharpness | grid |", "|---|---|---|---|---|---|"]
    for r in rows:
        method = name if r["method"] == "model" else r["method"]
        lines.append(f"| {r['image']} | {method} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['sharpness']:.3f} | "
                     f"{r['grid']:.2f} |")  # fmt: skip
    mean = {m: np.mean([r["psnr"] for r in rows if r["method"] == m]) for m in ("bicubic", "lanczos", "model")}
    lines += ["", f"mean PSNR: {name} {mean['model']:.2f} dB, bicubic {mean['bicubic']:.2f}, lanczos "
              f"{mean['lanczos']:.2f}; {name} - bicubic = {mean['model'] - mean['bicubic']:+.2f} dB"]  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.superres_eval", description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="upscaler files or bundled names")
    ap.add_argument("--out", type=Path, default=None, help="PNG of side-by-side crops (one block per model)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    pictures = []
    for name in args.models:
        model = genrt.load(name, threads=args.threads)
        print(table(Path(str(name)).stem, evaluate(lambda lr, m=model: m.upscale(lr), model.scale)), "\n")
        if args.out is not None:
            pictures.append(crops(model))
    if pictures:
        save_png(args.out, np.concatenate(pictures))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
