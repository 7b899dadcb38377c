"""python -c "from training.data import load; print(load('digits', 32).images.shape)"

Training images, nothing downloaded: ``digits``, ``faces`` or ``folder:PATH``, as float32 (N, C, H, W) in [-1, 1].

- ``digits``: scikit-learn's 1797 8x8 handwritten digits (values 0-16), bilinear-resized to size x size; labels kept.
- ``faces``: the 100 faces of scikit-image's ``lfw_subset`` (grey 25x25; its other 100 images are non-face
  background crops and are left out) and their mirror images (200 in all), bilinear-resized to size x size.
- ``folder:PATH``: every image below PATH (genrt.image.READ_SUFFIXES; recursive, sorted), read with Pillow, RGB,
  the shorter side resized to ``size`` and center-cropped. Files Pillow cannot decode are skipped and listed in
  ``skipped``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genrt.errors import ArgumentError, GenrtError
from genrt.image import READ_SUFFIXES

__all__ = ["Dataset", "DataError", "load"]

IMAGE_SUFFIXES = READ_SUFFIXES  # what genrt.image reads; Pillow opens each of these here


HELD_OUT_FACES = 20  # the last faces of lfw_subset's 100 (and their mirrors): no model of faces trains on them
HELD_OUT_DIGITS = 450  # the last digits of scikit-learn's 1797: the digit models' test set


class DataError(GenrtError, ValueError):
    """A dataset cannot be built: unknown name, empty folder, no readable image."""


@dataclass
class Dataset:
    name: str
    images: torch.Tensor  # (N, C, H, W) float32 in [-1, 1]
    labels: torch.Tensor | None = None  # (N,) int64 where the data has classes
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of unreadable files

    def __len__(self) -> int:
        return self.images.shape[0]


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, h, w) in [0, 1] -> (N, C, size, size) in [-1, 1]."""
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x.clamp(0.0, 1.0) * 2.0 - 1.0).contiguous()


def _digits(size: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8)
    return Dataset("digits", _resize(x, size), torch.from_numpy(bunch.target.astype(np.int64)))


def _faces(size: int) -> Dataset:
    from skimage.data import lfw_subset

    faces = lfw_subset()[:100]  # (100, 25, 25): float in [0, 1] (its docstring says uint8; accept both)
    x = torch.from_numpy(faces.astype(np.float32) / (255.0 if faces.dtype == np.uint8 else 1.0))[:, None]
    return Dataset("faces", _resize(torch.cat([x, x.flip(-1)]), size))  # (200, 1, size, size) with mirrors


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8)  # (size, size, 3)


def _folder(root: Path, size: int) -> Dataset:
    if not root.is_dir():
        raise DataError(f"folder:{root}: no such folder")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    images, skipped = [], []
    for p in paths:
        try:
            images.append(_read_image(p, size))
        except Exception as exc:  # Pillow raises many types for bad files; each is skipped and reported
            skipped.append((str(p), f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    if skipped:
        warnings.warn(
            f"folder:{root}: skipped {len(skipped)} unreadable image(s), e.g. {skipped[0][0]} ({skipped[0][1]})",
            stacklevel=3,
        )
    if not images:
        raise DataError(f"folder:{root}: no readable image ({len(skipped)} unreadable)")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, size, size)
    return Dataset(f"folder:{root}", (x * 2.0 - 1.0).contiguous(), skipped=skipped)


def load(name: str, size: int = 32) -> Dataset:
    """The dataset called ``name`` (digits, faces, folder:PATH) at size x size, in [-1, 1]."""
    if not isinstance(size, int) or size < 8:
        raise ArgumentError(f"size: expected an integer >= 8, got {size!r}")
    if name == "digits":
        return _digits(size)
    if name == "faces":
        return _faces(size)
    if name.startswith("folder:"):
        return _folder(Path(name[len("folder:") :]).expanduser(), size)
    raise DataError(f"dataset: expected 'digits', 'faces' or 'folder:PATH', got {name!r}")
