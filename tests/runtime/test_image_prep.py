"""genrt.runtime._images: the numpy resize matches torch's antialiased bilinear (what training/data.py uses)."""

import numpy as np
import pytest

from genrt.errors import ArgumentError, DTypeError, ShapeError
from genrt.latent import check_count
from genrt.runtime import _images

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("src,dst", [((8, 8), (32, 32)), ((8, 8), (16, 16)), ((25, 25), (32, 32)), ((40, 30), (7, 9))])
def test_resize_matches_torch_antialiased_bilinear(src, dst):
    x = np.random.default_rng(0).random((2, 3, *src)).astype(np.float32)
    want = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=dst, mode="bilinear", align_corners=False, antialias=True
    ).numpy()
    np.testing.assert_allclose(_images.resize(x, *dst), want, atol=1e-6)


def test_images_to_model_layout_and_range():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    x = _images.images_to_model(images, size=(5, 5), channels=3, value_range=(-1, 1))
    assert x.shape == (2, 3, 5, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x, images.transpose(0, 3, 1, 2) / 127.5 - 1, atol=1e-6)
    grey = _images.images_to_model(images[..., :1], size=(5, 5), channels=3, value_range=(0, 1))
    np.testing.assert_allclose(grey[:, 0], grey[:, 2])


@pytest.mark.parametrize(
    "value,error",
    [(np.zeros((2, 4, 4), np.float32), DTypeError), (np.zeros((4, 4), np.uint8), ShapeError), ([], ShapeError)],
)
def test_images_to_model_rejects(value, error):
    with pytest.raises(error):
        _images.images_to_model(value, size=(4, 4), channels=1)


def test_seed_and_count_checks():
    assert _images.rng(3).integers(10) == np.random.default_rng(3).integers(10)
    for bad in (-1, 1.5, "1", True):
        with pytest.raises(ArgumentError):
            _images.rng(bad)
    with pytest.raises(ArgumentError):
        check_count(0, "n")
