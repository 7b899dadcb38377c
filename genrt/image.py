"""Images at genrt's edges: numpy HWC uint8 arrays, PNG files, and grids of samples.

PNG writing is self-contained (zlib), so the runtime needs no imaging library; files are written atomically.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from genrt.errors import ArgumentError, DTypeError, ShapeError

_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def to_uint8_images(x: np.ndarray, value_range=(-1.0, 1.0)) -> np.ndarray:
    """A model's (N, C, H, W) float output in value_range -> uint8 (N, H, W, C) images."""
    lo, hi = float(value_range[0]), float(value_range[1])
    y = (np.asarray(x, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _as_hwc(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise DTypeError(f"image: expected uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in _COLOR_TYPES:
        raise ShapeError(f"image: expected (H, W) or (H, W, C) with C in 1-4, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ShapeError(f"image: expected a non-empty image, got shape {image.shape}")
    return image


def encode_png(image) -> bytes:
    """PNG bytes of a uint8 (H, W) or (H, W, C) image, C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)."""
    image = _as_hwc(image)
    h, w, c = image.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * c)], axis=1)  # filter byte 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPES[c], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's files are owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path, data: bytes) -> Path:
    """Writes bytes to path through a temporary file in the same folder, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(path, image) -> Path:
    """Writes a uint8 image as PNG, atomically."""
    return write_atomic(path, encode_png(image))


def make_grid(images, *, nrow: int | None = None, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tiles images (N, H, W, C) uint8 into one (H', W', C) image, nrow per row (default: about square)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] < 1:
        raise ShapeError(f"images: expected (N, H, W, C) with N >= 1, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DTypeError(f"images: expected uint8, got {images.dtype}")
    n, h, w, c = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    if nrow < 1 or padding < 0:
        raise ArgumentError(f"nrow and padding: expected nrow >= 1 and padding >= 0, got {nrow} and {padding}")
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = np.full((padding + nrows * (h + padding), padding + ncol * (w + padding), c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = images[i]
    return grid
