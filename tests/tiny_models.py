"""Tiny models built inside the tests (no downloads, no bundled weights)."""

import torch

import genrt.nn


class TinyGenerator(torch.nn.Module):
    """z (N, 16) -> (N, 1, 8, 8) in [-1, 1], DCGAN-shaped."""

    def __init__(self, latent_dim=16):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Unflatten(1, (latent_dim, 1, 1)),
            torch.nn.ConvTranspose2d(latent_dim, 8, 4, 1, 0, bias=False),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(8, 1, 4, 2, 1),
            torch.nn.Tanh(),
        )

    def forward(self, z):
        return self.net(z)


class TinyDiscriminator(torch.nn.Module):
    """(N, 1, 8, 8) -> logits (N, 1), with minibatch discrimination."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 4, 2, 1), torch.nn.LeakyReLU(0.2), torch.nn.Flatten())
        self.mbd = genrt.nn.MinibatchDiscrimination(64, num_kernels=6, kernel_dim=3)
        self.head = torch.nn.Linear(70, 1)

    def forward(self, x):
        return self.head(self.mbd(self.conv(x)))


def make(seed=0):
    torch.manual_seed(seed)
    g, d = TinyGenerator(), TinyDiscriminator()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        g.net[2].running_mean.uniform_(-0.5, 0.5)
        g.net[2].running_var.uniform_(0.5, 2.0)
    return g.eval(), d.eval()
