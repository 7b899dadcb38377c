"""python -m training.dcgan --dataset digits --epochs 20 --out runs/dcgan-digits [--minibatch-discrimination]
torchrun --nproc_per_node 2 -m training.dcgan --dataset digits --epochs 20 --out runs/dcgan-ddp

DCGAN (Radford, Metz and Chintala 2015), with the Improved-GAN techniques (Salimans et al. 2016) as flags, and
beyond them DiffAugment, PacGAN packing, the R1 penalty and spectral normalization (each in its own file).

The paper's guidelines: no pooling (strided convolutions in D, fractionally-strided ones in G), no fully connected
hidden layers, batch norm everywhere except G's output and D's input, ReLU in G with a tanh output, LeakyReLU(0.2)
in D, weights from N(0, 0.02), Adam with lr 2e-4 and beta1 0.5. Depth follows the image size: a 4x4 stage plus
one stride-2 stage per doubling (32x32: 3, 64x64: 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrt.errors import ArgumentError
from training import diffaugment, improved, sngan
from training.loop import Parts, TrainConfig, parse_config, train, update
from training.pacgan import packed
from training.r1 import r1_penalty


@dataclass
class DCGANConfig(TrainConfig):
    """DCGAN training run; the Improved-GAN techniques are off unless their flag is given."""

    out: str = "runs/dcgan"  # run folder: checkpoints, samples, config.json, generator.onnx
    base_width: int = 32  # channels of G's last / D's first stage; doubled per stage towards 4x4
    g_width: int = 0  # G's base width when it should differ from D's (0: base_width)
    k: int = 1  # discriminator steps per generator step (Algorithm 1 of Goodfellow et al.)
    lr_d: float = 0.0  # D's Adam learning rate when it should differ from G's (0: lr)
    feature_matching: bool = False  # G matches the mean of D's last hidden features (Improved-GAN 3.1)
    minibatch_discrimination: bool = False  # D sees each sample's closeness to its batch (3.2, genrt kernel)
    mbd_kernels: int = 100  # minibatch discrimination: number of kernels B
    mbd_kernel_dim: int = 5  # minibatch discrimination: kernel size C
    historical_averaging: float = 0.0  # weight of ||theta - mean of past theta||^2 on both players (3.3); 0: off
    label_smoothing: float = 0.0  # one-sided: real targets 1 - this (3.4; the paper uses 0.1); 0: off
    vbn: bool = False  # virtual batch norm in G instead of batch norm (3.5)
    vbn_reference: int = 64  # VBN reference batch size (fixed z drawn once at the start)
    pack: int = 1  # PacGAN (Lin et al. 2018): D judges packs of this many samples, all real or all generated
    diff_augment: str = ""  # DiffAugment policies for everything D sees: translation,cutout (Zhao et al. 2020)
    r1: float = 0.0  # gamma of the R1 penalty gamma/2 E||grad D(real)||^2 on D (Mescheder et al. 2018); 0: off
    spectral_norm: bool = False  # spectral normalization in D instead of its batch norms (Miyato et al. 2018)


def _stages(image_size: int) -> int:
    n = math.log2(image_size)
    if image_size < 16 or n != int(n):
        raise ArgumentError(f"image_size: DCGAN needs a power of two >= 16, got {image_size}")
    return int(n) - 2  # stride-2 stages between 4x4 and the image


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for conv weights, N(1, 0.02) for norm scales, zero biases (the paper's init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | improved.VirtualBatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (N, latent_dim) -> images (N, channels, S, S) in [-1, 1]."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, base_width: int, vbn_reference: int = 0):
        super().__init__()
        n = _stages(image_size)
        widths = [base_width * 2 ** (n - 1 - i) for i in range(n)]  # 32x32, base 32: [128, 64, 32]
        norm = (lambda c: improved.VirtualBatchNorm2d(c, vbn_reference)) if vbn_reference else nn.BatchNorm2d
        layers = [nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False), norm(widths[0]), nn.ReLU(True)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), norm(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.vbn = [m for m in self.net if isinstance(m, improved.VirtualBatchNorm2d)]
        if self.vbn:  # the reference batch: fixed at the start, saved with the weights
            self.register_buffer("z_ref", torch.randn(vbn_reference, latent_dim))
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        drop = 0
        if self.vbn:
            z, drop = improved.with_reference(z, self.z_ref, self.vbn)
        x = self.net(z[:, :, None, None])  # (N, latent_dim, 1, 1) -> (N, C, S, S)
        return x[drop:]


class Discriminator(nn.Module):
    """images (N, channels, S, S) -> (logits (N / pack,), features (N / pack, F)); features feed feature matching."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        base_width: int,
        mbd: tuple[int, int] | None = None,
        pack: int = 1,
        spectral_norm: bool = False,
    ):
        super().__init__()
        self.pack = pack
        channels *= pack
        n = _stages(image_size)
        widths = [base_width * 2**i for i in range(n)]  # 32x32, base 32: [32, 64, 128]
        layers = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]  # no norm on the input
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            if spectral_norm:  # normalised weights take the place of batch norm
                layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            else:
                layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
        self.net = nn.Sequential(*layers)
        self.out = nn.Conv2d(widths[-1], 1, 4, 1, 0)  # (N, C, 4, 4) -> (N, 1, 1, 1)
        self.mbd = None
        if mbd is not None:
            from genrt.nn import MinibatchDiscrimination

            # On the spatially pooled features, as the authors' code does after its global pool, so the L1
            # distances start in exp(-d)'s useful range; its B outputs add a linear term to the logit.
            self.mbd = MinibatchDiscrimination(widths[-1], num_kernels=mbd[0], kernel_dim=mbd[1])
            self.mbd_out = nn.Linear(mbd[0], 1)
        init_weights(self.net)
        init_weights(self.out)
        if self.mbd is not None:
            init_weights(self.mbd_out)
        if spectral_norm:
            sngan.spectrally_normalized(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(packed(x, self.pack))  # one decision per pack  # (N, C, 4, 4)
        logits = self.out(h).flatten()  # (N,)
        if self.mbd is not None:
            o = self.mbd(h.mean((2, 3)))[:, h.shape[1] :]  # (N, B)
            logits = logits + self.mbd_out(o).flatten()
        return logits, h.flatten(1)  # (N,), (N, C*4*4)


def build(cfg: DCGANConfig, image_shape: tuple[int, int, int], device) -> Parts:
    if cfg.k < 1:
        raise ArgumentError(f"k: expected a positive integer, got {cfg.k}")
    channels, size, _ = image_shape
    g_width = cfg.g_width or cfg.base_width
    G = Generator(cfg.latent_dim, channels, size, g_width, cfg.vbn_reference if cfg.vbn else 0).to(device)
    mbd = (cfg.mbd_kernels, cfg.mbd_kernel_dim) if cfg.minibatch_discrimination else None
    D = Discriminator(channels, size, cfg.base_width, mbd, cfg.pack, cfg.spectral_norm).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, 0.999))
    extra = {}
    if cfg.historical_averaging > 0:
        extra = {
            "hist_G": improved.HistoricalAverage(G.parameters()),
            "hist_D": improved.HistoricalAverage(D.parameters()),
        }
    bce = F.binary_cross_entropy_with_logits
    aug = diffaugment.make(cfg.diff_augment)

    def step(real: torch.Tensor, step: int) -> dict[str, float]:
        # Every minibatch is one discriminator step; every k-th is followed by the generator step.
        n = real.shape[0]
        z = torch.randn(n, cfg.latent_dim, device=device)
        fake = G(z)  # (N, C, S, S)

        # D: maximise log D(x) + log(1 - D(G(z))), real targets optionally smoothed (one-sided)
        real_in = aug(real).requires_grad_(cfg.r1 > 0)
        real_logits, real_feats = D(real_in)
        fake_logits, _ = D(aug(fake.detach()))
        loss_d = bce(real_logits, improved.real_targets(real_logits, cfg.label_smoothing)) + bce(
            fake_logits, torch.zeros_like(fake_logits)
        )
        if cfg.r1 > 0:
            loss_d = loss_d + cfg.r1 / 2 * r1_penalty(real_logits, real_in)
        if extra:
            loss_d = loss_d + cfg.historical_averaging * extra["hist_D"].penalty()
        update(opt_d, loss_d, D)
        losses = {"loss_d": loss_d.item()}
        if (step + 1) % cfg.k == 0:
            # G: non-saturating -log D(G(z)), or feature matching on D's last hidden layer
            logits, feats = D(aug(fake))
            if cfg.feature_matching:
                loss_g = improved.feature_matching_loss(real_feats, feats)
            else:
                loss_g = bce(logits, torch.ones_like(logits))
            if extra:
                loss_g = loss_g + cfg.historical_averaging * extra["hist_G"].penalty()
            update(opt_g, loss_g, G)
            losses["loss_g"] = loss_g.item()
            if extra:
                extra["hist_G"].update()
        if extra:
            extra["hist_D"].update()
        return losses

    before_export = None
    if cfg.vbn:

        def before_export():
            improved.freeze_reference(G, G.z_ref)

    return Parts(G, D, {"G": opt_g, "D": opt_d}, step, extra, before_export)


def main(argv=None) -> None:
    cfg = parse_config(
        DCGANConfig,
        argv,
        prog="python -m training.dcgan",
        example="python -m training.dcgan --dataset digits --epochs 20 --out runs/dcgan-digits",
    )
    train(cfg, build)


if __name__ == "__main__":
    main()
