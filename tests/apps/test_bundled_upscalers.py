"""The bundled upscalers do what their model card says, on the evaluation photos they never trained on."""

import numpy as np
import pytest

import genrt
from genrt.apps.upscale import Upscaler

pytest.importorskip("torch")  # training.superres_eval reads the photos with the training code's helpers
pytest.importorskip("sklearn")
pytest.importorskip("skimage")

from training.superres_eval import evaluate  # noqa: E402

NAMES = {"sr-x4": 4, "sr-x4-perceptual": 4, "sr-x8-perceptual": 8}


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
    x4, x8 = genrt.load("sr-x4"), genrt.load("sr-x8-perceptual")
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


@pytest.mark.parametrize("name", ["sr-x4-perceptual", "sr-x8-perceptual"])
def test_perceptual_models_bring_detail_back(scores, name):
    rows = scores[name]
    for image in ("china", "flower"):
        # sharper than bicubic and Lanczos, without giving up more than a dB and a half of PSNR for it
        assert rows[(image, "model")]["sharpness"] > 1.3 * rows[(image, "lanczos")]["sharpness"]
        assert rows[(image, "model")]["psnr"] > rows[(image, "bicubic")]["psnr"] - 1.5
