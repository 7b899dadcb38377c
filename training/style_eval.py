"""python -m training.style_eval MODEL... [--out strip.png | --clip pan]: how well stylizers keep content, add style.

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

- **blobs**: the share of pixels painted over by a patch that no global recolouring explains (:func:`blob_fraction`;
  the worse of the two photos): 0 for a stylization that recolours and textures the photo, several per cent where
  a model paints saturated or black blobs over it.

``--out`` writes a picture: per model a row of the two photos stylized, after the style image.

Video (``--clip pan|zoom|pan+cut|zoom+cut``, synthetic clips from tests/clips.py, so run it from a checkout):
each model stylizes the clip's frames one by one (``per-frame``) and with genrt.apps.stylize.TemporalStylizer
(``temporal``), and each run is scored by

- **warping error** (Lai et al. 2018, "Learning blind video temporal consistency"; :func:`warping_error`): the mean
  absolute difference, values in [0, 1] per channel, between each output frame and the previous output frame warped
  to it, over the pixels where the motion is known; averaged over frames. The motion is optical flow between the
  *input* frames by OpenCV's Farneback method (not the DIS flow TemporalStylizer uses, so the method is not judged
  by its own flow), kept where a forward-backward check holds (Ruder et al. 2016's occlusion and motion-boundary
  criteria) and inside the frame; pairs where it keeps under half the pixels are cuts, left out. Lai et al. square
  the difference; the absolute value is kinder to rare outliers.
- **content SSIM**, **colour SWD** and the **Gram errors** above, per frame, averaged (:func:`frame_scores`),
  and the Gram errors at any phase: averaged over the 16 crops offset by 0-3 pixels, since a stylizer's pixel-grid
  pattern scores by its alignment to the loss network's strides, which motion shifts.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import genrt
from genrt.errors import GenrtError
from training import perceptual
from training.style import _center_square, _evaluation_images, _resize_short, load_style, split_styles

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


def blob_fraction(stylized: np.ndarray, photo: np.ndarray, window: int = 9, delta_e: float = 25.0) -> float:
    """The share of pixels where the stylization, smoothed over ``window`` pixels in CIELAB, is more than ``delta_e``
    from the best affine map of the smoothed photo's Lab colours (one map for the whole image, least squares): a
    style's global palette and tone curve are explained, its fine texture smoothed away, a blob is left over."""
    from scipy.ndimage import uniform_filter
    from skimage.color import rgb2lab

    def smooth_lab(x: np.ndarray) -> np.ndarray:
        lab = rgb2lab(x)
        return np.stack([uniform_filter(lab[..., c], window) for c in range(3)], -1).reshape(-1, 3)

    y, x = smooth_lab(stylized), smooth_lab(photo)
    a = np.c_[x, np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return float((np.linalg.norm(y - a @ coef, axis=1) > delta_e).mean())


def _model_and_style(spec: str):
    """(model or None, style name or None, style image (3, H, W) in [0, 1]) for MODEL[@STYLE] or photo:STYLE."""
    if spec.startswith("photo:"):  # the baseline: the photos themselves, scored against a style image
        return None, None, load_style(spec[len("photo:") :], _SIZE)[1]
    path, _, style = spec.partition("@")
    model = genrt.load(path)
    source = model.metadata.get("config", {}).get("style", "")
    sources = split_styles(source)
    names = model.styles or [model.metadata.get("style", "")]
    if style and style not in names:
        raise SystemExit(f"{spec}: no style {style!r}; this model has {names}")
    style = style or names[0]
    _, s = load_style(sources[names.index(style)] if len(sources) == len(names) else sources[0], _SIZE)
    return model, style, s


def evaluate(spec: str, nets: dict, photos: list[np.ndarray]) -> tuple[dict, list[np.ndarray], np.ndarray]:
    """({measure: value}, stylized photos, style image uint8) for one MODEL[@STYLE]."""
    from skimage.metrics import structural_similarity

    model, style, s = _model_and_style(spec)
    s_pixels = s.permute(1, 2, 0).reshape(-1, 3).numpy()
    targets = {k: _grams(net, s) for k, net in nets.items()}
    rows: dict[str, list[float]] = {"content SSIM": [], "colour SWD": [], "blobs": []}
    rows |= {f"Gram error, {k}": [] for k in nets}
    stylized = []
    for photo in photos:
        y = photo if model is None else model.stylize(photo, style=style if model.styles else None)
        stylized.append(y)
        rows["content SSIM"].append(structural_similarity(_luma(photo), _luma(y), data_range=1.0))
        rows["colour SWD"].append(_swd(y.reshape(-1, 3) / 255.0, s_pixels))
        rows["blobs"].append(blob_fraction(y, photo))
        yt = torch.from_numpy(y.astype(np.float32) / 255.0).permute(2, 0, 1)
        for k, net in nets.items():
            rows[f"Gram error, {k}"].append(_gram_error(net, yt, targets[k]))
    thumb = (_center_square(s, _SIZE).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    means = {k: float(np.max(v) if k == "blobs" else np.mean(v)) for k, v in rows.items()}  # blobs: the worse photo
    return means, stylized, thumb


def _backward_flows(frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per consecutive pair (t - 1, t): (flow, kept). ``flow``: (H, W, 2) float32 (dx, dy) from each pixel of frame
    t to where it was in frame t - 1 (Farneback on the greys); ``kept``: (H, W) bool, where the flow passes Ruder et
    al.'s checks (forward-backward consistency, no motion boundary, inside the frame)."""
    import cv2

    from genrt.apps.stylize import _flow_holds

    greys = [cv2.cvtColor(_as_uint8(f), cv2.COLOR_RGB2GRAY) for f in frames]
    h, w = greys[0].shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for a, b in zip(greys[:-1], greys[1:], strict=True):
        # pyramid 0.5 x 5 levels: follows up to ~30-pixel motions; window 15, 5-pixel polynomials: OpenCV's sample.
        back = cv2.calcOpticalFlowFarneback(b, a, None, 0.5, 5, 15, 3, 5, 1.2, 0)
        fwd = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 5, 15, 3, 5, 1.2, 0)
        out.append((back, _flow_holds(back, fwd, (1.0, 1.0), (xs, ys))))
    return out


def _as_uint8(frame: np.ndarray) -> np.ndarray:
    return frame if frame.dtype == np.uint8 else np.rint(frame / 257.0).astype(np.uint8)


def warping_error(inputs: list[np.ndarray], outputs: list[np.ndarray], *, motion=None, min_kept: float = 0.5) -> float:
    """Lai et al.'s temporal warping error of a stylized video: lower is steadier (0: every pixel follows the motion).

    Args:
        inputs: the video's frames, (H, W, 3) uint8 or uint16 each; the motion is measured on these.
        outputs: the stylized frames, same count and shape.
        motion: instead of Farneback flow, the true motion: per consecutive pair a (flow, kept) of (H, W, 2) float32
            (dx, dy) pointing from frame t to frame t - 1 and (H, W) bool (tests/clips.pan_motion gives a pan's).
        min_kept: pairs where fewer pixels than this fraction are kept are scene cuts, left out.

    Returns:
        mean over pairs (t - 1, t) of mean |O_t - warp(O_{t-1})| over kept pixels and channels, values in [0, 1];
        NaN when every pair is a cut.
    """
    import cv2

    if len(inputs) != len(outputs) or len(inputs) < 2:
        raise ValueError(f"warping_error: expected outputs for all >= 2 inputs, got {len(outputs)} and {len(inputs)}")
    flows = _backward_flows(inputs) if motion is None else list(motion)
    if len(flows) != len(inputs) - 1:
        raise ValueError(f"warping_error: motion: expected {len(inputs) - 1} (flow, kept) pairs, got {len(flows)}")
    h, w = outputs[0].shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    errors = []
    for (flow, kept), previous, current in zip(flows, outputs[:-1], outputs[1:], strict=True):
        if np.count_nonzero(kept) < min_kept * kept.size:
            continue  # a cut: no motion relates the frames (Farneback's check keeps ~25 % there, 80-95 % in a shot)
        top = float(np.iinfo(current.dtype).max)
        warped = cv2.remap(
            previous.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        errors.append(float(np.abs(current.astype(np.float32) - warped)[kept].mean()) / top)
    return float(np.mean(errors)) if errors else float("nan")


def frame_scores(
    frames_in: list[np.ndarray], frames_out: list[np.ndarray], style_target, nets: dict, *, phases: int = 1
) -> dict:
    """{measure: mean over frames} of content SSIM, colour SWD and the Gram errors under ``nets`` (as in the table
    of :func:`evaluate`) for stylized video frames. ``style_target``: the style image, (3, H, W) in [0, 1].

    ``phases`` > 1 adds "Gram error, X, any phase": the mean over the phases**2 crops that start at (dy, dx) in
    [0, phases)^2. A stylizer with stride 4 paints a faint pattern locked to its pixel grid, and a loss network
    with strides scores it by where it falls: a lossless 1-pixel crop of style-gravel's own output raises its
    EfficientNet Gram error by half. Video that follows motion cannot keep the pattern on that grid; phases=4 scores
    every frame at all its alignments.
    """
    from skimage.metrics import structural_similarity

    s_pixels = style_target.permute(1, 2, 0).reshape(-1, 3).numpy()
    targets = {k: _grams(net, style_target) for k, net in nets.items()}
    rows: dict[str, list[float]] = {"content SSIM": [], "colour SWD": []} | {f"Gram error, {k}": [] for k in nets}
    if phases > 1:
        rows |= {f"Gram error, {k}, any phase": [] for k in nets}
    for photo, y in zip(frames_in, frames_out, strict=True):
        photo, y = _as_uint8(photo), _as_uint8(y)
        rows["content SSIM"].append(structural_similarity(_luma(photo), _luma(y), data_range=1.0))
        rows["colour SWD"].append(_swd(y.reshape(-1, 3) / 255.0, s_pixels))
        yt = torch.from_numpy(y.astype(np.float32) / 255.0).permute(2, 0, 1)
        h, w = yt.shape[-2:]
        for k, net in nets.items():
            rows[f"Gram error, {k}"].append(_gram_error(net, yt, targets[k]))
            if phases > 1:
                crops = [yt[:, i : h - phases + i, j : w - phases + j] for i in range(phases) for j in range(phases)]
                rows[f"Gram error, {k}, any phase"].append(np.mean([_gram_error(net, c, targets[k]) for c in crops]))
    return {k: float(np.mean(v)) for k, v in rows.items()}


def temporal_scores(
    spec: str, frames: list[np.ndarray], nets: dict, *, phases: int = 4, **options
) -> dict[str, dict[str, float]]:
    """{"per-frame": measures, "temporal": measures} for one MODEL[@STYLE] on a clip: warping error and
    :func:`frame_scores` (``phases``). ``options``: TemporalStylizer's (strength, blend, ...)."""
    from genrt.apps.stylize import TemporalStylizer

    model, style, s = _model_and_style(spec)
    if model is None:
        raise SystemExit(f"{spec}: a video needs a model, not photo:STYLE")
    style = style if model.styles else None
    out = {}
    for name, temporal in (("per-frame", False), ("temporal", True)):
        run = TemporalStylizer(model, style=style, temporal=temporal, **options)
        stylized = [run(f) for f in frames]
        scores = frame_scores(frames, stylized, s, nets, phases=phases)
        out[name] = {"warping error": warping_error(frames, stylized)} | scores
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.style_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="stylizer .onnx paths or bundled names, MODEL@STYLE for one style")
    parser.add_argument("--out", help="write a PNG: per model, the style image and the two photos stylized")
    parser.add_argument("--clip", help="score video instead: pan, zoom, pan+cut or zoom+cut (tests/clips.py)")
    parser.add_argument("--frames", type=int, default=24, help="frames of the clip (default 24)")
    parser.add_argument("--size", default="240x320", help="frame size HxW of the clip (default 240x320)")
    args = parser.parse_args(argv)
    if args.clip:
        return _main_video(args)
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


def _main_video(args) -> None:
    """The ``--clip`` table: per model, its per-frame and temporal rows."""
    try:
        from tests.clips import clip
    except ImportError:
        raise SystemExit("python -m training.style_eval --clip: needs a genrt checkout (tests/clips.py)") from None
    h, _, w = args.size.partition("x")
    if not (h.isdigit() and w.isdigit() and int(h) > 0 and int(w) > 0) or args.frames < 2:
        raise SystemExit(f"python -m training.style_eval: need --size HxW, --frames >= 2: {args.size}, {args.frames}")
    try:
        frames = clip(args.clip, args.frames, (int(h), int(w)))
    except ValueError as exc:
        raise SystemExit(f"python -m training.style_eval: {exc}") from None
    nets = {k: perceptual.load_loss_network(k).eval() for k in _NETS}
    table = []
    try:
        for spec in args.models:
            for mode, measures in temporal_scores(spec, frames, nets).items():
                table.append((f"{spec} {mode}", measures))
    except GenrtError as exc:
        raise SystemExit(f"python -m training.style_eval: {exc}") from None
    keys = list(table[0][1])
    print(f"{args.clip}, {args.frames} frames of {args.size}")
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "--:|" * len(keys))
    for spec, measures in table:
        print(f"| {spec} | " + " | ".join(f"{measures[k]:.3g}" for k in keys) + " |")


def _fit(image: np.ndarray, h: int) -> np.ndarray:
    """A square uint8 image resized to height h (nearest), for the picture's first column."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    x = _resize_short(x / 255.0, h)
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


if __name__ == "__main__":
    main()
