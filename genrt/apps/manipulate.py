"""Generative visual manipulation (Zhu et al. 2016, iGAN): the Manipulator kind.

A manipulator (training/igan.py writes it: NAME.genrt, a bundle of three ONNX graphs) holds a generator G, an
encoder E trained to invert it, and the gradient graph of one objective (training/igan.py's docstring):

    f(z) = sum(Wp * (G(z) - T)^2) + sum(We * (edge(G(z)) - Te)^2) + a * mean((F(G(z)) - F(T))^2)
           + b * ||z - z_anchor||^2 + c * (||z|| / sqrt(d) - 1)^2

All of it runs in ONNX Runtime; the optimizer (Adam) is numpy. Torch is never imported.

- ``project(image)`` [the paper's 3.2]: E's guess and random starts, each optimized on the pixel and feature terms;
  the best is kept.
- ``edit(z0, strokes, k=4)`` [4]: colour strokes (the pixel term over the stroke mask, towards the stroke colours)
  and sketch strokes (the edge term over the sketched lines), b keeping the result near z0; 2k starts around z0,
  the k best by the objective returned.
- ``morph(z0, z1, steps)``: G along the line from z0 to z1.
- ``transfer(photo, z0, z1)`` [5]: the change from G(z0) to G(z1) carried onto the photo at its own resolution: a
  dense optical flow between the two (OpenCV's Farneback) warps the photo, and what the flow does not explain (the
  intensity change) is added, smoothed, to its luma.

Strokes are dicts (or :class:`Stroke`): ``{"tool": "color" | "sketch", "points": [[x, y], ...], "width": w,
"color": [r, g, b]}``, points as fractions of the image's width and height (origin top left), ``width`` a fraction
of the image width, colours 0-255 (grey models take their luma).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from genrt import image as gimage
from genrt.errors import ArgumentError, MissingDependencyError, ShapeError
from genrt.runtime.models import Model, register_kind

TOOLS = ("color", "sketch")
MAX_STROKES = 64
MAX_POINTS = 512
_RASTER = 4  # strokes are drawn at 4x the image size, then averaged down: soft, antialiased masks
_BETAS = (0.9, 0.999)
PROXIMITY = 0.02  # edit's default weight of ||z - z0||^2: higher keeps edits nearer the projection


@dataclass
class Projection:
    """``project``'s result: the latent, its image (uint8 (H, W, C)), the pixel MSE in [-1, 1] units, and PSNR."""

    z: np.ndarray
    image: np.ndarray
    loss: float
    psnr: float


@dataclass
class Candidate:
    """One of ``edit``'s results: the latent, its image (uint8 (H, W, C)) and its objective (lower is better)."""

    z: np.ndarray
    image: np.ndarray
    loss: float


@dataclass
class Stroke:
    tool: str
    points: list
    width: float = 0.08
    color: tuple = (255, 255, 255)

    @classmethod
    def of(cls, value, index: int = 0) -> Stroke:
        """A Stroke from a Stroke or a dict, checked; ArgumentError naming the stroke otherwise."""
        where = f"strokes[{index}]"
        if isinstance(value, Stroke):
            value = value.__dict__
        if not isinstance(value, dict):
            raise ArgumentError(
                f"{where}: expected a dict with tool, points, width, color; got {type(value).__name__}"
            )
        unknown = set(value) - {"tool", "points", "width", "color"}
        if unknown:
            raise ArgumentError(f"{where}: unknown keys {sorted(unknown)}")
        tool = value.get("tool")
        if tool not in TOOLS:
            raise ArgumentError(f"{where}.tool: expected one of {TOOLS}, got {tool!r}")
        try:
            points = np.asarray(value.get("points"), dtype=np.float64)
        except (TypeError, ValueError):
            raise ArgumentError(f"{where}.points: expected [[x, y], ...] numbers") from None
        if points.ndim != 2 or points.shape[1] != 2 or not 1 <= len(points) <= MAX_POINTS:
            raise ArgumentError(f"{where}.points: expected 1 to {MAX_POINTS} [x, y] pairs, got shape {points.shape}")
        if not np.isfinite(points).all() or points.min() < 0 or points.max() > 1:
            raise ArgumentError(f"{where}.points: coordinates must be fractions of the image size, in [0, 1]")
        width = value.get("width", cls.width)
        if not isinstance(width, int | float) or not 0 < width <= 1:
            raise ArgumentError(f"{where}.width: expected a fraction of the image width in (0, 1], got {width!r}")
        color = value.get("color", cls.color)
        try:
            rgb = np.asarray(color, dtype=np.float64)
        except (TypeError, ValueError):
            raise ArgumentError(f"{where}.color: expected [r, g, b] in 0-255") from None
        if rgb.shape != (3,) or not np.isfinite(rgb).all() or rgb.min() < 0 or rgb.max() > 255:
            raise ArgumentError(f"{where}.color: expected [r, g, b] in 0-255, got {color!r}")
        return cls(tool, points.tolist(), float(width), tuple(float(v) for v in rgb))


def rasterize(strokes, size: tuple[int, int], channels: int):
    """Strokes -> (colour mask (H, W), colour target (C, H, W) in [-1, 1], sketch lines (H, W)), masks in [0, 1]."""
    from PIL import Image, ImageDraw

    h, w = size
    big = (w * _RASTER, h * _RASTER)
    layers = {"color": Image.new("L", big), "sketch": Image.new("L", big)}
    paint = Image.new("RGB", big)
    for s in strokes:
        pts = [(x * (big[0] - 1), y * (big[1] - 1)) for x, y in s.points]
        px = max(1, round(s.width * big[0])) if s.tool == "color" else _RASTER  # sketch lines: one image pixel
        targets = [(layers[s.tool], 255)]
        if s.tool == "color":
            targets.append((paint, tuple(round(v) for v in s.color)))
        for target, fill in targets:
            draw = ImageDraw.Draw(target)
            if len(pts) > 1:
                draw.line(pts, fill=fill, width=px, joint="curve")
            for x, y in (pts[0], pts[-1]):  # round caps (a single point: a dot)
                draw.ellipse((x - px / 2, y - px / 2, x + px / 2, y + px / 2), fill=fill)
    down = {k: np.asarray(v.resize((w, h), Image.BOX), np.float32) / 255.0 for k, v in layers.items()}
    rgb = np.asarray(paint.resize((w, h), Image.BOX), np.float32).transpose(2, 0, 1) / 255.0
    cover = np.maximum(down["color"], 1e-6)
    rgb = np.clip(rgb / cover, 0.0, 1.0)  # the box filter mixed the colour with black where the stroke is partial
    target = (rgb * 2 - 1) if channels == 3 else (np.tensordot(gimage.LUMA, rgb, 1)[None] * 2 - 1)
    return down["color"], target.astype(np.float32), down["sketch"]


class Adam:
    """Adam on a batch of latents, in numpy: ``z = opt.step(z, grad)``."""

    def __init__(self, lr: float):
        self.lr, self.t, self.m, self.v = lr, 0, 0.0, 0.0

    def step(self, z: np.ndarray, grad: np.ndarray) -> np.ndarray:
        b1, b2 = _BETAS
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        return (z - self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(np.float32)


class Manipulator(Model):
    """iGAN's editing on a generator's manifold; ``genrt.load("igan-digits")`` returns one.

    Calling it runs the raw edit graph (inputs: ``manipulator.inputs``; its ``images`` output is G(z));
    ``projection`` (the same graph with the feature term) and ``encoder`` are its other two graphs as genrt models.
    """

    _MAX_BATCH = 256

    @classmethod
    def from_bundle(cls, path, manifest: dict, graphs: dict, *, device="cpu", threads=None, providers=None):
        from genrt.errors import InvalidModelError
        from genrt.runtime import OrtRunner, default_threads

        threads = default_threads(threads)
        missing = {"encoder", "projection", "edit"} - set(graphs)
        if missing:
            raise InvalidModelError(f"{path}: a manipulator bundle needs graphs {sorted(missing)}")
        for key in ("latent_dim", "image_shape"):
            if key not in manifest:
                raise InvalidModelError(f"{path}: the manifest has no {key!r}")
        runners = {
            role: OrtRunner(graphs[role], path, device=device, threads=threads, providers=providers, how=None)
            for role in ("encoder", "projection", "edit")
        }
        meta = {k: v for k, v in manifest.items() if k != "graphs"}
        self = cls(runners["edit"], path=path, metadata=meta, fmt="bundle")
        self.projection = Model(runners["projection"], path=path, metadata={"kind": "objective"}, fmt="bundle")
        self.encoder = Model(runners["encoder"], path=path, metadata={"kind": "encoder"}, fmt="bundle")
        return self

    # -- shapes --------------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def latent_dim(self) -> int:
        return int(self.metadata["latent_dim"])

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.metadata["image_shape"][1:])

    @property
    def channels(self) -> int:
        return int(self.metadata["image_shape"][0])

    def sample_latents(self, n: int, *, seed=None) -> np.ndarray:
        """n latents from the generator's prior: float32 (n, latent_dim)."""
        if not isinstance(n, int) or n < 1:
            raise ArgumentError(f"n: expected a positive integer, got {n!r}")
        rng = np.random.default_rng(seed)
        if self.metadata.get("latent_prior") == "uniform":
            return rng.uniform(-1.0, 1.0, (n, self.latent_dim)).astype(np.float32)
        return rng.standard_normal((n, self.latent_dim), dtype=np.float32)

    def images(self, z) -> np.ndarray:
        """G(z): float32 (N, C, H, W) in [-1, 1] (the edit graph's images output, all terms off)."""
        z = self._latents(z, "z")
        feeds = self._feeds()
        return np.concatenate(
            [self({"z": z[i : i + self._MAX_BATCH], **feeds})[2] for i in range(0, len(z), self._MAX_BATCH)]
        )

    def generate(self, z) -> np.ndarray:
        """uint8 (N, H, W, C) images of latents z (N, latent_dim)."""
        return self._uint8(self.images(z))

    # -- the objective -------------------------------------------------------------------------------------------

    def _latents(self, z, name: str) -> np.ndarray:
        try:
            z = np.asarray(z, dtype=np.float32)
        except (TypeError, ValueError):
            raise ArgumentError(f"{name}: expected numbers") from None
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ShapeError(f"{name}: expected ({self.latent_dim},) or (n, {self.latent_dim}), got {z.shape}")
        if not np.isfinite(z).all():
            raise ArgumentError(f"{name}: not finite")
        return z

    def _feeds(self, *, target=None, pixel=None, edge_target=None, edge=None, anchor=None, coefs=(0.0, 0.0, 0.0)):
        c, (h, w) = self.channels, self.image_size
        zeros = np.zeros((1, 1, h, w), np.float32)
        return {
            "target": np.zeros((1, c, h, w), np.float32) if target is None else target[None].astype(np.float32),
            "pixel_weight": zeros if pixel is None else pixel[None, None].astype(np.float32),
            "edge_target": zeros if edge_target is None else edge_target[None, None].astype(np.float32),
            "edge_weight": zeros if edge is None else edge[None, None].astype(np.float32),
            "anchor": np.zeros((1, self.latent_dim), np.float32) if anchor is None else anchor.reshape(1, -1),
            "coefs": np.asarray(coefs, np.float32),
        }

    def optimize(self, graph: Model, z, feeds: dict, *, steps: int, lr: float):
        """Adam from each row of z on ``graph`` (self or self.projection); returns (z, loss, images (N, C, H, W))
        of each row's best step."""
        z = np.array(z, dtype=np.float32)
        opt = Adam(lr)
        best_z, best_loss, best_img = z.copy(), np.full(len(z), np.inf, np.float32), None
        for _ in range(steps + 1):
            loss, grad, img = graph({"z": z, **feeds})
            better = loss < best_loss
            best_z[better], best_loss[better] = z[better], loss[better]
            best_img = img.copy() if best_img is None else np.where(better[:, None, None, None], img, best_img)
            z = opt.step(z, grad)
        return best_z, best_loss, best_img

    def _uint8(self, images: np.ndarray) -> np.ndarray:
        return gimage.to_uint8_images(images, (-1.0, 1.0))

    # -- the paper's operations ----------------------------------------------------------------------------------

    def prepare_image(self, image) -> np.ndarray:
        """Any image (array, PIL, Picture or path) as the generator sees it: float32 (C, H, W) in [-1, 1]."""
        x = gimage.picture_to_float(_picture(image, "image"))  # (C, H, W) in [0, 1]
        if x.shape[0] == 3 and self.channels == 1:
            x = np.tensordot(gimage.LUMA, x, 1)[None]
        elif x.shape[0] == 1 and self.channels == 3:
            x = np.repeat(x, 3, 0)
        x = np.clip(gimage.resize_float(x, self.image_size), 0.0, 1.0)
        return (x * 2 - 1).astype(np.float32)

    def project(self, image, *, starts: int = 4, steps: int = 100, lr: float = 0.05, seed=0, encoder=True):
        """The latent whose image best matches ``image``: E's guess plus ``starts - 1`` random starts (``starts``
        random ones with ``encoder=False``), each optimized on the pixel and feature terms; the best kept."""
        if not isinstance(starts, int) or starts < 1 or not isinstance(steps, int) or steps < 0:
            raise ArgumentError(f"starts, steps: expected starts >= 1 and steps >= 0, got {starts}, {steps}")
        x = self.prepare_image(image)
        z = self.sample_latents(starts, seed=seed)
        if encoder:
            z[0] = self.encoder(x[None])[0]
        h, w = self.image_size
        pixel = np.full((h, w), 1.0 / (h * w * self.channels), np.float32)
        feeds = self._feeds(target=x, pixel=pixel, coefs=(float(self.metadata.get("feature_weight", 0.1)), 0.0, 0.0))
        z, loss, img = self.optimize(self.projection, z, feeds, steps=steps, lr=lr)
        mse = ((img - x[None]) ** 2).mean((1, 2, 3))
        i = int(np.argmin(loss))
        return Projection(z[i], self._uint8(img[i : i + 1])[0], float(mse[i]), psnr(float(mse[i])))

    def edit(self, z0, strokes, *, k: int = 4, starts: int | None = None, steps: int = 30, lr: float = 0.08,
             proximity: float = PROXIMITY, spread: float = 0.6, seed=None):  # fmt: skip
        """The k best of ``starts`` (default 2k) optimizations from z0 plus ``spread`` noise, under the strokes'
        constraints and ``proximity`` * ||z - z0||^2; a list of Candidate, best first."""
        z0 = self._latents(z0, "z0")[0]
        if not isinstance(k, int) or not 1 <= k <= 16:
            raise ArgumentError(f"k: expected an integer in 1..16, got {k!r}")
        if not isinstance(strokes, list | tuple) or len(strokes) > MAX_STROKES:
            raise ArgumentError(f"strokes: expected a list of at most {MAX_STROKES} strokes")
        strokes = [Stroke.of(s, i) for i, s in enumerate(strokes)]
        if not isinstance(proximity, int | float) or not math.isfinite(proximity) or proximity < 0:
            raise ArgumentError(f"proximity: expected a finite number >= 0, got {proximity!r}")
        starts = 2 * k if starts is None else starts
        if not isinstance(starts, int) or starts < k:
            raise ArgumentError(f"starts: expected an integer >= k ({k}), got {starts!r}")
        color_mask, color_target, sketch = rasterize(strokes, self.image_size, self.channels)
        pixel = color_mask / max(float(color_mask.sum()), 1.0)
        edge = sketch / max(float(sketch.sum()), 1.0)
        feeds = self._feeds(target=color_target, pixel=pixel, edge_target=np.minimum(sketch * 4, 1.0), edge=edge,
                            anchor=z0, coefs=(0.0, proximity, 0.1))  # fmt: skip
        rng = np.random.default_rng(seed)
        z = z0[None] + spread * rng.standard_normal((starts, self.latent_dim)).astype(np.float32)
        z[0] = z0
        z, loss, img = self.optimize(self, z, feeds, steps=steps if strokes else 0, lr=lr)
        order = np.argsort(loss, kind="stable")[:k]
        images = self._uint8(img[order])
        return [Candidate(z[i], images[j], float(loss[i])) for j, i in enumerate(order)]

    def morph(self, z0, z1, steps: int = 8) -> np.ndarray:
        """uint8 (steps, H, W, C): G along the straight line from z0 to z1, both ends included."""
        z0, z1 = self._latents(z0, "z0")[0], self._latents(z1, "z1")[0]
        if not isinstance(steps, int) or not 2 <= steps <= 256:
            raise ArgumentError(f"steps: expected an integer in 2..256, got {steps!r}")
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self.generate((1 - t) * z0 + t * z1)

    def transfer(self, photo, z0, z1):
        """The edit G(z0) -> G(z1) carried onto ``photo`` at its own resolution (the photo's kind is kept)."""
        try:
            import cv2
        except ImportError:
            raise MissingDependencyError("transfer needs OpenCV: pip install opencv-python-headless") from None
        z = np.concatenate([self._latents(z0, "z0"), self._latents(z1, "z1")])
        picture = _picture(photo, "photo")
        x = gimage.picture_to_float(picture)  # (C, H, W) in [0, 1]
        height, width = x.shape[1:]
        g0, g1 = self.images(z).mean(1) * 0.5 + 0.5  # (h, w) each, grey in [0, 1]
        # The flow at a working size of at least 128 pixels, then scaled to the photo.
        scale = max(1, math.ceil(128 / min(self.image_size)))
        work = (self.image_size[1] * scale, self.image_size[0] * scale)
        a, b = (cv2.resize(g, work, interpolation=cv2.INTER_CUBIC) for g in (g0, g1))
        to8 = lambda g: np.clip(g * 255, 0, 255).astype(np.uint8)  # noqa: E731
        flow = cv2.calcOpticalFlowFarneback(to8(b), to8(a), None, 0.5, 3, 15, 3, 5, 1.2, 0)  # b(p) ~ a(p + flow)
        # Motion only where G's image changed: Farneback reads fractions of a pixel of flow into identical images.
        changed = cv2.GaussianBlur(np.abs(b - a), (0, 0), scale * 1.5)
        flow *= np.clip(changed / 0.05, 0.0, 1.0)[..., None]
        warped_a = cv2.remap(a, *_grid(flow), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        residual = cv2.GaussianBlur(b - warped_a, (0, 0), scale * 0.75)
        flow_full = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
        flow_full[..., 0] *= width / work[0]
        flow_full[..., 1] *= height / work[1]
        mx, my = _grid(flow_full)
        out = np.stack([cv2.remap(p, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for p in x])
        res = cv2.resize(residual, (width, height), interpolation=cv2.INTER_LINEAR)
        out = np.clip(out + res[None], 0.0, 1.0)  # the luma change, added to every channel (chroma kept)
        result = dataclasses.replace(picture, pixels=gimage.float_to_pixels(out, picture.pixels.dtype))
        return result if isinstance(photo, gimage.Picture) else gimage.from_picture(result, like=photo)


def _picture(image, name: str) -> gimage.Picture:
    """An app's image argument (numpy, PIL, Picture or a path) as a Picture."""
    if isinstance(image, str) or hasattr(image, "__fspath__"):
        return gimage.read_image(image)
    return image if isinstance(image, gimage.Picture) else gimage.to_picture(image, name=name)


def _grid(flow: np.ndarray):
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + flow[..., 0], gy + flow[..., 1]


def psnr(mse_pm1: float) -> float:
    """PSNR in dB of a mean squared error measured on [-1, 1] images (peak 2)."""
    return float(10 * np.log10(4.0 / max(mse_pm1, 1e-12)))


register_kind("manipulator", Manipulator)
