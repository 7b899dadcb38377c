"""Packing (Lin, Khetan, Fanti and Oh 2018, "PacGAN: The power of two samples in generative adversarial networks").

The discriminator judges packs of m samples, all real or all generated, instead of single samples. A generator
that under-produces part of the data (drops a mode, or makes one class too rarely) is much easier to tell apart
from the data when D sees several samples at once, so packing penalises it; the paper proves the penalty grows
with m. Only D's input changes (m times the channels); G and its samples are untouched. ``--pack 2`` on
training.gan and training.dcgan.
"""

from __future__ import annotations

import torch

from genrt.errors import ArgumentError


def packed(x: torch.Tensor, pack: int) -> torch.Tensor:
    """(N, C, H, W) -> (N / pack, pack * C, H, W): each `pack` consecutive samples side by side as channels."""
    if pack == 1:
        return x
    n, c, h, w = x.shape
    if n % pack:
        raise ArgumentError(f"pack: a batch of {n} does not split into packs of {pack}")
    return x.reshape(n // pack, pack * c, h, w)
