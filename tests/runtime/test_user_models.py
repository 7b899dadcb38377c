"""Models genrt did not design: pytorch/examples' DCGAN, Johnson's transformer with dynamic height and width, files
written by plain torch.onnx.export (legacy opset 11 too), external data, and errors from inside ONNX Runtime."""

import json
import re
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt.cli import main
from genrt.runtime import fuse as fuse_mod
from genrt.runtime.onnx_session import ort_ops_library

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from tests.reference_nets import (  # noqa: E402
    DCGANDiscriminator,
    DCGANGenerator,
    JohnsonTransformer,
    dcgan_init,
    johnson_init,
)

needs_library = pytest.mark.skipif(ort_ops_library() is None, reason="genrt's ORT library not built")


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    x = images.detach().numpy()
    return np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def dcgan(tmp_path_factory):
    root = tmp_path_factory.mktemp("dcgan")
    g, d = dcgan_init(DCGANGenerator()), dcgan_init(DCGANDiscriminator(), seed=1)
    return {
        "g": g,
        "d": d,
        "g_path": genrt.export(g, root / "g.onnx", torch.randn(8, 100, 1, 1), kind="generator"),
        "d_path": genrt.export(d, root / "d.onnx", torch.randn(8, 3, 64, 64), kind="discriminator"),
    }


@pytest.fixture(scope="module")
def johnson(tmp_path_factory):
    root = tmp_path_factory.mktemp("johnson")
    net = johnson_init(JohnsonTransformer())
    return net, genrt.export(net, root / "t.onnx", torch.randn(1, 3, 64, 64), kind="stylizer")


def test_dcgan_latent_keeps_its_layout(dcgan):
    g = genrt.load(dcgan["g_path"])
    assert g.inputs[0].shape == ("batch", 100, 1, 1)  # only batch is dynamic for a latent
    assert g.latent_dim == 100 and g.latent_shape == (100, 1, 1)
    assert g.metadata["latent_shape"] == [100, 1, 1] and g.metadata["output_range"] == [-1.0, 1.0]
    if ort_ops_library() is not None:
        assert "ConvTranspose" in g.kernels  # static spatial sizes: decided at load


def test_dcgan_generator_methods_match_torch(dcgan):
    g, net = genrt.load(dcgan["g_path"]), dcgan["g"]
    z = g.latents(5, seed=3)
    assert z.shape == (5, 100)
    images = g.sample(5, seed=3)
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
    with torch.no_grad():
        expected = _to_uint8(net(torch.from_numpy(z).view(5, 100, 1, 1)))
    assert np.abs(images.astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(g.generate(z.reshape(5, 100, 1, 1)), images)  # either layout of z
    walk = g.interpolate(z[0], z[1], 6)
    np.testing.assert_array_equal(walk[[0, -1]], images[:2])
    frames = g.walk(z[:3], steps=4)
    np.testing.assert_array_equal(frames[[0, 3, 6]], images[:3])
    mixed = g.arithmetic(z[:2], z[2:4], z[4:5], variants=2, noise=0.0)
    np.testing.assert_array_equal(mixed[0], g.generate((z[:2].mean(0) - z[2:4].mean(0) + z[4])[None])[0])
    with pytest.raises(genrt.ShapeError, match=r"z: expected shape \(n, 100\) or \(n, 100, 1, 1\)"):
        g.generate(np.zeros((2, 99), np.float32))


def test_dcgan_raw_call_and_discriminator_match_torch(dcgan):
    z = np.random.default_rng(0).standard_normal((64, 100, 1, 1), dtype=np.float32)
    with torch.no_grad():
        want = dcgan["g"](torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(genrt.load(dcgan["g_path"])(z), want, rtol=1e-4, atol=1e-4)  # batch > 4 bucket
    d = genrt.load(dcgan["d_path"])
    x = np.random.default_rng(1).uniform(-1, 1, (6, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(d(x), dcgan["d"](torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("command", ["sample", "walk", "arithmetic"])
def test_dcgan_cli_commands(dcgan, tmp_path, command, capsys):
    out = tmp_path / f"{command}.png"
    extra = {
        "sample": ["-n", "6", "--seed", "0", "--nrow", "3"],
        "walk": ["--points", "3", "--steps", "4"],
        "arithmetic": ["--a", "0,1", "--b", "2", "--c", "3", "--variants", "2"],
    }[command]
    assert main([command, str(dcgan["g_path"]), *extra, "-o", str(out)]) == 0, capsys.readouterr().err
    grid = np.asarray(Image.open(out))
    assert grid.ndim == 3 and grid.shape[2] == 3 and grid.shape[0] >= 64 and grid.std() > 0
    if command == "sample":  # the first cell is the first sample
        np.testing.assert_array_equal(grid[2:66, 2:66], genrt.load(dcgan["g_path"]).sample(6, seed=0)[0])


def test_latent_with_dynamic_trailing_axes(dcgan, tmp_path):
    """A 4-D latent whose 1x1 axes another tool (or an older genrt) declared dynamic still works as a latent."""
    path = tmp_path / "g-dyn.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            dcgan["g"], (torch.randn(2, 100, 1, 1),), str(path), dynamo=False, opset_version=11,
            input_names=["z"], output_names=["images"], dynamic_axes={"z": {0: "n", 2: "h", 3: "w"}},
        )  # fmt: skip
    model = onnx.load(str(path))
    model.metadata_props.add(key="genrt.kind", value=json.dumps("generator"))
    onnx.save(model, str(path))
    g = genrt.load(path)
    assert g.inputs[0].shape == ("n", 100, "h", "w") and g.latent_shape == (100, 1, 1)
    z = g.latents(3, seed=0)
    with torch.no_grad():
        expected = _to_uint8(dcgan["g"](torch.from_numpy(z).view(3, 100, 1, 1)))
    assert np.abs(g.generate(z).astype(int) - expected).max() <= 1


def test_johnson_export_has_dynamic_height_and_width(johnson):
    net, path = johnson
    model = genrt.load(path)
    assert model.inputs[0].shape == ("batch", 3, "height", "width")
    for size in ((64, 64), (72, 100), (128, 96)):
        x = np.random.default_rng(size[0]).standard_normal((1, 3, *size), dtype=np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(model(x), net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)


@needs_library
def test_dynamic_sizes_choose_per_class_and_never_retime(johnson, tmp_path, monkeypatch):
    net, path = johnson
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "auto")
    monkeypatch.setenv("GENRT_CONV", "ort")  # counts ConvTranspose decisions; Conv's: tests/runtime/test_fuse_conv.py
    timed = []
    real = fuse_mod._time_pair
    monkeypatch.setattr(fuse_mod, "_time_pair", lambda *a: timed.append(a[2].shape) or real(*a))
    cache_file = tmp_path / "cache" / "conv_transpose_choice.json"

    def entries():
        return set(json.loads(cache_file.read_text())) if cache_file.is_file() else set()

    model = genrt.load(path)
    assert timed == [] and "first call" in model.kernels["ConvTranspose"]  # nothing known about sizes yet

    def check(h, w):
        x = np.random.default_rng(h * w).standard_normal((1, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(model(x), net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)

    check(64, 64)
    assert len(timed) == 2  # two transposed convolutions, each timed in ORT against genrt's kernel
    assert {s[2:] for s in timed} == {(16, 16), (32, 32)}  # the layers' inputs at the 64x64 class
    first = entries()
    assert len(first) == 2
    check(72, 60)  # the same class (~64x64): reuses the decision
    check(60, 52)
    assert len(timed) == 2 and entries() == first
    check(128, 128)  # a new class: adds its decisions, keeps the old ones
    assert len(timed) == 4 and first < entries() and len(entries()) == 4
    label = model.kernels.get("ConvTranspose", "")
    if "genrt fused kernel" in label:  # which classes chose genrt depends on this machine's timings
        assert re.search(r"~(64x64|128x128)", label)
    again = genrt.load(path)  # a new model decides from the cache
    for h, w in ((64, 64), (128, 128), (130, 120)):
        again(np.zeros((1, 3, h, w), np.float32))
    assert len(timed) == 4
    assert again.kernels == model.kernels


@needs_library
def test_forced_genrt_kernel_on_dynamic_sizes_matches_onnxruntime(johnson, monkeypatch):
    _, path = johnson
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "ort")
    plain = genrt.load(path)
    assert "ConvTranspose" not in plain.kernels
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "genrt")
    fused = genrt.load(path)
    for shape in ((1, 3, 64, 64), (2, 3, 40, 84), (5, 3, 32, 32)):
        x = np.random.default_rng(shape[2]).standard_normal(shape, dtype=np.float32)
        np.testing.assert_allclose(fused(x), plain(x), rtol=1e-5, atol=1e-5)
    assert "2 layer(s)" in fused.kernels["ConvTranspose"] and "~64x64" in fused.kernels["ConvTranspose"]
    fused.prepare((1, 3, 256, 256))  # decides a class without running it
    assert "~256x256" in fused.kernels["ConvTranspose"]
    with pytest.raises(genrt.ShapeError, match="expected 4-D input"):
        fused.prepare((1, 3, 256))


def _legacy_export(net, path, opset=11):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            net, (torch.randn(1, 3, 64, 64),), str(path), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}},
        )  # fmt: skip
    return path


def test_plain_torch_onnx_export_opset11(johnson, tmp_path, monkeypatch, capsys):
    """fast_neural_style writes its models with torch.onnx.export(..., opset_version=11)."""
    net, _ = johnson
    path = _legacy_export(net, tmp_path / "legacy.onnx")
    assert onnx.load(str(path)).opset_import[0].version == 11
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "genrt" if ort_ops_library() else "auto")
    model = genrt.load(path)
    assert type(model) is genrt.runtime.Model and model.kind is None
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 80), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model(x), net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)
    assert main(["info", str(path), "--input-shape", "1,3,120,136"]) == 0
    out = capsys.readouterr().out
    assert "kind:    (no genrt metadata)" in out and "input: float32[batch, 3, height, width]" in out
    if ort_ops_library() is not None:
        assert "ConvTranspose (genrt fused kernel for batch <= 4, ~128x128: 2 layer(s)" in out


@needs_library
def test_opset11_auto_measures_with_the_models_own_opset(tmp_path, monkeypatch):
    # BatchNormalization at opset 7 still has its `spatial` attribute; the timing subgraph must accept it.
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 4, 4)).astype(np.float32), "W"),
        *(numpy_helper.from_array(rng.uniform(0.5, 1.5, 3).astype(np.float32), n) for n in ("g", "b", "m", "v")),
    ]
    nodes = [
        helper.make_node("ConvTranspose", ["X", "W"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], spatial=1),
        helper.make_node("Relu", ["n"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", 4, "h", "w"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    path = tmp_path / "bn7.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)], ir_version=7), str(path))
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "auto")
    model = genrt.load(path)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    got = model(x)
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "ort")
    np.testing.assert_allclose(got, genrt.load(path)(x), rtol=1e-5, atol=1e-5)
    assert (tmp_path / "cache" / "conv_transpose_choice.json").is_file()  # measured, not skipped


def test_external_data_beside_the_model(johnson, tmp_path):
    net, path = johnson
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save(
        onnx.load(str(path)), str(folder / "t.onnx"), save_as_external_data=True, location="t.onnx.data",
        size_threshold=0,
    )  # fmt: skip
    assert (folder / "t.onnx.data").stat().st_size > (folder / "t.onnx").stat().st_size
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(
            genrt.load(folder / "t.onnx")(x), net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4
        )
    (folder / "t.onnx.data").rename(folder / "moved.data")
    with pytest.raises(genrt.InvalidModelError, match=r"stored in 't.onnx.data' beside the model, which is missing"):
        genrt.load(folder / "t.onnx")


def test_external_data_outside_the_folder_is_refused(tmp_path):
    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "W")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    weight.external_data.add(key="location", value="../secret.bin")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], [weight],
    )  # fmt: skip
    (tmp_path / "m").mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    path = tmp_path / "m" / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(genrt.InvalidModelError, match="outside the model's folder"):
        genrt.load(path)


def _save(tmp_path, name, nodes, inputs, inits, opsets=(("", 18),)):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets]), str(path))
    return path


def test_failure_inside_onnxruntime_is_a_run_error(tmp_path, capfd):
    shape = numpy_helper.from_array(np.array([-1, 200], np.int64), "shape")
    path = _save(
        tmp_path, "reshape.onnx", [helper.make_node("Reshape", ["X", "shape"], ["Y"], name="/flatten")],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", 100])], [shape],
    )  # fmt: skip
    model = genrt.load(path)
    assert model(np.zeros((4, 100), np.float32)).shape == (2, 200)
    with pytest.raises(
        genrt.RunError, match=r"node '/flatten' \(Reshape\) failed: The input tensor cannot be reshaped"
    ):
        model(np.zeros((3, 100), np.float32))
    try:
        model(np.zeros((3, 100), np.float32))
    except genrt.RunError as exc:
        assert (exc.node, exc.op_type) == ("/flatten", "Reshape") and isinstance(exc, genrt.GenrtError)
        assert "onnxruntime_src" not in str(exc) and "[ONNXRuntimeError]" not in str(exc)
    err = capfd.readouterr().err
    assert "onnxruntime" not in err and "\x1b[" not in err  # ORT's coloured error lines stay quiet


@needs_library
def test_genrt_op_refusing_its_input_is_a_run_error(tmp_path, capfd):
    w = numpy_helper.from_array(np.ones((6, 4, 3, 3), np.float32), "W")
    path = _save(
        tmp_path, "ct.onnx",
        [helper.make_node("ConvTranspose", ["X", "W"], ["Y"], domain="genrt", name="up", strides=[2, 2])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", "c", "h", "w"])], [w],
        opsets=(("", 18), ("genrt", 1)),
    )  # fmt: skip
    model = genrt.load(path)
    with pytest.raises(genrt.RunError, match=r"node 'up' \(ConvTranspose\) failed: weight: expected 5 input channels"):
        model(np.zeros((1, 5, 4, 4), np.float32))
    assert "onnxruntime" not in capfd.readouterr().err


@needs_library
def test_genrt_op_with_bad_attributes_fails_at_load(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "W")
    path = _save(
        tmp_path, "pads.onnx",
        [helper.make_node("ConvTranspose", ["X", "W"], ["Y"], domain="genrt", name="up", pads=[1, 0, 2, 0])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", 4, 8, 8])], [w], opsets=(("", 18), ("genrt", 1)),
    )  # fmt: skip
    with pytest.raises(genrt.InvalidModelError, match="pads: expected"):
        genrt.load(path)


def test_torch_failure_is_a_run_error(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    path = genrt.export(net, tmp_path / "m.pt2", torch.randn(2, 3, 2, 2), kind="model")
    with pytest.raises(genrt.RunError, match="torch failed to run the model"):
        genrt.load(path)(np.zeros((2, 3, 4, 4), np.float32))


def test_dcgan_pt2_export_keeps_the_latent_layout(dcgan, tmp_path):
    path = genrt.export(dcgan["g"], tmp_path / "g.pt2", torch.randn(2, 100, 1, 1), kind="generator")
    g = genrt.load(path)
    assert g.inputs[0].shape == ("batch", 100, 1, 1) and g.latent_shape == (100, 1, 1)
    onnx_images = genrt.load(dcgan["g_path"]).sample(3, seed=1)
    assert np.abs(g.sample(3, seed=1).astype(int) - onnx_images).max() <= 1  # torch and ORT round alike
