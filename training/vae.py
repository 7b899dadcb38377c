"""python -m training.vae --dataset digits --train-images 1347 --epochs 100 --out runs/vae-digits [--latent-dim 2]

Auto-Encoding Variational Bayes (Kingma and Welling 2014): a convolutional encoder q(z|x) = N(mu, diag(sigma^2)),
the reparameterisation z = mu + sigma * eps, a prior p(z) = N(0, I) and a convolutional decoder p(x|z).

Likelihood: Bernoulli, p(x|z) = prod_i Bern(x_i; sigmoid(logit_i)), with the grey levels x in [0, 1] as targets
(as the paper does for MNIST's grey levels; strictly a continuous relaxation, so the ELBO is a "Bernoulli ELBO").
The loss is the negative ELBO per image in nats: BCE summed over pixels plus KL(q(z|x) || N(0, I)) in closed form,
one sample of eps per image (the paper's L = 1, with M = batch size).

At the end (``--export``) the run writes ``vae.onnx``: one graph with inputs images (N, C, S, S) in [-1, 1] and
z (M, latent_dim), outputs mu, logvar (N, latent_dim) and the decoder's mean (M, C, S, S) in [0, 1], with
``genrt.kind = "vae"``; ``genrt.load`` gives :class:`genrt.runtime.vae.VAE` (sample, encode, decode, reconstruct,
and manifold for a 2-D latent). With ``--train-images`` the ELBO of the held-out images is measured and printed.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import genrt
from genrt.errors import ArgumentError
from training import data as data_mod
from training.loop import Parts, TrainConfig, average_gradients, parse_config, train


@dataclass
class VAEConfig(TrainConfig):
    """VAE training run (Bernoulli likelihood)."""

    out: str = "runs/vae"  # run folder: checkpoints, samples, config.json, vae.onnx
    latent_dim: int = 16  # size of z; 2 gives a drawable manifold
    lr: float = 1e-3  # Adam learning rate
    beta1: float = 0.9  # Adam beta1
    width: int = 32  # channels of the first encoder / last decoder stage, doubled per stage
    sample_every: int = 500  # steps between sample grids (and at the end)


def _stages(size: int) -> int:
    n = math.log2(size)
    if size < 8 or n != int(n):
        raise ArgumentError(f"image_size: the VAE needs a power of two >= 8, got {size}")
    return int(n) - 2  # stride-2 stages down to 4x4


class Encoder(nn.Module):
    """images (N, C, S, S) in [-1, 1] -> mu, logvar (N, latent_dim)."""

    def __init__(self, channels: int, size: int, width: int, latent_dim: int):
        super().__init__()
        layers, cin = [], channels
        for i in range(_stages(size)):
            layers += [nn.Conv2d(cin, width * 2**i, 4, 2, 1), nn.LeakyReLU(0.2)]
            cin = width * 2**i
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out = nn.Linear(cin * 16, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.out(self.net(x)).chunk(2, dim=1)  # (N, L) each
        return mu, logvar


class Decoder(nn.Module):
    """z (N, latent_dim) -> Bernoulli logits (N, C, S, S)."""

    def __init__(self, channels: int, size: int, width: int, latent_dim: int):
        super().__init__()
        n = _stages(size)
        self.top = width * 2 ** (n - 1)
        self.fc = nn.Sequential(nn.Linear(latent_dim, self.top * 16), nn.ReLU())
        layers, cin = [], self.top
        for i in reversed(range(n - 1)):
            layers += [nn.ConvTranspose2d(cin, width * 2**i, 4, 2, 1), nn.ReLU()]
            cin = width * 2**i
        layers += [nn.ConvTranspose2d(cin, channels, 4, 2, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, self.top, 4, 4))  # (N, C, S, S) logits


class ImageDecoder(nn.Module):
    """The decoder's mean as an image in [-1, 1]: what the loop's sample grids draw."""

    def __init__(self, decoder: Decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z)) * 2.0 - 1.0


class ExportedVAE(nn.Module):
    """(images (N, C, S, S) in [-1, 1], z (M, L)) -> (mu (N, L), logvar (N, L), mean (M, C, S, S) in [0, 1])."""

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, images: torch.Tensor, z: torch.Tensor):
        mu, logvar = self.encoder(images)
        return mu, logvar, torch.sigmoid(self.decoder(z))


def negative_elbo(
    encoder: Encoder, decoder: Decoder, x: torch.Tensor, *, samples: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-ELBO per image (N,) in nats, and its two terms (reconstruction, KL), for x (N, C, S, S) in [-1, 1]."""
    target = (x + 1.0) / 2.0  # grey levels in [0, 1] as Bernoulli targets
    mu, logvar = encoder(x)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)  # KL(N(mu, sigma^2) || N(0, 1)), (N,)
    rec = torch.zeros_like(kl)
    for _ in range(samples):
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation
        logits = decoder(z)
        rec = rec + F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
    rec = rec / samples
    return rec + kl, rec, kl


def build(cfg: VAEConfig, image_shape: tuple[int, int, int], device) -> Parts:
    channels, size, _ = image_shape
    encoder = Encoder(channels, size, cfg.width, cfg.latent_dim).to(device)
    decoder = Decoder(channels, size, cfg.width, cfg.latent_dim).to(device)
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999))

    def step(real: torch.Tensor, step: int) -> dict[str, float]:
        loss, rec, kl = negative_elbo(encoder, decoder, real)
        opt.zero_grad(set_to_none=True)
        loss.mean().backward()
        average_gradients(encoder)
        average_gradients(decoder)
        opt.step()
        return {"neg_elbo": loss.mean().item(), "rec": rec.mean().item(), "kl": kl.mean().item()}

    # The loop draws G(z) grids and checkpoints G and D: here the image decoder and the encoder.
    return Parts(ImageDecoder(decoder), encoder, {"vae": opt}, step)


@torch.no_grad()
def test_elbo(parts: Parts, images: torch.Tensor, *, samples: int = 10, seed: int = 0) -> dict:
    """Mean ELBO (nats per image, eps averaged over ``samples`` draws) and its terms on held-out images."""
    encoder, decoder = parts.D.eval(), parts.G.decoder.eval()
    torch.manual_seed(seed)
    loss, rec, kl = negative_elbo(encoder, decoder, images, samples=samples)
    return {
        "elbo": -loss.mean().item(),
        "reconstruction_nats": rec.mean().item(),
        "kl_nats": kl.mean().item(),
        "n": len(images),
    }


def export(parts: Parts, cfg: VAEConfig, dataset: str, path: Path, *, metrics: dict | None = None) -> Path:
    """Writes the VAE (encoder and decoder in one graph) with what genrt.runtime.vae.VAE needs in its metadata."""
    encoder, decoder = parts.D.cpu().eval(), parts.G.decoder.cpu().eval()
    channels = encoder.net[0].in_channels
    x = torch.rand(2, channels, cfg.image_size, cfg.image_size) * 2 - 1
    z = torch.randn(3, cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    from dataclasses import asdict

    meta = {
        "config": asdict(cfg),
        "dataset": dataset,
        "latent_dim": cfg.latent_dim,
        "latent_prior": "normal",
        "likelihood": "bernoulli",
        "image_size": [cfg.image_size, cfg.image_size],
        "channels": channels,
        "input_range": [-1.0, 1.0],
        "output_range": [0.0, 1.0],
        "description": cfg.description or f"VAE ({cfg.latent_dim}-D latent, Bernoulli) on {dataset}",
    }
    if metrics:
        meta["metrics"] = metrics
    return genrt.export(
        ExportedVAE(encoder, decoder),
        path,
        (x, z),
        kind="vae",
        metadata=meta,
        input_names=["images", "z"],
        output_names=["mu", "logvar", "mean"],
    )


def main(argv=None) -> None:
    cfg = parse_config(
        VAEConfig,
        argv,
        prog="python -m training.vae",
        example="python -m training.vae --dataset digits --train-images 1347 --epochs 100 --out runs/vae-digits",
    )
    do_export, cfg.export = cfg.export, False  # the loop would export a plain generator; the VAE exports itself
    parts = train(cfg, build)
    out = Path(cfg.out)
    saved = VAEConfig(**json.loads((out / "config.json").read_text()))  # the run's config (resume may merge)
    saved.export = do_export
    metrics = None
    full = data_mod.load(saved.dataset, saved.image_size)
    if 0 < saved.train_images < len(full):
        metrics = {"held_out": test_elbo(parts, full.images[saved.train_images :])}
        metrics["train"] = test_elbo(parts, full.images[: saved.train_images])
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(json.dumps(metrics), file=sys.stderr)
    if do_export:
        print(export(parts, saved, full.name, out / "vae.onnx", metrics=metrics))


if __name__ == "__main__":
    main()
