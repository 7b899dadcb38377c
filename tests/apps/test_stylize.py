"""The Stylizer kind and `genrt stylize`, on small random-weight transformation networks, against PyTorch."""

import numpy as np
import pytest

import genrt
from genrt.apps.stylize import Stylizer
from genrt.cli import main

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from tests.reference_nets import JohnsonTransformer, johnson_init  # noqa: E402

META = {"input_range": [-1.0, 1.0], "output_range": [-1.0, 1.0], "multiple": 4}


@pytest.fixture(scope="module")
def stylizer(tmp_path_factory):
    net = johnson_init(JohnsonTransformer(width=8, blocks=2))
    path = tmp_path_factory.mktemp("style") / "s.onnx"
    genrt.export(net, path, torch.randn(1, 3, 64, 64), kind="stylizer", metadata=META)
    return net, genrt.load(path)


class TwoStyles(torch.nn.Module):
    """A multi-style network: conditional instance norm (Dumoulin et al. 2017), scale and shift mixed by weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect")
        self.norm = torch.nn.InstanceNorm2d(6)
        self.gamma, self.beta = torch.nn.Parameter(torch.randn(2, 6)), torch.nn.Parameter(torch.randn(2, 6))
        self.out = torch.nn.Conv2d(6, 3, 3, padding=1, padding_mode="reflect")

    def forward(self, x, style):  # style: (N, 2) weights
        h = self.norm(self.conv(x))
        h = h * (style @ self.gamma)[:, :, None, None] + (style @ self.beta)[:, :, None, None]
        return torch.tanh(self.out(torch.relu(h)))


def _reference(net, image, *args):
    """What a stylizer should return for a uint8/uint16 RGB image: reflect-pad to 4, run, crop, same dtype."""
    top = np.iinfo(image.dtype).max
    x = torch.from_numpy(image.astype(np.float32) / top * 2 - 1).permute(2, 0, 1)[None]
    h, w = image.shape[:2]
    x = torch.nn.functional.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
    with torch.no_grad():
        y = net(x, *args)[0, :, :h, :w].permute(1, 2, 0).numpy()
    return np.clip(np.rint((y + 1) / 2 * top), 0, top).astype(image.dtype)


def _photo(h, w, channels=3, dtype=np.uint8):
    skimage = pytest.importorskip("skimage")
    from skimage import transform

    image = transform.resize(skimage.data.astronaut(), (h, w), anti_aliasing=True)  # float [0, 1]
    if channels == 1:
        image = image @ np.array([0.299, 0.587, 0.114])
    top = 65535 if dtype == np.uint16 else 255
    return np.rint(image * top).astype(dtype)


def test_loads_as_a_stylizer(stylizer):
    _, model = stylizer
    assert isinstance(model, Stylizer) and model.kind == "stylizer" and model.multiple == 4 and model.styles == []


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (50, 81)])
def test_any_size_matches_torch(stylizer, size):
    net, model = stylizer
    photo = _photo(*size)
    out = model.stylize(photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - _reference(net, photo)).max() <= 1


def test_strength(stylizer):
    _, model = stylizer
    photo = _photo(40, 44)
    np.testing.assert_array_equal(model.stylize(photo, strength=0.0), photo)
    full = model.stylize(photo).astype(float)
    half = model.stylize(photo, strength=0.5).astype(float)
    assert np.abs(half - (photo + full) / 2).max() <= 1
    with pytest.raises(genrt.ArgumentError, match=r"strength: expected a number in \[0, 1\]"):
        model.stylize(photo, strength=1.5)


def test_preserve_color_keeps_the_photos_chroma(stylizer):
    skimage = pytest.importorskip("skimage")
    _, model = stylizer
    photo = _photo(48, 48)
    styled = model.stylize(photo)
    kept = model.stylize(photo, preserve_color=True)
    ycc = {name: skimage.color.rgb2ycbcr(img) for name, img in (("photo", photo), ("styled", styled), ("kept", kept))}
    # chroma from the photo, luminance from the stylized image (clipping to the RGB cube moves a few pixels)
    assert np.median(np.abs(ycc["kept"][..., 1:] - ycc["photo"][..., 1:])) < 1.0
    assert np.median(np.abs(ycc["kept"][..., 0] - ycc["styled"][..., 0])) < 1.0
    assert np.median(np.abs(ycc["styled"][..., 1:] - ycc["photo"][..., 1:])) > 3.0  # the style did change colours


def test_grey_alpha_16_bit_and_pil(stylizer):
    net, model = stylizer
    grey = _photo(30, 34, channels=1)
    out = model.stylize(grey)
    assert out.shape == grey.shape and out.dtype == np.uint8  # grey in, grey out
    rgba = np.dstack([_photo(30, 34), np.linspace(0, 255, 30 * 34).reshape(30, 34).astype(np.uint8)])
    out = model.stylize(rgba)
    assert out.shape == rgba.shape
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])  # alpha carried through
    deep = _photo(30, 34, dtype=np.uint16)
    out16 = model.stylize(deep)
    assert out16.dtype == np.uint16 and out16.shape == deep.shape
    assert np.abs(out16.astype(int) - _reference(net, deep)).max() <= 16  # 16 of 65535: float32 rounding only
    pil = Image.fromarray(_photo(30, 34))
    styled = model.stylize(pil)
    assert isinstance(styled, Image.Image) and styled.size == pil.size and styled.mode == "RGB"


def test_tiles_match_the_whole_image(stylizer):
    _, model = stylizer
    photo = _photo(300, 260)
    whole = model.stylize(photo).astype(int)
    least = 2 * model.margin + model.multiple  # the margin covers the receptive field, cross-fade included
    tiled = model.stylize(photo, tile=max(160, least)).astype(int)
    assert np.abs(whole - tiled).max() <= 2
    with pytest.raises(genrt.ArgumentError, match=rf"tile: expected 0 \(whole image\) or a tile size >= {least}"):
        model.stylize(photo, tile=least - 1)


def test_style_mixing(tmp_path):
    net = TwoStyles().eval()
    path = tmp_path / "mix.onnx"
    meta = dict(META, styles=["ink", "fire"])
    genrt.export(net, path, (torch.randn(1, 3, 32, 32), torch.tensor([[0.5, 0.5]])), kind="stylizer", metadata=meta)
    model = genrt.load(path)
    assert model.styles == ["ink", "fire"]
    photo = _photo(33, 35)
    for style, weights in (("fire", [0.0, 1.0]), ({"ink": 0.7, "fire": 0.3}, [0.7, 0.3]), (None, [0.5, 0.5])):
        want = _reference(net, photo, torch.tensor([weights]))
        assert np.abs(model.stylize(photo, style=style).astype(int) - want).max() <= 1
    assert model.style_weights({"ink": 3, "fire": 1}) == {"ink": 0.75, "fire": 0.25}
    big = _photo(260, 300)  # in tiles: the style branch (MatMul on the weights) is not on the image's path
    mixed = {"ink": 0.3, "fire": 0.7}
    whole, tiled = model.stylize(big, style=mixed, tile=0), model.stylize(big, style=mixed, tile=140)
    assert np.abs(whole.astype(int) - tiled).max() <= 2
    with pytest.raises(genrt.ArgumentError, match=r"unknown style\(s\) \['water'\]"):
        model.stylize(photo, style="water")
    with pytest.raises(genrt.ArgumentError, match="not all 0"):
        model.stylize(photo, style={"ink": 0})


def test_cli_stylizes_a_folder_and_resumes(stylizer, tmp_path, capsys):
    net, model = stylizer
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(_photo(40, 52)).save(photos / "a.png")
    Image.fromarray(_photo(36, 36)).save(photos / "sub" / "b.jpg", quality=95)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "styled"
    argv = ["stylize", str(model.path), str(photos), "-r", "-o", str(out), "--strength", "1"]
    assert main(argv) == 1  # one input failed
    err = capsys.readouterr().err
    assert "broken.png" in err and "2 done" in err and "1 failed" in err
    a = np.asarray(Image.open(out / "a-styled.png"))
    assert np.abs(a.astype(int) - _reference(net, _photo(40, 52))).max() <= 1
    assert (out / "sub" / "b-styled.jpg").is_file()
    assert main(argv) == 1 and "2 skipped" in capsys.readouterr().err  # a rerun resumes
    assert main(["stylize", str(model.path), str(photos), "-o", str(photos), "--suffix", ""]) == 2
    assert "write over" in capsys.readouterr().err
    assert main(["stylize", str(model.path), str(photos / "a.png"), "-o", str(out / "x.png"), "--style", "a"]) == 2
    assert "holds one style" in capsys.readouterr().err
