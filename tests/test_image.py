"""genrt.image: PNG bytes decoded by Pillow (an independent decoder), grids, atomic writes."""

import io

import numpy as np
import pytest

import genrt
from genrt.image import encode_png, make_grid, save_png

Image = pytest.importorskip("PIL.Image")


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (3, 4, 2), (6, 2, 3), (1, 1, 4), (33, 17, 3)])
def test_png_round_trip(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(image))))
    np.testing.assert_array_equal(decoded.reshape(image.shape), image)


def test_bad_images():
    with pytest.raises(genrt.DTypeError, match="uint8"):
        encode_png(np.zeros((2, 2), np.float32))
    with pytest.raises(genrt.ShapeError, match="C in 1-4"):
        encode_png(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(genrt.ShapeError, match="non-empty"):
        encode_png(np.zeros((0, 2), np.uint8))


def test_grid_layout():
    images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 2, 3, 1), np.uint8) + 1
    grid = make_grid(images, nrow=3, padding=1)
    assert grid.shape == (1 + 2 * 3, 1 + 3 * 4, 1)
    assert grid[1, 1, 0] == 1 and grid[1, 5, 0] == 2 and grid[4, 1, 0] == 4 and grid[4, 5, 0] == 5
    assert grid[4, 9, 0] == 0  # the empty sixth cell stays padding
    assert make_grid(images).shape[1] == 2 + 3 * 5  # default: about square (3 per row)


def test_save_png_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    save_png(path, np.zeros((2, 2), np.uint8))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("genrt.image.os.replace", boom)
    with pytest.raises(OSError):
        save_png(path, np.full((2, 2), 255, np.uint8))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    path = save_png(tmp_path / "p.png", np.zeros((2, 2), np.uint8))
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
