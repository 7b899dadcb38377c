"""Checks and image conversions shared by the runtime classes: uint8 HWC batches in, NCHW float32 at the model.

numpy only (no torch, no imaging library): the resize is the antialiased bilinear (triangle) filter that PIL and
torch's ``interpolate(..., antialias=True)`` use, so images are prepared the way the training data was.
"""

from __future__ import annotations

import numpy as np

from genrt.errors import ArgumentError, DTypeError, InvalidModelError, ShapeError


def required(model, key: str):
    """``model.metadata[key]``, or InvalidModelError saying the file lacks what its kind needs."""
    try:
        return model.metadata[key]
    except KeyError:
        raise InvalidModelError(
            f"{model.path}: its genrt metadata has no {key!r}, which a {model.kind!r} model needs "
            "(export it with the training script of its kind, or call the model directly)"
        ) from None


def rng(seed) -> np.random.Generator:
    """numpy's generator for ``seed`` (None, a non-negative int, or a Generator)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0):
        raise ArgumentError(f"seed: expected None or a non-negative integer, got {seed!r}")
    return np.random.default_rng(seed)


def _weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) rows of the triangle filter (half-pixel centres, support widened when shrinking), normalised."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale  # in input pixel units
    j = np.arange(n_in) + 0.5
    w = np.maximum(0.0, 1.0 - np.abs(j[None, :] - centres[:, None]) / support)
    return w / w.sum(1, keepdims=True)


def resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, C, H, W) float -> (N, C, height, width), antialiased bilinear."""
    if x.shape[2:] == (height, width):
        return x
    wy = _weights(x.shape[2], height)  # (height, H)
    wx = _weights(x.shape[3], width)  # (width, W)
    return np.einsum("yh,nchw,xw->ncyx", wy, x.astype(np.float64), wx).astype(np.float32)


def images_to_model(images, *, size, channels: int, value_range=(-1.0, 1.0), name: str = "images") -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C), C in 1, 3, 4 (alpha dropped), any size -> float32
    (N, channels, size[0], size[1]) in ``value_range``: grey <-> RGB converted, resized as the training data was.
    """
    if isinstance(images, list | tuple):
        try:
            images = np.stack([np.asarray(i) for i in images])
        except ValueError as exc:
            raise ShapeError(f"{name}: the images in the list differ in shape ({exc})") from None
    if not isinstance(images, np.ndarray):
        raise DTypeError(f"{name}: expected a uint8 numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise DTypeError(f"{name}: expected uint8 pixels (0-255), got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3, 4):
        raise ShapeError(f"{name}: expected (N, H, W) or (N, H, W, C) with C in 1, 3, 4, got shape {images.shape}")
    n, h, w, c = images.shape
    if n < 1 or h < 1 or w < 1:
        raise ShapeError(f"{name}: expected at least one non-empty image, got shape {images.shape}")
    x = images.astype(np.float32) / 255.0
    if c == 4:
        x = x[..., :3]
    if channels == 1 and x.shape[3] == 3:
        x = x @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]  # ITU-R 601 luma, as PIL's convert("L")
    elif channels == 3 and x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    x = resize(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), int(size[0]), int(size[1]))
    lo, hi = float(value_range[0]), float(value_range[1])
    return np.ascontiguousarray(x * (hi - lo) + lo, dtype=np.float32)


def float_array(value, name: str, *, shape_hint: str) -> np.ndarray:
    """A finite float32 array from ``value``, or DTypeError/ArgumentError naming ``name``."""
    try:
        a = np.asarray(value)
    except Exception as exc:
        raise DTypeError(f"{name}: expected an array {shape_hint}, got {type(value).__name__} ({exc})") from None
    if a.dtype == np.bool_ or a.dtype.kind not in "fiu":
        raise DTypeError(f"{name}: expected a float array {shape_hint}, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ArgumentError(f"{name}: contains NaN or infinite values")
    return a


def to_model(x: np.ndarray, metadata: dict) -> np.ndarray:
    """Images (N, C, H, W) float32 in [0, 1], RGB -> what an image model takes: ``metadata["input_range"]``
    (default [0, 1]) and ``metadata["channel_order"]`` ("RGB" default, or "BGR"). Scaled in place."""
    if metadata.get("channel_order") == "BGR" and x.shape[1] == 3:
        x = np.ascontiguousarray(x[:, ::-1])
    lo, hi = metadata.get("input_range", [0.0, 1.0])
    if (lo, hi) != (0.0, 1.0):
        x *= np.float32(hi - lo)
        x += np.float32(lo)
    return x


def from_model(y: np.ndarray, metadata: dict) -> np.ndarray:
    """An image model's output (N, C, H, W) -> RGB float32 in [0, 1] (not clipped): the inverse of :func:`to_model`
    for ``metadata["output_range"]``. Scaled in place where y is float32."""
    y = np.asarray(y, dtype=np.float32)
    lo, hi = metadata.get("output_range", [0.0, 1.0])
    if (lo, hi) != (0.0, 1.0):
        y -= np.float32(lo)
        y /= np.float32(hi - lo)
    if metadata.get("channel_order") == "BGR" and y.shape[1] == 3:
        y = np.ascontiguousarray(y[:, ::-1])
    return y
