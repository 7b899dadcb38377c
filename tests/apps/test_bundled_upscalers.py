"""The bundled upscalers do what their model card says, on the evaluation photos they never trained on."""

import numpy as np
import pytest

import genrt
from genrt.apps.upscale import Upscaler

pytest.importorskip("torch")  # training.superres_eval reads the photos with the training code's helpers
pytest.importorskip("sklearn")
pytest.importorskip("skimage")

from training.superres_eval import evaluate  # noqa: E402

NAMES = {"sr-x4": 4, "sr-x4-perceptual": 4, "sr-x8": 8}


@pytest.fixture(scope="module")
def scores():
    out = {}
    for name in NAMES:
        model = genrt.load(name)
        rows = evaluate(lambda lr, m=model: m.upscale(lr), model.scale)
        out[name] = {(r["image"], r["method"]): r for r in rows}
    return out


@pytest.mark.parametrize("name", NAMES)
def test_bundled_upscalers_load(name):
    model = genrt.load(name)
    assert isinstance(model, Upscaler) and model.scale == NAMES[name]
    assert 8 <= model.receptive_field <= 32 and model.metadata["description"]


def test_x8_tiles_are_smaller_for_the_same_memory():
    x4, x8 = genrt.load("sr-x4"), genrt.load("sr-x8")
    assert 3.5 < x8.activation_bytes / x4.activation_bytes < 4.5  # 64 output pixels per input pixel against 16
    assert x4.default_tile(2000, 2000) == 256 and 96 <= x8.default_tile(2000, 2000) < 256


def _mean(rows, method, key="psnr"):
    return np.mean([rows[(image, method)][key] for image in ("china", "flower")])


def test_sr_x4_is_a_db_above_bicubic(scores):
    rows = scores["sr-x4"]
    assert _mean(rows, "model") >= _mean(rows, "bicubic") + 1.0  # the card's goal
    for image in ("china", "flower"):
        assert rows[(image, "model")]["psnr"] > rows[(image, "lanczos")]["psnr"]
        assert rows[(image, "model")]["ssim"] > rows[(image, "bicubic")]["ssim"]


def test_sr_x8_beats_bicubic_and_lanczos_on_each_photo(scores):
    """The floor of issue 27: x8 is worth shipping only where it beats the classic methods it replaces (measured:
    +0.33 dB over bicubic on china, +1.28 on flower)."""
    rows = scores["sr-x8"]
    for image in ("china", "flower"):
        assert rows[(image, "model")]["psnr"] >= rows[(image, "bicubic")]["psnr"] + 0.25, image
        assert rows[(image, "model")]["psnr"] > rows[(image, "lanczos")]["psnr"], image
        assert rows[(image, "model")]["ssim"] > rows[(image, "lanczos")]["ssim"], image


@pytest.mark.xfail(strict=True, reason="issue 27's target, not met on china: +0.33 dB (sr-x8's card)")
def test_sr_x8_is_half_a_db_above_bicubic_on_each_photo(scores):
    rows = scores["sr-x8"]
    for image in ("china", "flower"):
        assert rows[(image, "model")]["psnr"] >= rows[(image, "bicubic")]["psnr"] + 0.5, image


@pytest.mark.parametrize(
    "name",
    [n if n != "sr-x4-perceptual" else pytest.param(n, marks=pytest.mark.xfail(
        strict=True, reason="a faint grid at its stride: 2.0 / 0.95 grey levels (its card)")) for n in NAMES],
)  # fmt: skip
def test_no_grid_at_the_networks_stride(scores, name):
    """No dot grid (the old x8 model's scored 1.7-2.9 grey levels; the truth itself scores 0.1-0.2 against bicubic)."""
    for image in ("china", "flower"):
        assert scores[name][(image, "model")]["grid"] < 0.5, image


def test_grid_strength_sees_a_grid():
    """The measure itself: a faint dot grid every 8 pixels added to bicubic scores its amplitude, noise does not."""
    from training.superres_eval import grid_strength

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (192, 256, 3)).astype(np.uint8)
    dots = np.zeros((192, 256, 1))
    dots[::8, ::8] = 16.0
    gridded = np.clip(base + dots, 0, 255).astype(np.uint8)
    noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    assert grid_strength(gridded, base, 8) > 1.0
    assert grid_strength(noisy, base, 8) < 0.5


def test_perceptual_model_brings_detail_back(scores):
    rows = scores["sr-x4-perceptual"]
    for image in ("china", "flower"):
        # sharper than bicubic and Lanczos, without giving up more than a dB and a half of PSNR for it
        assert rows[(image, "model")]["sharpness"] > 1.3 * rows[(image, "lanczos")]["sharpness"]
        assert rows[(image, "model")]["psnr"] > rows[(image, "bicubic")]["psnr"] - 1.5
