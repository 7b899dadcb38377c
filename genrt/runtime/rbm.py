"""genrt.load(...) of a ``genrt.kind = "rbm"`` model: a Bernoulli-Bernoulli restricted Boltzmann machine.

The graph (see training/rbm.py): input images (N, C, S, S) in [0, 1]; outputs p(h=1|v) (N, F) and the parameters
W (V, F), b (V,), c (F,). Gibbs sampling runs here in numpy from those parameters (no torch).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from genrt.errors import ArgumentError
from genrt.image import to_uint8_images
from genrt.latent import check_count
from genrt.runtime import _images
from genrt.runtime.models import Model


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


class RBM(Model):
    """An RBM: ``features`` (p(h=1|v)), ``sample`` (Gibbs chains), ``filters`` (W as an image grid)."""

    _MAX_BATCH = 1024

    @property
    def hidden(self) -> int:
        return int(self.weights[0].shape[1])

    @cached_property
    def weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(W (V, F), b (V,), c (F,)) as float64, read once from the graph's parameter outputs."""
        dummy = np.zeros((1, self.channels, *self.image_size), np.float32)
        _, W, b, c = self({"images": dummy})
        return W.astype(np.float64), b.astype(np.float64), c.astype(np.float64)

    def features(self, images) -> np.ndarray:
        """p(h=1|v) of uint8 images (N, H, W[, C]), resized to the model's size: float32 (N, F)."""
        x = _images.images_to_model(images, size=self.image_size, channels=self.channels, value_range=(0.0, 1.0))
        return np.concatenate([self(x[i : i + self._MAX_BATCH])[0] for i in range(0, len(x), self._MAX_BATCH)])

    def sample(self, n: int, *, seed=None, gibbs_steps: int = 1000) -> np.ndarray:
        """n images after ``gibbs_steps`` steps of block Gibbs sampling from random binary v: uint8 (n, H, W, C).

        Each image is p(v=1|h) of the chain's last hidden state (the mean, which looks better than a binary
        sample and is what the literature shows).
        """
        check_count(n, "n")
        check_count(gibbs_steps, "gibbs_steps")
        gen = _images.rng(seed)
        W, b, c = self.weights
        v = (gen.random((n, W.shape[0])) < 0.5).astype(np.float64)
        pv = v
        for _ in range(gibbs_steps):
            h = (gen.random((n, W.shape[1])) < _sigmoid(v @ W + c)).astype(np.float64)
            pv = _sigmoid(h @ W.T + b)
            v = (gen.random(pv.shape) < pv).astype(np.float64)
        return to_uint8_images(pv.reshape(n, self.channels, *self.image_size), (0.0, 1.0))

    def filters(self, *, nrow: int | None = None, padding: int = 1) -> np.ndarray:
        """W as a grid of F images (one per hidden unit, each scaled to its own min..max): uint8 (H', W', C)."""
        from genrt.image import make_grid

        if nrow is not None:
            check_count(nrow, "nrow")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ArgumentError(f"padding: expected an integer >= 0, got {padding!r}")
        W = self.weights[0].T  # (F, V)
        lo, hi = W.min(1, keepdims=True), W.max(1, keepdims=True)
        scaled = (W - lo) / np.maximum(hi - lo, 1e-12)
        tiles = to_uint8_images(scaled.reshape(-1, self.channels, *self.image_size), (0.0, 1.0))
        return make_grid(tiles, nrow=nrow or math.ceil(math.sqrt(len(tiles))), padding=padding)
