"""genrt demo's application sections: style transfer on tiny stylizers in a stand-in bundled-models folder, inpainting
with the bundled inpainters."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")
pytest.importorskip("sklearn")  # ships the demo's photos

import genrt  # noqa: E402
from genrt import demo, demo_apps  # noqa: E402
from genrt.runtime import files  # noqa: E402
from tests.apps.test_stylize import TwoStyles  # noqa: E402
from tests.reference_nets import JohnsonTransformer, johnson_init  # noqa: E402

META = {"input_range": [-1.0, 1.0], "output_range": [-1.0, 1.0], "multiple": 4}


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    for name, seed in (("style-a", 1), ("style-b", 2)):
        torch.manual_seed(seed)
        net = johnson_init(JohnsonTransformer(width=4, blocks=1))
        genrt.export(net, models / f"{name}.onnx", torch.randn(1, 3, 32, 32), kind="stylizer", metadata=META)
    two = TwoStyles().eval()
    genrt.export(
        two, models / "style-mixed.onnx", (torch.randn(1, 3, 32, 32), torch.tensor([[0.5, 0.5]])), kind="stylizer",
        metadata={**META, "styles": ["a", "b"]}, input_names=["image", "style"],
    )  # fmt: skip
    monkeypatch.setattr(files, "MODELS_DIR", models)
    return models


def _cells(path, n):
    """The n pictures of a one-row grid (make_grid: 2-pixel gaps), as uint8 arrays."""
    grid = np.asarray(Image.open(path).convert("RGB"))
    w = (grid.shape[1] - 2 * (n + 1)) // n
    return [grid[2:-2, 2 + i * (w + 2) : 2 + i * (w + 2) + w] for i in range(n)]


@pytest.mark.slow
def test_style_section_pictures(bundled, tmp_path):
    assert demo_apps.stylize_section in demo.sections()
    out = tmp_path / "demo"
    out.mkdir()
    title, items = demo_apps.stylize_section(out, {"seed": 0, "threads": 1})
    assert title.startswith("Style transfer")
    files_ = [f for f, _ in items]
    assert files_ == ["style-grid.png", "style-strength.png", "style-preserve-color.png", "style-mix.png",
                      "style-multi.png"]  # fmt: skip
    photos = demo_apps._photos()
    china, flower = photos[0][1], photos[1][1]
    # Loaded as the demo loads them (threads 1), so they make the same kernel choices; still, those are measured at
    # load and a layer may go the other way on a second load: outputs agree to one grey level, not bit for bit.
    a = genrt.load("style-a", threads=1)
    strip = _cells(out / "style-strength.png", 5)
    assert strip[0].shape == china.shape
    np.testing.assert_array_equal(strip[0], china)  # strength 0 is the photo
    close = dict(atol=1, rtol=0)
    np.testing.assert_allclose(strip[-1].astype(int), a.stylize(china), **close)  # strength 1 the full style
    mix = _cells(out / "style-mix.png", 6)
    mixed = genrt.load("style-mixed", threads=1)
    np.testing.assert_array_equal(mix[0], flower)
    np.testing.assert_allclose(mix[1].astype(int), mixed.stylize(flower, style="a"), **close)
    np.testing.assert_allclose(mix[3].astype(int), mixed.stylize(flower, style={"a": 1, "b": 1}), **close)
    assert np.abs(mix[1].astype(int) - mix[-1]).mean() > 1  # the two ends of the mix differ
    grid = np.asarray(Image.open(out / "style-grid.png"))
    assert grid.shape[0] > china.shape[0] + flower.shape[0]  # one row per photo


def test_no_section_without_stylizers(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MODELS_DIR", tmp_path)
    monkeypatch.setattr(demo_apps, "installed_models", lambda: [])  # nor third-party ones installed
    assert demo_apps.sections() == []


def test_upscale_section_pictures(tmp_path, monkeypatch):
    from training.superres import SRNet, _Clipped

    models = tmp_path / "models"
    models.mkdir()
    torch.manual_seed(0)
    net = SRNet(4, width=4, blocks=1).eval()
    torch.nn.init.normal_(net.tail[1].weight, 0.0, 0.05)  # SRNet starts it at zero (bicubic)
    genrt.export(_Clipped(net), models / "sr-tiny.onnx", torch.rand(1, 3, 16, 16), kind="upscaler",
                 metadata={"scale": 4})  # fmt: skip
    monkeypatch.setattr(files, "MODELS_DIR", models)
    assert demo_apps.upscale_section in demo.sections() and demo_apps.stylize_section not in demo.sections()
    out = tmp_path / "demo"
    out.mkdir()
    title, items = demo_apps.upscale_section(out, {"seed": 0, "threads": 1})
    assert title.startswith("Super-resolution") and [f for f, _ in items] == ["sr-tiny.png"]
    assert "china" in items[0][1] and "dB (bicubic" in items[0][1]
    grid = np.asarray(Image.open(out / "sr-tiny.png").convert("RGB"))
    assert grid.shape == (2 * (demo_apps.SR_CROP + 4), 2 + 4 * (demo_apps.SR_CROP + 2), 3)  # 2 one-row grids of 4
    china = dict(demo_apps._photos(None))["china"]
    _, top, left = demo_apps.SR_CROPS[0]
    truth = china[top : top + demo_apps.SR_CROP, left : left + demo_apps.SR_CROP]
    cells = _cells(out / "sr-tiny.png", 4)  # the first row's cells (the helper's rows are cut at the grid's top)
    np.testing.assert_array_equal(cells[3][: demo_apps.SR_CROP], truth)
    small = np.asarray(Image.fromarray(truth).resize((48, 48), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(cells[2][: demo_apps.SR_CROP].astype(int), genrt.load("sr-tiny").upscale(small), atol=1)


@pytest.mark.slow
def test_inpaint_section_pictures(tmp_path):
    """With the bundled inpainters: per image, the holes in white, the model's fill, the classic methods, the truth."""
    pytest.importorskip("skimage")
    pytest.importorskip("cv2")
    assert demo_apps.inpaint_section in demo.sections()
    title, items = demo_apps.inpaint_section(tmp_path, {"seed": 0, "threads": 1})
    assert title.startswith("Inpainting") and [f for f, _ in items] == ["inpaint-faces.png", "inpaint-photos.png"]
    assert "biharmonic" in items[1][1] and "Telea" in items[1][1]
    photo = demo_apps._photos()[0][1]
    hole = demo_apps._demo_holes(*photo.shape[:2])
    grid = np.asarray(Image.open(tmp_path / "inpaint-photos.png").convert("RGB"))
    h, w = photo.shape[:2]
    cells = [grid[2 : 2 + h, 2 + i * (w + 2) : 2 + i * (w + 2) + w] for i in range(5)]
    assert (cells[0][hole] == 255).all() and (cells[0][~hole] == photo[~hole]).all()
    np.testing.assert_array_equal(cells[4], photo)
    ours = genrt.load("inpaint-photos", threads=1).inpaint(photo, hole)
    assert np.abs(cells[1].astype(int) - ours).max() <= 1
    assert (cells[1][~hole] == photo[~hole]).all()
