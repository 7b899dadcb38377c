"""python -m training.gan --dataset digits --epochs 30 --out runs/gan-digits [--k 1] [--loss minimax]

GAN (Goodfellow et al. 2014): MLP generator and discriminator trained by the paper's Algorithm 1.

Algorithm 1: for each training iteration, k discriminator steps (each on a fresh minibatch of data and noise)
ascending log D(x) + log(1 - D(G(z))), then one generator step. The generator descends log(1 - D(G(z)))
(``--loss minimax``, the value function as written) or, by default, ascends log D(G(z)): the non-saturating
variant the paper recommends in section 3, since log(1 - D(G(z))) saturates early in training when D rejects
every sample. The discriminator uses dropout, as in the paper's experiments (ReLU/LeakyReLU replace maxout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrt.errors import ArgumentError
from training import diffaugment
from training.loop import Parts, TrainConfig, parse_config, train, update
from training.pacgan import packed


@dataclass
class GANConfig(TrainConfig):
    """GAN (MLP) training run."""

    out: str = "runs/gan"  # run folder: checkpoints, samples, config.json, generator.onnx
    hidden: int = 512  # width of the hidden layers of both MLPs
    k: int = 1  # discriminator steps per generator step (Algorithm 1)
    loss: str = "non-saturating"  # generator loss: non-saturating (-log D(G(z))) or minimax (log(1 - D(G(z))))
    dropout: float = 0.3  # dropout in D's hidden layers
    pack: int = 1  # PacGAN (Lin et al. 2018): D judges packs of this many samples, all real or all generated
    diff_augment: str = ""  # DiffAugment policies for everything D sees: translation,cutout (Zhao et al. 2020)


class Generator(nn.Module):
    """z (N, latent_dim) -> images (N, C, H, W) in [-1, 1] through an MLP."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], hidden: int):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden // 2),
            nn.ReLU(True),
            nn.Linear(hidden // 2, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, math.prod(image_shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)  # (N, C, H, W)


class Discriminator(nn.Module):
    """images (N, C, H, W) -> logits (N / pack,) of "real" (one per pack of `pack` samples)."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: int, dropout: float, pack: int = 1):
        super().__init__()
        self.pack = pack
        self.net = nn.Sequential(
            nn.Linear(math.prod(image_shape) * pack, hidden),
            nn.LeakyReLU(0.2, True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden // 2),
            nn.LeakyReLU(0.2, True),
            nn.Dropout(dropout),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(packed(x, self.pack).flatten(1)).flatten()  # (N / pack,)


def build(cfg: GANConfig, image_shape: tuple[int, int, int], device) -> Parts:
    if cfg.loss not in ("non-saturating", "minimax"):
        raise ArgumentError(f"loss: expected 'non-saturating' or 'minimax', got {cfg.loss!r}")
    if cfg.k < 1:
        raise ArgumentError(f"k: expected a positive integer, got {cfg.k}")
    G = Generator(cfg.latent_dim, image_shape, cfg.hidden).to(device)
    D = Discriminator(image_shape, cfg.hidden, cfg.dropout, cfg.pack).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    aug = diffaugment.make(cfg.diff_augment)

    def step(real: torch.Tensor, step: int) -> dict[str, float]:
        # Every minibatch is one discriminator step; every k-th is followed by the generator step.
        n = real.shape[0]
        z = torch.randn(n, cfg.latent_dim, device=device)
        real_logits, fake_logits = D(aug(real)), D(aug(G(z).detach()))
        # -(log D(x) + log(1 - D(G(z)))), written with logits for stability
        loss_d = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        update(opt_d, loss_d, D)
        losses = {"loss_d": loss_d.item()}
        if (step + 1) % cfg.k == 0:
            logits = D(aug(G(torch.randn(n, cfg.latent_dim, device=device))))
            if cfg.loss == "minimax":
                loss_g = -F.softplus(logits).mean()  # log(1 - D(G(z))) = -softplus(logit), descended
            else:
                loss_g = F.softplus(-logits).mean()  # -log D(G(z))
            update(opt_g, loss_g, G)
            losses["loss_g"] = loss_g.item()
        return losses

    return Parts(G, D, {"G": opt_g, "D": opt_d}, step)


def main(argv=None) -> None:
    cfg = parse_config(
        GANConfig,
        argv,
        prog="python -m training.gan",
        example="python -m training.gan --dataset digits --epochs 30 --out runs/gan-digits",
    )
    train(cfg, build)


if __name__ == "__main__":
    main()
