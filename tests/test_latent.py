"""genrt.latent against direct numpy formulas."""

import numpy as np
import pytest

import genrt
from genrt.latent import arithmetic_latents, concept_vector, interpolate_latents, walk_latents


def test_linear_interpolation():
    rng = np.random.default_rng(0)
    z0, z1 = rng.standard_normal(32), rng.standard_normal(32)
    lin = interpolate_latents(z0, z1, 5, method="linear")
    np.testing.assert_allclose(lin[2], (z0 + z1) / 2, rtol=1e-6)
    np.testing.assert_allclose(lin[[0, -1]], [z0, z1], rtol=1e-6)


def test_slerp_keeps_unit_norm_and_constant_angular_speed():
    rng = np.random.default_rng(1)
    u0, u1 = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 32)))
    path = interpolate_latents(u0, u1, 5)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, rtol=1e-5)
    omega = np.arccos(u0 @ u1)
    np.testing.assert_allclose(np.arccos(np.clip(path @ u0, -1, 1)), omega * np.linspace(0, 1, 5), atol=1e-4)


def test_slerp_of_parallel_vectors_is_linear():
    z = np.ones(4)
    np.testing.assert_allclose(interpolate_latents(z, 2 * z, 3)[1], 1.5 * z, rtol=1e-6)


def test_walk_visits_every_point_once():
    pts = np.random.default_rng(2).standard_normal((4, 8))
    walk = walk_latents(pts, 5)
    assert walk.shape == (3 * 4 + 1, 8)
    np.testing.assert_allclose(walk[[0, 4, 8, 12]], pts, rtol=1e-5, atol=1e-6)
    loop = walk_latents(pts, 5, closed=True)
    assert loop.shape == (4 * 4 + 1, 8)
    np.testing.assert_allclose(loop[-1], pts[0], rtol=1e-5, atol=1e-6)


def test_arithmetic():
    rng = np.random.default_rng(3)
    a, b, c = rng.standard_normal((3, 3, 6))
    out = arithmetic_latents(a, b, c, variants=4, noise=0.0)
    assert out.shape == (5, 6)
    np.testing.assert_allclose(out[0], a.mean(0) - b.mean(0) + c.mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[1:], np.repeat(out[:1], 4, 0))
    noisy = arithmetic_latents(a, b, c, variants=200, noise=0.5, seed=0)
    assert abs((noisy[1:] - noisy[0]).std() - 0.5) < 0.03
    np.testing.assert_allclose(concept_vector(a), a.mean(0))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: interpolate_latents(np.zeros(3), np.zeros(4), 3), genrt.ShapeError, "z1"),
        (lambda: interpolate_latents(np.zeros(3), np.zeros(3), 0), genrt.ArgumentError, "steps"),
        (lambda: interpolate_latents(np.zeros(3), np.zeros(3), 2, method="x"), genrt.ArgumentError, "method"),
        (lambda: walk_latents(np.zeros((1, 3)), 3), genrt.ShapeError, "k >= 2"),
        (lambda: walk_latents(np.zeros((2, 3)), 1), genrt.ArgumentError, "at least 2"),
        (lambda: arithmetic_latents(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 4))), genrt.ShapeError, "differ"),
        (lambda: concept_vector(np.zeros((0, 3))), genrt.ShapeError, "k >= 1"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
