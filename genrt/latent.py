"""Latent-space tools of the DCGAN paper (Radford et al. 2015, sections 6.1 and 6.3), in plain numpy.

Paths through latent space (interpolation and walks) and vector arithmetic on averaged concept vectors.
Generators (genrt.runtime.Generator) turn their output into images.
"""

from __future__ import annotations

import numpy as np

from genrt.errors import ArgumentError, ShapeError


def check_count(n, name: str, *, low: int = 1) -> int:
    """n as an int, or ArgumentError naming `name` unless n is an integer >= low."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < low:
        want = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ArgumentError(f"{name}: expected {want}, got {n!r}")
    return int(n)


def _vector(z, name: str, dim: int | None) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1 or (dim is not None and z.shape != (dim,)):
        raise ShapeError(f"{name}: expected shape ({dim if dim is not None else 'latent_dim'},), got {z.shape}")
    return z


def interpolate_latents(z0, z1, steps: int, *, method: str = "slerp", dim: int | None = None) -> np.ndarray:
    """(steps, dim) float32 latents from z0 to z1, both ends included.

    ``slerp`` follows the great circle between the two (White 2016, "Sampling Generative Networks"), which keeps
    Gaussian latents at a typical norm; ``linear`` is the straight line of the DCGAN paper.
    """
    check_count(steps, "steps")
    z0, z1 = _vector(z0, "z0", dim), _vector(z1, "z1", dim)
    if z0.shape != z1.shape:
        raise ShapeError(f"z1: expected shape {z0.shape} like z0, got {z1.shape}")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if method == "linear":
        return ((1 - t) * z0 + t * z1).astype(np.float32)
    if method != "slerp":
        raise ArgumentError(f"method: expected 'slerp' or 'linear', got {method!r}")
    n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
    omega = np.arccos(np.clip(np.dot(z0, z1) / max(n0 * n1, 1e-12), -1.0, 1.0))
    if omega < 1e-6 or np.pi - omega < 1e-6 or n0 == 0 or n1 == 0:  # (anti)parallel: no unique great circle
        return ((1 - t) * z0 + t * z1).astype(np.float32)
    return ((np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)).astype(np.float32)


def walk_latents(points, steps: int, *, method: str = "slerp", closed: bool = False) -> np.ndarray:
    """A walk through several latents (k, dim): `steps` per segment, each point visited once, in order.

    With ``closed=True`` the walk returns to the first point (a loop, for animations). Returns
    (segments * (steps - 1) + 1, dim) float32.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2:
        raise ShapeError(f"points: expected (k, latent_dim) with k >= 2, got shape {points.shape}")
    check_count(steps, "steps")
    if steps < 2:
        raise ArgumentError(f"steps: expected at least 2 per segment, got {steps}")
    if closed:
        points = np.concatenate([points, points[:1]])
    pieces = [interpolate_latents(a, b, steps, method=method) for a, b in zip(points[:-1], points[1:], strict=True)]
    return np.concatenate([pieces[0]] + [p[1:] for p in pieces[1:]])


def concept_vector(latents) -> np.ndarray:
    """The mean of several latents showing one concept (the paper averages three per concept)."""
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or latents.shape[0] < 1:
        raise ShapeError(f"latents: expected (k, latent_dim) with k >= 1, got shape {latents.shape}")
    return latents.mean(0)


def arithmetic_latents(a, b, c, *, variants: int = 8, noise: float = 0.25, seed=None) -> np.ndarray:
    """Latents for the concept arithmetic mean(a) - mean(b) + mean(c), e.g. smiling woman - woman + man.

    Returns (1 + variants, dim) float32: the result itself, then `variants` copies with N(0, noise^2) added,
    as in the paper's figure 7.
    """
    va, vb, vc = concept_vector(a), concept_vector(b), concept_vector(c)
    if not va.shape == vb.shape == vc.shape:
        raise ShapeError(f"a, b, c: latent sizes differ ({va.shape[0]}, {vb.shape[0]}, {vc.shape[0]})")
    if variants < 0 or noise < 0:
        raise ArgumentError(f"variants and noise: expected >= 0, got {variants} and {noise}")
    result = va - vb + vc
    rng = np.random.default_rng(seed)
    jitter = rng.standard_normal((variants, result.shape[0])) * noise
    return np.concatenate([result[None], result[None] + jitter]).astype(np.float32)
