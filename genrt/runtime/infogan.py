"""genrt.load(...) of a ``genrt.kind = "infogan"`` model: a generator whose latent holds interpretable codes.

The graph maps latents (N, latent_dim) to images (N, C, S, S) in ``output_range``; ``metadata["codes"]`` gives the
layout: ``noise`` N(0, I) values, then a one-hot ``categorical`` code per entry of its list, then ``continuous``
U(-1, 1) codes (see training/infogan.py).
"""

from __future__ import annotations

import numpy as np

from genrt.errors import ArgumentError, ShapeError
from genrt.image import make_grid, to_uint8_images
from genrt.latent import check_count
from genrt.runtime import _images
from genrt.runtime.models import Model

_CODE_KEYS = ("category", "continuous")


class InfoGAN(Model):
    """An InfoGAN generator: ``sample`` with some codes fixed, ``traverse`` (one code varied, the rest fixed)."""

    _MAX_BATCH = 256

    @property
    def codes(self) -> dict:
        return dict(_images.required(self, "codes"))

    @property
    def noise_dim(self) -> int:
        return int(self.codes["noise"])

    @property
    def categories(self) -> int:
        return int(self.codes["categorical"][0])

    @property
    def continuous(self) -> int:
        return int(self.codes["continuous"])

    @property
    def latent_dim(self) -> int:
        return self.noise_dim + self.categories + self.continuous

    def latents(self, n: int, *, seed=None, codes: dict | None = None) -> np.ndarray:
        """n latents (n, latent_dim): the codes given in ``codes`` fixed, everything else drawn from its prior.

        ``codes``: ``{"category": int or n ints in [0, categories), "continuous": [c_1, ..., c_M] or (n, M)}``.
        """
        n = check_count(n, "n")
        gen = _images.rng(seed)
        codes = {} if codes is None else codes
        if not isinstance(codes, dict):
            raise ArgumentError(f"codes: expected a dict with keys {_CODE_KEYS}, got {type(codes).__name__}")
        unknown = set(codes) - set(_CODE_KEYS)
        if unknown:
            raise ArgumentError(f"codes: unknown key(s) {sorted(unknown)}; expected some of {list(_CODE_KEYS)}")
        # draw everything first, so fixing a code leaves the other draws of the same seed unchanged
        noise = gen.standard_normal((n, self.noise_dim), dtype=np.float32)
        cat = gen.integers(0, self.categories, n)
        cont = gen.uniform(-1.0, 1.0, (n, self.continuous)).astype(np.float32)
        if "category" in codes:
            c = np.asarray(codes["category"])
            if c.dtype.kind not in "iu" or c.ndim > 1 or (c.ndim == 1 and c.shape != (n,)):
                raise ArgumentError(f"codes['category']: expected an integer or {n} integers, got {c.tolist()!r}")
            if ((c < 0) | (c >= self.categories)).any():
                raise ArgumentError(f"codes['category']: values must be in [0, {self.categories}), got {c.tolist()}")
            cat = np.broadcast_to(c, (n,))
        if "continuous" in codes:
            v = _images.float_array(codes["continuous"], "codes['continuous']", shape_hint=f"({self.continuous},)")
            if v.shape not in ((self.continuous,), (n, self.continuous)):
                raise ShapeError(
                    f"codes['continuous']: expected shape ({self.continuous},) or ({n}, {self.continuous}), "
                    f"got {v.shape}"
                )
            cont = np.broadcast_to(v, (n, self.continuous))
        onehot = np.eye(self.categories, dtype=np.float32)[cat]
        return np.ascontiguousarray(np.concatenate([noise, onehot, cont], 1), dtype=np.float32)

    def generate(self, z) -> np.ndarray:
        """Images for latents z (n, latent_dim): uint8 (n, H, W, C)."""
        z = _images.float_array(z, "z", shape_hint=f"(n, {self.latent_dim})")
        if z.ndim != 2 or z.shape[1] != self.latent_dim or len(z) < 1:
            raise ShapeError(f"z: expected shape (n, {self.latent_dim}) with n >= 1, got {z.shape}")
        out = np.concatenate([self(z[i : i + self._MAX_BATCH]) for i in range(0, len(z), self._MAX_BATCH)])
        return to_uint8_images(out, self.metadata.get("output_range", (-1.0, 1.0)))

    def sample(self, n: int, *, seed=None, codes: dict | None = None) -> np.ndarray:
        """n images, uint8 (n, H, W, C); codes left out of ``codes`` are drawn from their priors.

        Example: ``sample(8, seed=0, codes={"category": 3, "continuous": [0.5, -1.0]})``.
        """
        return self.generate(self.latents(n, seed=seed, codes=codes))

    def traverse(self, code="category", steps: int | None = None, *, rows: int = 10, seed=0, span=(-1.0, 1.0)):
        """The paper's figure: one grid image, uint8 (H', W', C), each row one draw of everything else, each
        column one value of ``code``.

        ``code``: "category" (columns are its values 0..K-1; ``steps`` must be None or K) or "continuous:i"
        (i from 0; ``steps`` values evenly over ``span``, default 10 over [-1, 1]; the paper also shows [-2, 2]).
        """
        rows = check_count(rows, "rows")
        base = self.latents(rows, seed=seed)  # (rows, latent_dim)
        if code == "category":
            if steps is not None and steps != self.categories:
                raise ArgumentError(f"steps: the category code has {self.categories} values, got steps={steps!r}")
            steps = self.categories
            z = np.repeat(base, steps, axis=0)  # row r, column k at r * steps + k
            cat = slice(self.noise_dim, self.noise_dim + self.categories)
            z[:, cat] = np.tile(np.eye(self.categories, dtype=np.float32), (rows, 1))
        elif isinstance(code, str) and code.startswith("continuous:") and code[len("continuous:") :].isdigit():
            i = int(code[len("continuous:") :])
            if i >= self.continuous:
                raise ArgumentError(f"code: this model has {self.continuous} continuous codes (0..), got {code!r}")
            steps = check_count(10 if steps is None else steps, "steps", low=2)
            lo, hi = _check_span(span)
            z = np.repeat(base, steps, axis=0)
            z[:, self.noise_dim + self.categories + i] = np.tile(np.linspace(lo, hi, steps, dtype=np.float32), rows)
        else:
            names = ["category"] + [f"continuous:{i}" for i in range(self.continuous)]
            raise ArgumentError(f"code: expected one of {names}, got {code!r}")
        return make_grid(self.generate(z), nrow=steps)


def _check_span(span) -> tuple[float, float]:
    try:
        lo, hi = (float(s) for s in span)
    except (TypeError, ValueError):
        raise ArgumentError(f"span: expected (low, high), got {span!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ArgumentError(f"span: expected finite low < high, got {span!r}")
    return lo, hi
