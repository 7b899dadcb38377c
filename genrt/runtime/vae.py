"""genrt.load(...) of a ``genrt.kind = "vae"`` model: a variational auto-encoder (Kingma and Welling 2014).

The graph (see training/vae.py): inputs images (N, C, S, S) in ``input_range`` and z (M, latent_dim); outputs
mu, logvar (N, latent_dim) and the decoder's mean (M, C, S, S) in ``output_range``. The two halves are
independent, so each method feeds a one-row dummy to the half it does not use.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from genrt.errors import ShapeError
from genrt.image import to_uint8_images
from genrt.latent import check_count
from genrt.runtime import _images
from genrt.runtime.models import Model


class VAE(Model):
    """A VAE: ``sample``, ``encode``, ``decode``, ``reconstruct``; ``manifold`` when the latent is 2-D.

    Images in and out are uint8 (N, H, W, C) (or (N, H, W) in); inputs of any size are resized to the model's.
    """

    _MAX_BATCH = 256

    @property
    def latent_dim(self) -> int:
        return int(_images.required(self, "latent_dim"))

    def _run(self, images: np.ndarray, z: np.ndarray):
        return self({"images": images, "z": z})

    def _dummy_images(self) -> np.ndarray:
        return np.zeros((1, self.channels, *self.image_size), np.float32)

    def encode(self, images) -> tuple[np.ndarray, np.ndarray]:
        """q(z|x) of uint8 images (N, H, W[, C]): (mu, logvar), float32 (N, latent_dim) each."""
        x = _images.images_to_model(
            images,
            size=self.image_size,
            channels=self.channels,
            value_range=self.metadata.get("input_range", (-1.0, 1.0)),
        )
        zero = np.zeros((1, self.latent_dim), np.float32)
        mus, logvars = [], []
        for i in range(0, len(x), self._MAX_BATCH):
            mu, logvar, _ = self._run(x[i : i + self._MAX_BATCH], zero)
            mus.append(mu)
            logvars.append(logvar)
        return np.concatenate(mus), np.concatenate(logvars)

    def decode(self, z) -> np.ndarray:
        """The decoder's mean image for each latent z (M, latent_dim): uint8 (M, H, W, C)."""
        z = _images.float_array(z, "z", shape_hint=f"(M, {self.latent_dim})")
        if z.ndim != 2 or z.shape[1] != self.latent_dim or len(z) < 1:
            raise ShapeError(f"z: expected shape (M, {self.latent_dim}) with M >= 1, got {z.shape}")
        dummy = self._dummy_images()
        means = [self._run(dummy, z[i : i + self._MAX_BATCH])[2] for i in range(0, len(z), self._MAX_BATCH)]
        return to_uint8_images(np.concatenate(means), self.metadata.get("output_range", (0.0, 1.0)))

    def latents(self, n: int, *, seed=None) -> np.ndarray:
        """n draws of the prior N(0, I): float32 (n, latent_dim)."""
        check_count(n, "n")
        return _images.rng(seed).standard_normal((n, self.latent_dim), dtype=np.float32)

    def sample(self, n: int, *, seed=None) -> np.ndarray:
        """n images decoded from z ~ N(0, I): uint8 (n, H, W, C). The same seed gives the same images."""
        return self.decode(self.latents(n, seed=seed))

    def reconstruct(self, images) -> np.ndarray:
        """decode(mu) of encode(images): uint8 (N, H, W, C) at the model's size."""
        mu, _ = self.encode(images)
        return self.decode(mu)

    def manifold(self, steps: int = 20, *, padding: int = 0) -> np.ndarray:
        """The learned 2-D manifold as one grid image, uint8 (steps*H, steps*W, C) (plus padding).

        As the paper's figure 4: latents on a steps x steps grid of the unit square, mapped through the inverse
        CDF of the Gaussian prior, so the grid covers the prior's probability mass evenly. Row 0 is z2 low.
        """
        from genrt.errors import ArgumentError
        from genrt.image import make_grid

        if self.latent_dim != 2:
            raise ArgumentError(f"manifold() needs a 2-D latent; this model's latent_dim is {self.latent_dim}")
        check_count(steps, "steps", low=2)
        q = np.array([NormalDist().inv_cdf(p) for p in np.linspace(0.5 / steps, 1 - 0.5 / steps, steps)])
        z = np.stack(np.meshgrid(q, q), -1).reshape(-1, 2).astype(np.float32)  # row-major: z1 varies fastest
        return make_grid(self.decode(z), nrow=steps, padding=padding)
