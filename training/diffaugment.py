"""Differentiable augmentation for small datasets (Zhao, Liu, Lin, Zhu and Han 2020, "Differentiable Augmentation
for Data-Efficient GAN Training").

With a few thousand training images the discriminator memorises them, and its gradients stop telling the
generator what real images look like. DiffAugment applies the same kind of random transformation to every image
D sees -- real ones, and generated ones in both players' updates -- so D has to judge content that survives the
transformation, while the generator still learns the untransformed distribution (the transformations are
differentiable, so its gradients flow through them, and they are never applied to what it produces at
inference).

Policies (comma-separated in ``--diff-augment``):

- ``translation``: each image shifted by up to size/16 pixels in each direction (2 at 32x32), the uncovered
  border filled with -1, the low end of the image range (the background of the digits);
- ``cutout``: a random square of half the image side set to -1 in each image (the paper's cutout ratio 0.5).

Also here, for the views of semi-supervised and clustering objectives (training/ssgan.py, training/infogan.py):
:func:`affine` (random turns, scalings, shears, shifts), :func:`cutout_square`, :func:`stroke_width`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genrt.errors import ArgumentError

FILL = -1.0  # value of uncovered and cut-out pixels


def translation(x: torch.Tensor) -> torch.Tensor:
    """Shifts each image of (N, C, H, W) by its own random offset of at most H/16, W/16 pixels."""
    n, _, h, w = x.shape
    sh, sw = max(1, h // 16), max(1, w // 16)
    padded = F.pad(x, (sw, sw, sh, sh), value=FILL)
    dy = torch.randint(0, 2 * sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * sw + 1, (n, 1, 1), device=x.device)
    rows = dy + torch.arange(h, device=x.device)[None, :, None]  # (N, H, 1)
    cols = dx + torch.arange(w, device=x.device)[None, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # gather: differentiable in x


def cutout(x: torch.Tensor) -> torch.Tensor:
    """Sets a random (H/2, W/2) square of each image of (N, C, H, W) to FILL."""
    return cutout_square(x, 0.5)


def cutout_square(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """Sets a random (ratio H, ratio W) square of each image of (N, C, H, W) to FILL."""
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio)), max(1, int(w * ratio))
    oy = torch.randint(0, h - ch + 1, (n, 1, 1), device=x.device)
    ox = torch.randint(0, w - cw + 1, (n, 1, 1), device=x.device)
    yy = torch.arange(h, device=x.device)[None, :, None]
    xx = torch.arange(w, device=x.device)[None, None, :]
    inside = (yy >= oy) & (yy < oy + ch) & (xx >= ox) & (xx < ox + cw)  # (N, H, W)
    return torch.where(inside[:, None], torch.full_like(x, FILL), x)


def affine(x: torch.Tensor, *, degrees: float, scale: float, shift: float, shear: float = 0.0) -> torch.Tensor:
    """Each image of (N, C, H, W) rotated by up to ``degrees``, scaled by up to 1 +- ``scale``, sheared by up to
    ``shear`` (a fraction of the width per height) and shifted by up to ``shift`` of its side, each drawn per image;
    bilinear, uncovered pixels FILL. Digits keep their class under small ones; slant and width do not."""
    n = x.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, device=x.device) * 2 - 1) * limit

    angle = uniform(degrees) * (torch.pi / 180)
    s = 1 + uniform(scale)
    k = uniform(shear)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    # output -> input coordinates: (rotation / scale) @ shear, then the shift (in [-1, 1] units: 2 * fraction)
    theta = torch.stack(
        [
            torch.stack([cos, cos * k - sin, uniform(2 * shift)], 1),
            torch.stack([sin, sin * k + cos, uniform(2 * shift)], 1),
        ],
        1,
    )
    return warp(x, theta)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W) resampled (bilinear) at theta (N, 2, 3) @ (x, y, 1) of each output pixel, in
    ``affine_grid``'s [-1, 1] coordinates (pixel centres, align_corners=False); pixels from outside are FILL."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - FILL, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + FILL


def stroke_width(x: torch.Tensor) -> torch.Tensor:
    """Each image of (N, C, H, W) (bright strokes on a FILL background) thickened (3x3 dilation), thinned (3x3
    erosion) or kept, a third each."""
    thick = F.max_pool2d(x, 3, 1, 1)
    thin = -F.max_pool2d(-x, 3, 1, 1)
    pick = torch.randint(0, 3, (x.shape[0], 1, 1, 1), device=x.device)
    return torch.where(pick == 0, thick, torch.where(pick == 1, thin, x))


POLICIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"translation": translation, "cutout": cutout}


def make(policy: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The augmentation for a comma-separated policy string; the identity for ""."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in POLICIES:
            raise ArgumentError(
                f"diff_augment: unknown policy {name!r}; expected a comma-separated list of {', '.join(POLICIES)}"
            )
    fns = [POLICIES[name] for name in names]

    def augment(x: torch.Tensor) -> torch.Tensor:
        for fn in fns:
            x = fn(x)
        return x

    return augment
