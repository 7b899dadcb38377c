import warnings

import numpy as np
import pytest
import torch

from training import data


def test_digits_shape_range_labels():
    d = data.load("digits", 32)
    assert d.images.shape == (1797, 1, 32, 32) and d.images.dtype == torch.float32
    assert d.images.min() >= -1.0 and d.images.max() <= 1.0
    assert d.images.min() < -0.99 and d.images.max() > 0.9  # uses the whole range
    assert d.labels.shape == (1797,) and set(d.labels.tolist()) == set(range(10))


def test_faces_shape_range():
    d = data.load("faces", 32)
    assert d.images.shape == (200, 1, 32, 32)
    assert -1.0 <= d.images.min() < d.images.max() <= 1.0


def test_digits_other_size():
    assert data.load("digits", 64).images.shape == (1797, 1, 64, 64)


def test_folder_skips_and_reports_corrupt_files(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (50, 30, 3), dtype=np.uint8)).save(tmp_path / "sub" / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(tmp_path / "c.webp")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        d = data.load(f"folder:{tmp_path}", 16)
    assert d.images.shape == (3, 3, 16, 16)
    assert -1.0 <= d.images.min() and d.images.max() <= 1.0
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in d.skipped) == ["broken.png", "empty.jpg"]


def test_folder_without_images_raises(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(data.DataError, match="no readable"):
            data.load(f"folder:{tmp_path}", 16)
    with pytest.raises(data.DataError, match="no such folder"):
        data.load(f"folder:{tmp_path / 'missing'}", 16)


def test_unknown_dataset():
    with pytest.raises(data.DataError, match="expected 'digits'"):
        data.load("cifar10")
