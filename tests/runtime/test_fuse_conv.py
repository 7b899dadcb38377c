"""Load-time rewrite of [Pad] -> Conv(kH x kW, strides) [-> Relu | LeakyRelu] chains into genrt.Conv
(GENRT_CONV=...)."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt.runtime import fuse as fuse_mod
from genrt.runtime.onnx_session import ort_ops_library

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(ort_ops_library() is None, reason="genrt's ORT library not built")


def _save(path, nodes, inits, cin=4, hw=("h", "w"), opset=18):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", cin, *hw])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _layer(
    path, *, mode="reflect", pads=(1, 1, 1, 1), conv_pads=(0, 0, 0, 0), relu=True, pads_const=False, k=3, stride=1,
    **conv_attrs,
):  # fmt: skip
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((6, 4, k, k)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "B"),
    ]
    top, left, bottom, right = pads
    pad_values = np.array([0, 0, top, left, 0, 0, bottom, right], np.int64)
    nodes = []
    if pads_const:
        nodes.append(helper.make_node("Constant", [], ["pads"], value=numpy_helper.from_array(pad_values)))
    else:
        inits.append(numpy_helper.from_array(pad_values, "pads"))
    nodes += [
        helper.make_node("Pad", ["X", "pads"], ["p"], mode=mode),
        helper.make_node(
            "Conv",
            ["p", "W", "B"],
            ["c" if relu else "Y"],
            pads=list(conv_pads),
            strides=[stride, stride],
            **conv_attrs,
        ),
    ]
    if relu == "LeakyRelu":
        nodes.append(helper.make_node("LeakyRelu", ["c"], ["Y"], alpha=0.2))
    elif relu:
        nodes.append(helper.make_node("Relu", ["c"], ["Y"]))
    return _save(path, nodes, inits)


def _rewritten(model, shape=(1, 4, 16, 16)) -> list:
    """The nodes of the graph genrt runs for inputs of this shape's class (the choice forced by the environment)."""
    runner = model._runner
    shapes = {runner.graph.graph.input[0].name: list(shape)}
    out, _ = fuse_mod.fuse(runner.graph, threads=2, library=ort_ops_library(), input_shapes=shapes, how=runner._how)
    return list(out.graph.node)


@pytest.mark.parametrize(
    "kwargs, fused",
    [
        ({}, True),
        ({"mode": "edge", "relu": False}, True),
        ({"relu": "LeakyRelu"}, True),  # Real-ESRGAN's layers
        ({"k": 5, "pads": (2, 2, 2, 2), "relu": "LeakyRelu", "mode": "constant"}, True),
        ({"mode": "constant", "pads": (2, 0, 1, 1), "conv_pads": (0, 1, 0, 1)}, True),  # zero pads merged
        ({"pads_const": True}, True),  # pads from a Constant node
        ({"conv_pads": (1, 1, 1, 1)}, False),  # reflect, then the Conv's own zero padding: left alone
        ({"k": 5, "pads": (2, 2, 2, 2)}, True),  # the direct path: any kernel size
        ({"k": 9, "pads": (4, 4, 4, 4), "relu": False}, True),  # the style network's 9x9 layers
        ({"k": 9, "pads": (8, 0, 3, 8), "mode": "edge"}, True),  # pads at their limit
        ({"stride": 2}, True),  # its downsampling layers
        ({"k": 4, "stride": 2, "mode": "constant", "pads": (0, 0, 0, 0), "conv_pads": (1, 1, 1, 1)}, True),  # DCGAN
        ({"pads": (3, 1, 1, 1)}, False),  # more than genrt.Conv pads
        ({"k": 3, "pads": (2, 2, 2, 2), "dilations": [2, 2]}, False),  # dilated: left to ORT
    ],
)
def test_rewrite_matches_onnxruntime(tmp_path, monkeypatch, kwargs, fused):
    path = _layer(tmp_path / "m.onnx", **kwargs)
    x = np.random.default_rng(1).standard_normal((2, 4, 12, 15)).astype(np.float32)
    if kwargs.get("k") == 9:
        x = np.random.default_rng(1).standard_normal((2, 4, 10, 14)).astype(np.float32)  # reflect 4 and 8 fit
    monkeypatch.setenv("GENRT_CONV", "ort")
    plain = genrt.load(path)
    assert "Conv" not in plain.kernels
    monkeypatch.setenv("GENRT_CONV", "genrt")
    model = genrt.load(path)
    got, want = model(x), plain(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    ops = [n.domain + "." + n.op_type for n in _rewritten(model)]
    if fused:
        assert "Conv" in model.kernels and "1 layer(s)" in model.kernels["Conv"]
        assert ops == ["genrt.Conv"]  # Pad, Relu or LeakyRelu, and a pads Constant are gone
        (node,) = _rewritten(model)
        strides = [list(a.ints) for a in node.attribute if a.name == "strides"]
        assert strides == [[kwargs.get("stride", 1)] * 2]
    elif kwargs.get("pads") == (3, 1, 1, 1):
        assert ops == [".Pad", "genrt.Conv"]  # the Conv alone (its own pads) is still genrt's
    else:
        assert "Conv" not in model.kernels and "genrt.Conv" not in ops


def test_pad_with_another_consumer_is_kept(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
    ]
    nodes = [
        helper.make_node("Pad", ["X", "pads"], ["p"], mode="reflect"),
        helper.make_node("Conv", ["p", "W"], ["c"]),
        helper.make_node("ReduceMean", ["p"], ["m"], keepdims=1),
        helper.make_node("Add", ["c", "m"], ["Y"]),
    ]
    path = _save(tmp_path / "m.onnx", nodes, inits)
    x = rng.standard_normal((1, 4, 10, 10)).astype(np.float32)
    monkeypatch.setenv("GENRT_CONV", "ort")
    want = genrt.load(path)(x)
    monkeypatch.setenv("GENRT_CONV", "genrt")
    model = genrt.load(path)
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4)
    ops = [n.domain + "." + n.op_type for n in _rewritten(model)]
    assert ".Pad" in ops and "genrt.Conv" in ops  # the Conv alone, unpadded


@pytest.fixture(scope="module")
def johnson(tmp_path_factory):
    from tests.reference_nets import JohnsonTransformer, johnson_init

    net = johnson_init(JohnsonTransformer(width=8, blocks=2))
    path = tmp_path_factory.mktemp("johnson") / "johnson.onnx"
    genrt.export(net, path, torch.randn(1, 3, 32, 32), kind="stylizer")
    return net, path


def test_johnson_network(johnson, monkeypatch):
    """Every convolution of the style network can be genrt's: with GENRT_CONV=genrt no Pad is left."""
    _, path = johnson
    x = np.random.default_rng(2).uniform(0, 1, (1, 3, 64, 72)).astype(np.float32)
    monkeypatch.setenv("GENRT_CONV", "ort")
    plain = genrt.load(path)
    want = plain(x)
    assert "Conv" not in plain.kernels
    plain_graph = _rewritten(plain, x.shape)
    assert not any(n.domain == "genrt" and n.op_type == "Conv" for n in plain_graph)  # nothing changed
    monkeypatch.setenv("GENRT_CONV", "genrt")
    model = genrt.load(path)
    got = model(x)
    assert np.abs((got + 1) / 2 - (want + 1) / 2).max() < 1e-3  # outputs in [-1, 1], compared as [0, 1]
    # the two blocks' four 3x3 stride-1 convolutions (Winograd), the two 9x9 and the two stride-2 ones (direct)
    assert "8 layer(s)" in model.kernels["Conv"]
    nodes = _rewritten(model, x.shape)
    assert sum(n.domain == "genrt" and n.op_type == "Conv" for n in nodes) == 8
    assert sum(n.op_type == "Pad" for n in plain_graph) == 8
    assert not any(n.op_type == "Pad" for n in nodes)  # every Pad is done inside genrt.Conv
    assert not any(n.op_type == "Conv" and n.domain in ("", "ai.onnx") for n in nodes)


def test_auto_measures_conv_once_and_caches(johnson, tmp_path, monkeypatch):
    net, path = johnson
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENRT_CONV", "auto")
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "ort")
    timed = []
    real = fuse_mod._time_pair
    monkeypatch.setattr(fuse_mod, "_time_pair", lambda *a: timed.append(a[2].shape) or real(*a))
    model = genrt.load(path)
    assert model.kernels.get("Conv") == "chosen per input size class on the first call of each class"
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model(x), net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)
    # five layer shapes (the 9x9 input and output layers, two stride-2 layers, the residual 3x3 layers, four of one
    # shape): one decision each, ORT's nodes timed against genrt's op
    assert len(timed) == 5
    entries = json.loads((tmp_path / "cache" / "conv_transpose_choice.json").read_text())
    assert len(entries) == 5
    for key, entry in entries.items():
        assert '"Pad", "Conv"' in key and "reflect" in key
        assert {"genrt", "ort_ms", "genrt_ms"} <= set(entry)
    again = genrt.load(path)
    again(x)
    assert len(timed) == 5 and again.kernels == model.kernels
    # kernels says what was chosen: the residual shape counts four layers, every other shape one
    chosen = sum((4 if "[32, 32, 3, 3]" in key else 1) for key, entry in entries.items() if entry["genrt"])
    label = model.kernels.get("Conv", "")
    assert (f"{chosen} layer(s)" in label) == bool(chosen)


def _chain(x_shape, op="Conv", strides=(1, 1)):
    from genrt.runtime.fuse_chains import Chain

    node = helper.make_node(op, ["X", "W"], ["Y"])
    attrs = {"strides": list(strides)} if op == "Conv" else {}
    return Chain(op, node, [node], list(x_shape), ["X", "W"], attrs)


@pytest.mark.parametrize(
    ("x_shape", "kernel", "strides", "want"),
    [
        ((1, 32, 64, 64), (3, 3), (1, 1), [1, 32, 64, 64]),  # small enough: timed as it is
        ((1, 3, 1024, 1024), (9, 9), (1, 1), [1, 3, 256, 256]),  # at most 256x256 pixels
        ((1, 128, 256, 256), (3, 3), (1, 1), [1, 128, 128, 128]),  # and 32 x 256 x 256 input elements
        ((1, 32, 1024, 512), (3, 3), (2, 2), [1, 32, 362, 180]),  # aspect kept, whole strides
        ((1, 64, 8000, 8), (9, 9), (1, 1), [1, 64, 5724, 8]),  # no side under the kernel, nor over its size
    ],
)
def test_measure_shape_shrinks_big_layers_on_the_cpu(x_shape, kernel, strides, want):
    chain = _chain(x_shape, strides=strides)
    got = fuse_mod._measure_shape(chain, kernel)
    assert got == want
    assert fuse_mod._measure_shape(chain, kernel, "cuda:0") == list(x_shape)  # a GPU times the class's size


def test_big_layers_are_timed_smaller_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENRT_CONV", "auto")
    timed = []
    real = fuse_mod._time_pair
    monkeypatch.setattr(fuse_mod, "_time_pair", lambda *a: timed.append(a[2].shape) or real(*a))
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "W")
    conv = helper.make_node("Conv", ["X", "W"], ["Y"], pads=[1, 1, 1, 1])
    model = genrt.load(_save(tmp_path / "m.onnx", [conv], [w]))
    x = rng.standard_normal((1, 4, 600, 300)).astype(np.float32)  # the class ~512x256: 131072 pixels
    model(x)
    assert timed == [(1, 4, 362, 181)]
    (entry,) = json.loads((tmp_path / "cache" / "conv_transpose_choice.json").read_text()).values()
    assert entry["measured_hw"] == [362, 181] and {"genrt", "ort_ms", "genrt_ms"} <= set(entry)


@pytest.mark.parametrize(
    "act, scale, const_node, folded",
    [
        (None, 0.2, False, True),  # Real-ESRGAN's residual scaling after a dense block's last conv
        (None, -0.5, True, True),  # no activation: any scale, from a Constant node too
        ("LeakyRelu", 0.2, False, True),  # a positive scale commutes with leaky relu
        ("Relu", -1.0, False, False),  # a negative one does not: the Mul stays
    ],
)
def test_scalar_mul_folds_into_the_weights(tmp_path, monkeypatch, act, scale, const_node, folded):
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "B")]  # fmt: skip
    nodes = [helper.make_node("Conv", ["X", "W", "B"], ["c"], pads=[1, 1, 1, 1])]
    if act:
        nodes.append(helper.make_node(act, ["c"], ["a"], **({"alpha": 0.2} if act == "LeakyRelu" else {})))
    scalar = numpy_helper.from_array(np.array(scale, np.float32), "s")
    if const_node:
        nodes.append(helper.make_node("Constant", [], ["s"], value=scalar))
    else:
        inits.append(scalar)
    nodes.append(helper.make_node("Mul", ["a" if act else "c", "s"], ["Y"]))
    path = _save(tmp_path / "m.onnx", nodes, inits)
    x = np.random.default_rng(1).standard_normal((2, 4, 12, 15)).astype(np.float32)
    monkeypatch.setenv("GENRT_CONV", "ort")
    want = genrt.load(path)(x)
    monkeypatch.setenv("GENRT_CONV", "genrt")
    model = genrt.load(path)
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    ops = [n.domain + "." + n.op_type for n in _rewritten(model)]
    assert ops == (["genrt.Conv"] if folded else ["genrt.Conv", ".Mul"]), ops
