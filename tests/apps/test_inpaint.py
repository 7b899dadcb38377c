"""The Inpainter kind and `genrt inpaint`, on a small random-weight context encoder, against PyTorch and numpy."""

import numpy as np
import pytest

import genrt
from genrt.apps import inpaint as app
from genrt.apps.inpaint import Inpainter, read_mask
from genrt.cli import main
from genrt.image import Picture, read_image

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from training import context_encoder as ce  # noqa: E402


@pytest.fixture(scope="module")
def net_and_model(tmp_path_factory):
    torch.manual_seed(0)
    net = ce.ContextEncoder(32, width=8, max_width=16).eval()
    torch.nn.init.normal_(net.decoder[-1].weight, 0.0, 0.05)  # a real correction of the harmonic fill
    cfg = ce.CEConfig(size=32, width=8, max_width=16, export_weights="float32")
    path = ce.export_inpainter(net, cfg, tmp_path_factory.mktemp("inpaint") / "inpaint.onnx")
    return net, genrt.load(path, threads=1)


@pytest.fixture(scope="module")
def model(net_and_model):
    return net_and_model[1]


def _photo(h, w, dtype=np.uint8):
    skimage = pytest.importorskip("skimage")
    from skimage import transform

    image = transform.resize(skimage.data.astronaut(), (h, w), anti_aliasing=True)
    return np.rint(image * np.iinfo(dtype).max).astype(dtype)


def _holes(h, w):
    """A square, a thin long stroke and a corner patch touching two edges."""
    hole = np.zeros((h, w), bool)
    hole[20:36, 30:46] = True
    hole[70:74, 10 : w - 20] = True
    hole[h - 12 :, w - 9 :] = True
    return hole


def test_loads_as_an_inpainter(model):
    assert isinstance(model, Inpainter) and model.kind == "inpainter" and model.size == 32


def test_a_window_the_networks_size_is_the_network_itself(net_and_model):
    """A 32x32 image with the centre hole is one window, not resized: the result is torch's prediction."""
    net, model = net_and_model
    image = _photo(32, 32)
    hole = ce.centre_mask(32)[0].numpy() > 0.5
    out = model.inpaint(image, hole, blend="none")
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        ref = net(x, torch.from_numpy(hole).float()[None, None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    ref = np.rint(ref * 255).astype(np.uint8)
    assert np.abs(out.astype(int) - ref.astype(int))[hole].max() <= 1
    assert (out[~hole] == image[~hole]).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_blend_none_changes_only_the_holes_bit_for_bit(model, dtype):
    image = _photo(96, 120, dtype)
    hole = _holes(96, 120)
    out = model.inpaint(image, hole, blend="none")
    assert out.dtype == dtype and out.shape == image.shape
    assert (out[~hole] == image[~hole]).all()
    assert (out[hole] != image[hole]).any(-1).mean() > 0.9


def test_feather_changes_a_thin_band_and_poisson_only_the_holes(model):
    from scipy import ndimage

    image = _photo(96, 120)
    hole = _holes(96, 120)
    distance = ndimage.distance_transform_edt(~hole)  # to the nearest hole pixel
    changed = (model.inpaint(image, hole, blend="feather") != image).any(-1)
    assert distance[changed].max() < 5 and (changed & (distance > 0)).sum() > 0  # the default: 4 window pixels
    wide = (model.inpaint(image, hole, blend="feather", feather=9) != image).any(-1)
    assert distance[wide].max() < 10 and distance[wide].max() >= 5
    poisson = model.inpaint(image, hole, blend="poisson")
    assert (poisson[~hole] == image[~hole]).all()


def test_poisson_keeps_the_fills_gradients_and_meets_the_context():
    """A fill that is the truth plus a constant blends back to the truth; a flat fill gives Laplace's solution
    (Jacobi iterations to convergence in numpy)."""
    rng = np.random.default_rng(0)
    truth = rng.random((3, 20, 24))
    region = np.zeros((20, 24), bool)
    region[5:14, 0:9] = True  # touching the image's left edge: a free boundary there
    solved = app._poisson(truth, truth + 0.3, region, (0, 0), region.shape)
    np.testing.assert_allclose(solved, truth[:, region], atol=1e-5)
    ref = truth.copy()
    for _ in range(3000):
        padded = np.pad(ref, ((0, 0), (1, 1), (1, 1)), mode="edge")  # edge: the free boundary's mirror
        nb = (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]) / 4
        ref[:, region] = nb[:, region]
    flat = app._poisson(truth, np.full_like(truth, 0.5), region, (0, 0), region.shape)
    np.testing.assert_allclose(flat, ref[:, region], atol=1e-4)


def test_any_mask_form(model, tmp_path):
    image = _photo(64, 80)
    pic = Picture(image)
    hole = np.zeros((64, 80), bool)
    hole[10:30, 20:44] = True
    grey = np.where(hole, 255, 0).astype(np.uint8)
    Image.fromarray(grey).convert("RGB").save(tmp_path / "mask.png")
    rgba = np.full((64, 80, 4), 255, np.uint8)  # a white mask image, opaque
    rgba[30:40, 0:5, 3] = 0  # white but transparent: not a hole
    forms = [hole, hole.astype(np.float32), hole.astype(np.uint8), grey, grey.astype(np.uint16) * 257,
             Image.fromarray(grey), Image.fromarray(grey).convert("RGB"), str(tmp_path / "mask.png"),
             tmp_path / "mask.png", (20, 10, 24, 20)]  # fmt: skip
    for form in forms:
        np.testing.assert_array_equal(read_mask(form, pic), hole, err_msg=type(form).__name__)
    rgba_mask = read_mask(Image.fromarray(rgba, "RGBA"), pic)
    assert rgba_mask[30:40, 0:5].sum() == 0 and rgba_mask.sum() == 64 * 80 - 50


def test_transparent_pixels_are_the_hole_and_come_out_opaque(model):
    image = _photo(64, 64)
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[20:40, 16:30] = 0
    out = model.inpaint(np.dstack([image, alpha]))
    assert out.shape == (64, 64, 4) and (out[..., 3] == 255).all()
    hole = alpha == 0
    assert (out[~hole, :3] == image[~hole]).all() and (out[hole, :3] != image[hole]).any()


def test_bad_masks_are_clear_errors(model, monkeypatch):
    image = _photo(40, 50)
    with pytest.raises(genrt.errors.ShapeError, match="50x40"):
        model.inpaint(image, np.zeros((40, 49), bool))
    with pytest.raises(genrt.ArgumentError, match="whole image"):
        model.inpaint(image, np.ones((40, 50), bool))
    with pytest.raises(genrt.ArgumentError, match="leaves"):
        model.inpaint(image, (40, 0, 20, 10))
    with pytest.raises(genrt.ArgumentError, match="rectangle"):
        model.inpaint(image, (1, 2, 3))
    with pytest.raises(genrt.ArgumentError, match="no transparent"):
        model.inpaint(image)
    with pytest.raises(genrt.ArgumentError, match="blend"):
        model.inpaint(image, (1, 1, 5, 5), blend="smooth")

    def boom(*args, **kwargs):
        raise AssertionError("the network ran for an empty mask")

    monkeypatch.setattr(Inpainter, "__call__", boom)
    out = model.inpaint(image, np.zeros((40, 50), bool))
    assert (out == image).all()


def test_windows_cover_every_hole_pixel(model, monkeypatch):
    """With a network that predicts one flat grey, every hole pixel must come out that grey, whatever the windows
    (a thin stroke across the image gets several, a corner patch one reflected past the edges)."""

    def flat(self, feeds):  # the inpainter feeds its inputs by name
        image = next(v for v in feeds.values() if v.shape[1] == 3)
        return np.full_like(image, 0.25)

    monkeypatch.setattr(Inpainter, "__call__", flat)
    image = _photo(96, 240)
    hole = _holes(96, 240)
    hole[5, :] = True  # a one-pixel line across the whole width
    out = model.inpaint(image, hole, blend="none")
    assert (out[hole] == 64).all()
    tiny = model.inpaint(image[:10, :12], (2, 2, 6, 5), blend="none")  # an image smaller than a window
    assert (tiny[2:7, 2:8] == 64).all()


def test_a_thin_stroke_is_filled_at_its_own_resolution():
    from scipy import ndimage

    hole = np.zeros((100, 600), bool)
    hole[40:46, 20:580] = True
    labels, _ = ndimage.label(hole)
    box = ndimage.find_objects(labels)[0]
    windows = app._windows(labels[box] == 1, box, hole.shape, 128)
    assert {w[2] for w in windows} == {128} and len(windows) >= 560 // 64
    big = np.zeros((300, 300), bool)
    big[50:250, 60:260] = True
    labels, _ = ndimage.label(big)
    box = ndimage.find_objects(labels)[0]
    assert [(w[2], w[3], w[4]) for w in app._windows(labels[box] == 1, box, big.shape, 128)] == [(400, 150, 160)]


def test_grey_images_stay_grey(model):
    image = _photo(48, 48)[..., 0]
    hole = np.zeros((48, 48), bool)
    hole[10:30, 12:28] = True
    out = model.inpaint(image, hole)
    assert out.shape == (48, 48) and (out[~hole] == image[~hole]).all()


def test_pil_in_pil_out(model):
    im = Image.fromarray(_photo(40, 40))
    out = model.inpaint(im, (8, 8, 16, 16))
    assert isinstance(out, Image.Image) and out.size == (40, 40) and out.mode == "RGB"


# --- the command line --------------------------------------------------------------------------------------------


def test_cli_mask_masks_rect_and_alpha(model, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    masks = tmp_path / "masks"
    masks.mkdir()
    hole = np.zeros((48, 64), bool)
    hole[10:30, 20:40] = True
    for name in ("a", "b", "c"):
        Image.fromarray(_photo(48, 64)).save(photos / f"{name}.jpg")
    Image.fromarray(np.where(hole, 255, 0).astype(np.uint8)).save(masks / "a.png")
    Image.fromarray(np.where(hole, 255, 0).astype(np.uint8)).save(masks / "b.png")  # c has no mask
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert main(["inpaint", str(model.path), str(photos), "--masks", str(masks), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "c.jpg" in err and "no mask" in err and "broken.jpg" in err
    assert sorted(p.name for p in out.iterdir()) == ["a-filled.jpg", "b-filled.jpg"]
    # a rerun resumes: the two done are skipped
    assert main(["inpaint", str(model.path), str(photos / "a.jpg"), "--rect", "20,10,20,20", "-o", str(out)]) == 0
    cap = capsys.readouterr()
    assert "1 skipped" in cap.out + cap.err
    one = tmp_path / "one.png"
    args = ["inpaint", str(model.path), str(photos / "a.jpg"), "--mask", str(masks / "a.png"), "-o", str(one)]
    assert main(args) == 0
    filled = read_image(one).pixels
    source = read_image(photos / "a.jpg").pixels
    assert (filled[~hole] == source[~hole]).all()  # poisson: only the hole changes (of the decoded JPEG)
    rgba = np.dstack([_photo(48, 64), np.where(hole, 0, 255).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    assert main(["inpaint", str(model.path), str(tmp_path / "cut.png"), "-o", str(tmp_path / "cut-out.png")]) == 0
    assert (read_image(tmp_path / "cut-out.png").alpha == 255).all()


def test_cli_refuses_bad_arguments(model, tmp_path, capsys):
    Image.fromarray(_photo(40, 40)).save(tmp_path / "p.png")
    for extra in (["--rect", "1,2,3"], ["--masks", str(tmp_path / "none")], ["--mask", str(tmp_path / "no.png")]):
        assert main(["inpaint", str(model.path), str(tmp_path / "p.png"), "-o", str(tmp_path / "o"), *extra]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert main(["inpaint", "sr-x4", str(tmp_path / "p.png"), "--rect", "1,1,4,4", "-o", str(tmp_path / "o")]) == 2
    assert "not an inpainter" in capsys.readouterr().err
    assert (
        main(["inpaint", str(model.path), str(tmp_path / "p.png"), "--rect", "1,1,4,4", "--mask", "m.png", "-o", "x"])
        == 2
    )
    assert capsys.readouterr().err.count("\n") == 1  # argparse's error, on one line


def test_many_small_holes_run_in_few_batches(model, monkeypatch):
    calls = []
    real = Inpainter.__call__

    def counted(self, feeds):  # the inpainter feeds its inputs by name
        calls.append(len(next(iter(feeds.values()))))
        return real(self, feeds)

    monkeypatch.setattr(Inpainter, "__call__", counted)
    image = _photo(120, 200)
    hole = np.zeros((120, 200), bool)
    hole[5:115:12, 5:195:12] = True  # 10 x 16 one-pixel specks, each its own region and window
    out = model.inpaint(image, hole, blend="none")
    assert sum(calls) == 160 and len(calls) == 10 and (out[~hole] == image[~hole]).all()
