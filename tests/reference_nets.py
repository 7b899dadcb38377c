"""Well-known networks as their authors wrote them, for tests and benchmarks of models genrt did not design.

- pytorch/examples' DCGAN (dcgan/main.py): the 64x64 generator with z shaped (N, nz, 1, 1) and its discriminator.
- Johnson et al. 2016's image transformation network (supplementary material, as in jcjohnson/fast-neural-style):
  9x9 conv, two stride-2 convs, five residual blocks, two stride-2 transposed convs, 9x9 conv, instance norm.
"""

from __future__ import annotations

import torch
from torch import nn


class DCGANGenerator(nn.Module):
    """pytorch/examples dcgan/main.py's Generator: z (N, nz, 1, 1) -> (N, nc, 64, 64) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


class DCGANDiscriminator(nn.Module):
    """pytorch/examples dcgan/main.py's Discriminator: (N, nc, 64, 64) -> (N,) probabilities."""

    def __init__(self, ndf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def dcgan_init(net: nn.Module, seed: int = 0) -> nn.Module:
    """pytorch/examples' weights_init, plus BatchNorm running statistics as after training; eval mode.

    Every parameter is set from `seed`, so two instances initialised alike are the same network.
    """
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _conv(cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    layers = [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride), nn.InstanceNorm2d(cout, affine=True)]
    return layers + [nn.ReLU()] if relu else layers


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(*_conv(channels, channels, 3), *_conv(channels, channels, 3, relu=False))

    def forward(self, x):
        return x + self.body(x)


class JohnsonTransformer(nn.Module):
    """Johnson et al. 2016's image transformation network: (N, 3, H, W) -> (N, 3, H, W), H and W multiples of 4.

    ``width`` is the first layer's channels (32 in the paper; 64 and 128 follow).
    """

    def __init__(self, width: int = 32, blocks: int = 5):
        super().__init__()
        w = width
        up = [
            nn.ConvTranspose2d(4 * w, 2 * w, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(2 * w, affine=True),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(w, affine=True),
            nn.ReLU(),
        ]
        self.net = nn.Sequential(
            *_conv(3, w, 9),
            *_conv(w, 2 * w, 3, 2),
            *_conv(2 * w, 4 * w, 3, 2),
            *[ResidualBlock(4 * w) for _ in range(blocks)],
            *up,
            nn.ReflectionPad2d(4),
            nn.Conv2d(w, 3, 9),
        )

    def forward(self, x):
        return torch.tanh(self.net(x))


def johnson_init(net: nn.Module, seed: int = 0) -> nn.Module:
    """Weights from `seed` (PyTorch's default init), instance-norm affine terms away from identity; eval mode."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            m.reset_parameters()
        elif isinstance(m, nn.InstanceNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.2)
            nn.init.normal_(m.bias, 0.0, 0.2)
    return net.eval()
