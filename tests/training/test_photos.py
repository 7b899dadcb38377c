"""training.photos: the photo cache, its held-out split and crops at every scale (a fake cache: nothing fetched)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import photos  # noqa: E402
from training.data import DataError  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache holding every photo as a prepared array of random smooth colours (different sizes), none fetched."""
    monkeypatch.setenv("GENRT_PHOTOS", str(tmp_path))
    rng = np.random.default_rng(0)
    (tmp_path / "prepared").mkdir()
    for i, name in enumerate(photos.PHOTOS):
        h, w = 300 + 10 * i, 420 + 7 * i
        small = rng.integers(0, 256, (h // 20, w // 20, 3)).astype(np.uint8)
        np.save(photos._prepared_path(name), np.kron(small, np.ones((20, 20, 1), np.uint8))[:h, :w])
    return tmp_path


def test_held_out_photos_are_named_and_never_in_the_training_split(cache):
    train, held = photos.load("train"), photos.load("held-out")
    assert set(held.names) == set(photos.HELD_OUT) and not set(train.names) & set(photos.HELD_OUT)
    assert len(train) + len(held) == len(photos.PHOTOS)
    assert all(name in photos.PHOTOS for name in photos.HELD_OUT)
    with pytest.raises(DataError, match="split"):
        photos.load("test")


def test_every_photo_and_painting_has_a_package_an_author_and_a_licence():
    for name, (package, file, author, licence) in (photos.PHOTOS | photos.PAINTINGS).items():
        assert package in photos.PACKAGES and file and author and licence, name
        assert photos._member(name).startswith("usr/share/")
    assert not set(photos.PAINTINGS) & set(photos.PHOTOS)


def _ramp_pool(cache):
    """The training pool with one photo whose value is its row number (0-249): a crop's range gives its scale."""
    pool = photos.load("train")
    pool.images = [torch.arange(250, dtype=torch.uint8)[:, None].expand(250, 300)[None].expand(3, 250, 300)]
    return pool


def test_crops_come_at_every_scale_and_in_range(cache):
    pool = _ramp_pool(cache)
    torch.manual_seed(0)
    x = photos.random_crops(pool, 64, 32, rotate=False)
    assert x.shape == (64, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    rows = (x.amax((1, 2, 3)) - x.amin((1, 2, 3))) * 255  # about the crop's side in the photo, minus one
    assert rows.min() < 45 and rows.max() > 180  # from 32 pixels of the photo to nearly all of its 250 rows
    assert (rows < 100).float().mean() > 0.4  # log-uniform: half the crops under sqrt(32 * 250) = 89 rows
    torch.manual_seed(0)
    torch.testing.assert_close(photos.random_crops(pool, 64, 32, rotate=False), x)  # seeded: the same crops


def test_unrotated_crops_keep_the_photo_upright_and_rotated_ones_turn(cache):
    pool = _ramp_pool(cache)
    torch.manual_seed(1)
    x = photos.random_crops(pool, 16, 32, rotate=False)
    assert (x[:, :, -1] >= x[:, :, 0]).all()  # values grow downwards in every crop: mirrors only
    x = photos.random_crops(pool, 16, 32)
    assert not (x[:, :, -1] >= x[:, :, 0]).all()  # some crops turned


def test_a_missing_cache_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRT_PHOTOS", str(tmp_path))
    monkeypatch.setattr(photos, "fetch", lambda *a, **k: tmp_path)  # no download in this test
    with pytest.raises(photos.PhotosMissing, match="python -m training.photos"):
        photos.load("held-out")
