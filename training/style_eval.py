"""python -m training.style_eval MODEL... [--out strip.png]: how well stylizers keep content and take on style.

Each MODEL is an exported stylizer (a .onnx path or a bundled name; ``MODEL@STYLE`` picks one style of a
multi-style model; ``photo:STYLE`` scores the photos themselves against a style image, the baseline) runs
through genrt.load on scikit-learn's china.jpg and flower.jpg (the evaluation images, never trained on), resized
to 256 pixels on the shorter side. Measures, averaged over the two photos:

- **content SSIM**: scikit-image's SSIM between the photo's and the stylization's luminance (1: structure kept).
- **colour SWD**: sliced Wasserstein distance between the RGB pixel distributions of the stylization and of the
  style image (64 random directions, values in [0, 1]; 0: the style's palette). Needs no network, so it judges
  every loss network alike.
- **Gram error under X**: relative squared error of Gram matrices, sum ||G(y) - G(s)||^2 / sum ||G(s)||^2 over
  X's default style layers, for X = random VGG16 (seed 0) and EfficientNet-Lite0 (ImageNet weights): each model
  is scored by the network it trained with and by the other one.

``--out`` writes a picture: per model a row of the two photos stylized, after the style image.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import genrt
from genrt.errors import GenrtError
from training import perceptual
from training.style import _center_square, _evaluation_images, _resize_short, load_style

_SIZE = 256
_NETS = ("vgg16-random", "efficientnet-lite0")


def _photos() -> list[np.ndarray]:
    """The two evaluation photos, shorter side 256, as uint8 (H, W, 3)."""
    from PIL import Image

    from training.style import _evaluation_paths

    out = []
    for path in _evaluation_paths():
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = _SIZE / min(im.size)
            out.append(np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)))
    return out


def _swd(a: np.ndarray, b: np.ndarray, directions: int = 64, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two sets of RGB pixels (N, 3) and (M, 3) in [0, 1]."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((directions, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    q = np.linspace(0.0, 1.0, 256)
    pa, pb = np.quantile(a @ d.T, q, axis=0), np.quantile(b @ d.T, q, axis=0)  # (256, directions)
    return float(np.abs(pa - pb).mean())


def _grams(net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    layers = list(net.default_style_layers)
    with torch.no_grad():
        feats = net.features(x[None], layers)
    return {k: perceptual.gram_matrix(net.gram_features(feats[k]))[0] for k in layers}


def _gram_error(net, y: torch.Tensor, target: dict[str, torch.Tensor]) -> float:
    g = _grams(net, y)
    num = sum(float(((g[k] - target[k]) ** 2).sum()) for k in target)
    return num / sum(float((t**2).sum()) for t in target.values())


def _luma(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def evaluate(spec: str, nets: dict, photos: list[np.ndarray]) -> tuple[dict, list[np.ndarray], np.ndarray]:
    """({measure: value}, stylized photos, style image uint8) for one MODEL[@STYLE]."""
    from skimage.metrics import structural_similarity

    if spec.startswith("photo:"):  # the baseline: the photos themselves, scored against a style image
        model, style, (_, s) = None, None, load_style(spec[len("photo:") :], _SIZE)
    else:
        path, _, style = spec.partition("@")
        model = genrt.load(path)
        source = model.metadata.get("config", {}).get("style", "")
        sources = [s.strip() for s in source.split(",") if s.strip()]
        names = model.styles or [model.metadata.get("style", "")]
        if style and style not in names:
            raise SystemExit(f"{spec}: no style {style!r}; this model has {names}")
        style = style or names[0]
        _, s = load_style(sources[names.index(style)] if len(sources) == len(names) else sources[0], _SIZE)
    s_pixels = s.permute(1, 2, 0).reshape(-1, 3).numpy()
    targets = {k: _grams(net, s) for k, net in nets.items()}
    rows: dict[str, list[float]] = {"content SSIM": [], "colour SWD": []} | {f"Gram error, {k}": [] for k in nets}
    stylized = []
    for photo in photos:
        y = photo if model is None else model.stylize(photo, style=style if model.styles else None)
        stylized.append(y)
        rows["content SSIM"].append(structural_similarity(_luma(photo), _luma(y), data_range=1.0))
        rows["colour SWD"].append(_swd(y.reshape(-1, 3) / 255.0, s_pixels))
        yt = torch.from_numpy(y.astype(np.float32) / 255.0).permute(2, 0, 1)
        for k, net in nets.items():
            rows[f"Gram error, {k}"].append(_gram_error(net, yt, targets[k]))
    thumb = (_center_square(s, _SIZE).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return {k: float(np.mean(v)) for k, v in rows.items()}, stylized, thumb


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.style_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="stylizer .onnx paths or bundled names, MODEL@STYLE for one style")
    parser.add_argument("--out", help="write a PNG: per model, the style image and the two photos stylized")
    args = parser.parse_args(argv)
    _evaluation_images(32)  # fail early without scikit-learn
    nets = {k: perceptual.load_loss_network(k).eval() for k in _NETS}
    photos = _photos()
    table, pictures = [], []
    try:
        for spec in args.models:
            measures, stylized, thumb = evaluate(spec, nets, photos)
            table.append((spec, measures))
            h = min(p.shape[0] for p in stylized)
            pictures.append(np.concatenate([_fit(thumb, h)] + [p[:h] for p in stylized], axis=1))
    except GenrtError as exc:
        raise SystemExit(f"python -m training.style_eval: {exc}") from None
    keys = list(table[0][1])
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "--:|" * len(keys))
    for spec, measures in table:
        print(f"| {spec} | " + " | ".join(f"{measures[k]:.3g}" for k in keys) + " |")
    if args.out:
        from genrt.image import save_png

        w = max(p.shape[1] for p in pictures)
        save_png(args.out, np.concatenate([np.pad(p, ((0, 4), (0, w - p.shape[1]), (0, 0))) for p in pictures]))


def _fit(image: np.ndarray, h: int) -> np.ndarray:
    """A square uint8 image resized to height h (nearest), for the picture's first column."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    x = _resize_short(x / 255.0, h)
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


if __name__ == "__main__":
    main()
