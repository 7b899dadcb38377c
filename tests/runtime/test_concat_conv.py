"""A convolution over a channel concatenation that is never written (genrt.ConcatConv,
genrt.runtime.fuse_concat): against numpy's concatenation and the float64 reference convolution in every kernel path,
against genrt.Conv over the written concatenation, bad inputs, and the rewrite's reach on a dense block."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt import onnx_ops
from genrt.reference import reference_conv2d
from genrt.runtime import fuse_concat
from genrt.runtime.onnx_session import ort_ops_library

pytestmark = pytest.mark.skipif(ort_ops_library() is None, reason="genrt was built without ONNX Runtime headers")
F = TensorProto.FLOAT
U16 = 2.0**-8


def run(nodes, feeds, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(k, F, None) for k in feeds],
                              [helper.make_tensor_value_info("y", F, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits])  # fmt: skip
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION)]
    options = ort.SessionOptions()
    options.register_custom_ops_library(ort_ops_library())
    model = helper.make_model(graph, opset_imports=opsets)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, feeds
    )


CASES = [
    # channels of each input, cout, kernel, stride
    ((64, 32), 32, 3, 1),  # a dense block's second conv
    ((8, 5, 3), 16, 3, 1),  # odd counts: a pair's halves from two inputs
    ((3, 4), 20, 3, 2),  # stride 2, a partial weight tile
    ((6, 6), 3, 9, 1),  # taps in M on AMX
    ((1, 2), 32, 9, 1),  # taps in K on AMX
    ((16,), 8, 1, 1),  # one input
]


@pytest.mark.parametrize("precision, algo", [("f32", "auto"), ("bf16", "auto"), ("bf16", "direct"),
                                             ("bf16", "winograd"), ("bf16", "amx")])  # fmt: skip
@pytest.mark.parametrize("channels, cout, k, stride", CASES)
def test_concat_conv_matches_the_reference(monkeypatch, channels, cout, k, stride, precision, algo):
    """The bf16 direct and AMX kernels read each input where it is (AMX emulated below the amx level), Winograd's and
    the float32 kernels a copy of the concatenation."""
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", algo)
    rng = np.random.default_rng(sum(channels) + k)
    xs = [rng.standard_normal((2, c, 13, 35)).astype(np.float32) for c in channels]
    w = rng.standard_normal((cout, sum(channels), k, k)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    feeds = {f"x{i}": x for i, x in enumerate(xs)}
    names = list(feeds)
    conv = dict(domain=onnx_ops.DOMAIN, pads=[k // 2] * 4, strides=[stride] * 2, padding_mode="reflect",
                activation="leaky_relu", alpha=0.2, precision=precision, threads=2)  # fmt: skip
    y = run([helper.make_node("ConcatConv", ["w", "bias", *names], ["y"], **conv)], feeds,
            [("w", w), ("bias", bias)])[0]  # fmt: skip
    x = np.concatenate(xs, axis=1).astype(np.float64)
    kw = dict(stride=stride, padding=(k // 2,) * 4, padding_mode="reflect")
    want = reference_conv2d(x, w.astype(np.float64), bias.astype(np.float64), **kw)
    want = np.where(want > 0, want, 0.2 * want)
    scale = reference_conv2d(np.abs(x), np.abs(w.astype(np.float64)), None, **kw)
    tol = (2 * U16 + U16**2 if precision == "bf16" else 2.0**-18) * scale + 1e-4
    assert y.shape == want.shape
    assert np.all(np.abs(y - want) <= tol), float(np.max(np.abs(y - want) - tol))
    # the same values as genrt.Conv over the written concatenation, bit for bit
    written = run([helper.make_node("Concat", names, ["x"], axis=1),
                   helper.make_node("Conv", ["x", "w", "bias"], ["y"], **conv)], feeds,
                  [("w", w), ("bias", bias)])[0]  # fmt: skip
    np.testing.assert_array_equal(y, written)


def test_concat_conv_refuses_mismatched_inputs():
    node = helper.make_node("ConcatConv", ["w", "b", "x0", "x1"], ["y"], domain=onnx_ops.DOMAIN, pads=[1] * 4)
    inits = [("w", np.ones((2, 6, 3, 3), np.float32)), ("b", np.zeros(2, np.float32))]
    feeds = {"x0": np.ones((1, 4, 8, 8), np.float32), "x1": np.ones((1, 2, 8, 9), np.float32)}
    with pytest.raises(Exception, match=r"expected the N, H and W of the first input \(1, 4, 8, 8\)"):
        run([node], feeds, inits)
    feeds["x1"] = np.ones((1, 3, 8, 8), np.float32)  # 7 channels against the weight's 6
    with pytest.raises(Exception, match=r"weight: expected 7 input channels"):
        run([node], feeds, inits)


def _dense_block() -> onnx.ModelProto:
    """x -> Conv -> LeakyRelu -> a; Concat(x, a) -> Conv -> LeakyRelu -> b; Concat(x, a, b) -> Conv -> Mul(0.2) ->
    Add(x) (Real-ESRGAN's dense block), then + the mean of the first concatenation (so that one stays)."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for i, (cin, cout) in enumerate([(8, 8), (16, 8), (24, 8)]):
        inits.append(numpy_helper.from_array(rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.2, f"w{i}"))
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), f"b{i}"))
    nodes += [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1] * 4),
              helper.make_node("LeakyRelu", ["c0"], ["a"], alpha=0.2),
              helper.make_node("Concat", ["x", "a"], ["xa"], axis=1),
              helper.make_node("Conv", ["xa", "w1", "b1"], ["c1"], pads=[1] * 4),
              helper.make_node("LeakyRelu", ["c1"], ["b"], alpha=0.2),
              helper.make_node("Concat", ["x", "a", "b"], ["xab"], axis=1),
              helper.make_node("Conv", ["xab", "w2", "b2"], ["c2"], pads=[1] * 4),
              helper.make_node("Mul", ["c2", "s"], ["c2s"]),
              helper.make_node("Add", ["c2s", "x"], ["r"]),
              helper.make_node("ReduceMean", ["xa"], ["m"], keepdims=1),
              helper.make_node("Add", ["r", "m"], ["y"])]  # fmt: skip
    inits.append(numpy_helper.from_array(np.float32(0.2), "s"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 8, 40, 40])],
                              [helper.make_tensor_value_info("y", F, None)], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_rewrite_reads_a_dense_blocks_concatenations_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRT_CONV", "genrt")
    path = tmp_path / "dense.onnx"
    onnx.save(_dense_block(), path)
    x = np.random.default_rng(1).standard_normal((1, 8, 40, 40)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for precision in ("f32", "bf16"):
        model = genrt.load(path, precision=precision)
        got = model({"x": x})
        graph = model._runner.session_graph({"x": x.shape}).graph
        ops = [n.op_type for n in graph.node]
        # bf16: the second concatenation is read in place; the first stays (the ReduceMean reads it too). The scale
        # is folded into the last conv's weights and the skip connection added as it stores, in either precision.
        assert ops.count("ConcatConv") == (1 if precision == "bf16" else 0), ops
        assert ops.count("Concat") == (1 if precision == "bf16" else 2), ops
        assert "Mul" not in ops and ops.count("Add") == 1, ops
        if precision == "bf16":
            (fused,) = [n for n in graph.node if n.op_type == "ConcatConv"]
            assert list(fused.input[2:]) == ["x", "x", "a", "b"]  # R, then the concatenated inputs
            assert [a.i for a in fused.attribute if a.name == "residual"] == [1]
        tol = 3e-2 if precision == "bf16" else 1e-4
        np.testing.assert_allclose(got[0] if isinstance(got, tuple) else got, want, atol=tol * np.abs(want).max())
    monkeypatch.setenv(fuse_concat.ENV, "ort")
    model = genrt.load(path, precision="bf16")
    model({"x": x})
    assert "ConcatConv" not in [n.op_type for n in model._runner.session_graph({"x": x.shape}).graph.node]
