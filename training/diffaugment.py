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
    n, _, h, w = x.shape
    ch, cw = h // 2, w // 2
    oy = torch.randint(0, h - ch + 1, (n, 1, 1), device=x.device)
    ox = torch.randint(0, w - cw + 1, (n, 1, 1), device=x.device)
    yy = torch.arange(h, device=x.device)[None, :, None]
    xx = torch.arange(w, device=x.device)[None, None, :]
    inside = (yy >= oy) & (yy < oy + ch) & (xx >= ox) & (xx < ox + cw)  # (N, H, W)
    return torch.where(inside[:, None], torch.full_like(x, FILL), x)


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
