"""A residual block's skip connection added by the convolution as it stores its output (genrt.Conv's and
genrt.ConcatConv's R; genrt.runtime.fuse takes over Add(conv, r) where r has the conv's shape): against the float64
reference convolution plus r in every kernel path, a bad R, and the rewrite's reach."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt import onnx_ops
from genrt.reference import reference_conv2d
from genrt.runtime.onnx_session import ort_ops_library

pytestmark = pytest.mark.skipif(ort_ops_library() is None, reason="genrt was built without ONNX Runtime headers")
F = TensorProto.FLOAT
U16 = 2.0**-8


def run(nodes, feeds, inits=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(k, F, None) for k in feeds],
                              [helper.make_tensor_value_info("y", F, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits])  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION)]
    options = ort.SessionOptions()
    options.register_custom_ops_library(ort_ops_library())
    model = helper.make_model(graph, opset_imports=opsets)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, feeds
    )


@pytest.mark.parametrize("precision, algo", [("f32", "auto"), ("bf16", "auto"), ("bf16", "direct"),
                                             ("bf16", "winograd"), ("bf16", "amx")])  # fmt: skip
@pytest.mark.parametrize("op", ["Conv", "ConcatConv"])
@pytest.mark.parametrize("cin, cout, k", [(16, 32, 3), (6, 5, 3), (32, 3, 9), (3, 32, 9)])
def test_residual_is_added_after_the_activation(monkeypatch, cin, cout, k, op, precision, algo):
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", algo)
    rng = np.random.default_rng(cin + cout + k)
    x = rng.standard_normal((2, cin, 11, 37)).astype(np.float32)
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    r = (rng.standard_normal((2, cout, 11, 37)) * 10).astype(np.float32)
    attrs = dict(domain=onnx_ops.DOMAIN, pads=[k // 2] * 4, activation="leaky_relu", alpha=0.2, precision=precision,
                 threads=2)  # fmt: skip
    if op == "Conv":
        node = helper.make_node("Conv", ["x", "w", "bias", "", "r"], ["y"], **attrs)
        feeds = {"x": x, "r": r}
    else:  # x in two parts, R before them
        node = helper.make_node("ConcatConv", ["w", "bias", "r", "x0", "x1"], ["y"], residual=1, **attrs)
        feeds = {"x0": x[:, : cin // 2], "x1": x[:, cin // 2 :], "r": r}
    y = run([node], feeds, [("w", w), ("bias", bias)])[0]
    kw = dict(stride=1, padding=(k // 2,) * 4, padding_mode="zeros")
    conv = reference_conv2d(x.astype(np.float64), w.astype(np.float64), bias.astype(np.float64), **kw)
    want = np.where(conv > 0, conv, 0.2 * conv) + r
    scale = reference_conv2d(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)), None, **kw)
    tol = (2 * U16 + U16**2 if precision == "bf16" else 2.0**-18) * scale + 2.0**-20 * np.abs(r) + 1e-4
    assert np.all(np.abs(y - want) <= tol), float(np.max(np.abs(y - want) - tol))


def test_conv_refuses_a_residual_of_another_shape():
    node = helper.make_node("Conv", ["x", "w", "", "", "r"], ["y"], domain=onnx_ops.DOMAIN, pads=[1] * 4)
    feeds = {"x": np.ones((1, 4, 8, 8), np.float32), "r": np.ones((1, 4, 1, 1), np.float32)}
    with pytest.raises(Exception, match=r"R: expected Y's shape \(1, 2, 8, 8\)"):
        run([node], feeds, [("w", np.ones((2, 4, 3, 3), np.float32))])


def _block(r_kind: str) -> onnx.ModelProto:
    """x -> Conv -> LeakyRelu -> Conv -> Mul(0.2) -> Add(r) -> y: r is x (a residual block), a (1, C, 1, 1) constant
    (broadcast), or a Relu of x written after the second conv."""
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2 for _ in range(2)]
    inits = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)]
    inits += [numpy_helper.from_array(np.float32(0.2), "s"),
              numpy_helper.from_array(rng.standard_normal((1, 8, 1, 1)).astype(np.float32), "c")]  # fmt: skip
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1] * 4),
             helper.make_node("LeakyRelu", ["c0"], ["a"], alpha=0.2),
             helper.make_node("Conv", ["a", "w1"], ["c1"], pads=[1] * 4),
             helper.make_node("Mul", ["c1", "s"], ["m"])]  # fmt: skip
    if r_kind == "later":
        nodes.append(helper.make_node("Relu", ["x"], ["late"]))
    nodes.append(helper.make_node("Add", ["m", {"x": "x", "broadcast": "c", "later": "late"}[r_kind]], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, ["n", 8, "h", "w"])],
                              [helper.make_tensor_value_info("y", F, None)], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("r_kind, fused", [("x", True), ("broadcast", False), ("later", False)])
def test_rewrite_takes_over_an_add_of_the_same_shape(tmp_path, monkeypatch, r_kind, fused):
    monkeypatch.setenv("GENRT_CONV", "genrt")
    path = tmp_path / "block.onnx"
    onnx.save(_block(r_kind), path)
    x = np.random.default_rng(1).standard_normal((1, 8, 20, 24)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for precision in ("f32", "bf16"):
        model = genrt.load(path, precision=precision)
        got = model(x)
        ops = [n.op_type for n in model._runner.session_graph({"x": x.shape}).graph.node]
        assert ("Add" not in ops) == fused and "Mul" not in ops, ops
        tol = 3e-2 if precision == "bf16" else 1e-4
        np.testing.assert_allclose(got, want, atol=tol * np.abs(want).max())
