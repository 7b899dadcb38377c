"""A bfloat16 convolution's output statistics handed to the instance norm that reads its output
(genrt.runtime.fuse_norms.stats_from_convs): genrt.Conv's S output against numpy's mean and variance of its own Y in
every kernel path, the norms with given statistics against the same norms computing them, and the rewrite's reach."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from genrt import onnx_ops
from genrt.runtime import fuse_norms
from genrt.runtime.onnx_session import ort_ops_library

pytestmark = pytest.mark.skipif(ort_ops_library() is None, reason="genrt was built without ONNX Runtime headers")


def session(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION)]
    options = ort.SessionOptions()
    options.register_custom_ops_library(ort_ops_library())
    model = helper.make_model(graph, opset_imports=opsets)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


F, D = TensorProto.FLOAT, TensorProto.DOUBLE
CASES = [
    # cin, cout, kernel, stride, offset (a mean far from the bias: the planes read again)
    (16, 32, 3, 1, 0.0),  # the standard tiles, two weight tiles at once
    (24, 20, 3, 2, 0.0),  # stride 2, a channel count that leaves a partial weight tile
    (3, 32, 9, 1, 0.0),  # taps in K on AMX
    (32, 3, 9, 1, 0.0),  # taps in M on AMX: from y afterwards
    (8, 5, 1, 1, 0.0),  # 1x1, fewer than 16 channels
    (16, 32, 3, 1, 300.0),  # every plane's mean 300 standard deviations from its bias
]


@pytest.mark.parametrize("precision, algo", [("f32", "auto"), ("bf16", "auto"), ("bf16", "direct"),
                                             ("bf16", "winograd"), ("bf16", "amx")])  # fmt: skip
@pytest.mark.parametrize("cin, cout, k, stride, offset", CASES)
def test_conv_statistics_match_numpy(monkeypatch, cin, cout, k, stride, offset, precision, algo):
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", algo)
    rng = np.random.default_rng(cin + 7 * k)
    x = (rng.standard_normal((2, cin, 19, 45)) + offset).astype(np.float32)
    w = (rng.standard_normal((cout, cin, k, k)) + (0.2 if offset else 0.0)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w", "bias"], ["y", "s"], domain=onnx_ops.DOMAIN, pads=[k // 2] * 4,
                            strides=[stride] * 2, precision=precision, threads=2)  # fmt: skip
    y, s = session([conv], ["x"], [("y", F), ("s", D)], [("w", w), ("bias", bias)]).run(None, {"x": x})
    assert s.shape == (2, cout, 2) and s.dtype == np.float64
    y64 = y.astype(np.float64)
    mean, var = y64.mean(axis=(2, 3)), y64.var(axis=(2, 3))
    # float32 sums over at most a row's 16-pixel tiles per lane, then double: a few float32 roundings of the spread
    spread = np.sqrt(var)
    np.testing.assert_allclose(s[..., 0], mean, rtol=0, atol=1e-6 * (spread + np.abs(mean)).max())
    np.testing.assert_allclose(s[..., 1], var, rtol=2e-5, atol=0)
    # without S, the same Y
    alone = helper.make_node("Conv", ["x", "w", "bias"], ["y"], domain=onnx_ops.DOMAIN, pads=[k // 2] * 4,
                             strides=[stride] * 2, precision=precision, threads=2)  # fmt: skip
    np.testing.assert_array_equal(session([alone], ["x"], [("y", F)], [("w", w), ("bias", bias)]).run(
        None, {"x": x})[0], y)  # fmt: skip


@pytest.mark.parametrize(
    "op, residual", [("InstanceNorm", False), ("InstanceNorm", True), ("InstanceNormAffine", False)]
)
def test_norms_with_given_statistics_match_their_own(op, residual):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 6, 11, 17)) * 3 + 5).astype(np.float32)
    r = rng.standard_normal(x.shape).astype(np.float32)
    scale, bias = rng.random(6, dtype=np.float32) + 0.5, rng.standard_normal(6).astype(np.float32)
    stats = np.stack([x.astype(np.float64).mean(axis=(2, 3)), x.astype(np.float64).var(axis=(2, 3))], axis=-1)
    inputs = ["x", "scale", "bias"] + (["r" if residual else ""] if op == "InstanceNorm" else [])
    own = helper.make_node(op, inputs, ["y"], domain=onnx_ops.DOMAIN)
    given = helper.make_node(op, inputs + ["stats"], ["y"], domain=onnx_ops.DOMAIN)
    feeds = {"x": x, "r": r} if residual else {"x": x}
    inits = [("scale", scale), ("bias", bias)]
    want = session([own], list(feeds), [("y", F)], inits).run(None, feeds)[0]
    got = session([given], list(feeds), [("y", F)], inits + [("stats", stats)]).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_norm_refuses_bad_statistics():
    x = np.ones((1, 4, 8, 8), np.float32)
    norm = helper.make_node("InstanceNorm", ["x", "", "", "", "stats"], ["y"], domain=onnx_ops.DOMAIN)
    with pytest.raises(Exception, match=r"stats: expected float64 of shape \(1, 4, 2\)"):
        session([norm], ["x"], [("y", F)], [("stats", np.zeros((1, 3, 2)))]).run(None, {"x": x})


def _conv_then_norms(precision: str) -> onnx.ModelProto:
    """x -> genrt.Conv -> c -> genrt.InstanceNorm (residual x) -> n -> genrt.Conv -> d -> InstanceNormAffine -> y."""
    conv = dict(domain=onnx_ops.DOMAIN, pads=[1] * 4, precision=precision)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], **conv),
             helper.make_node("InstanceNorm", ["c", "", "", "x"], ["n"], domain=onnx_ops.DOMAIN),
             helper.make_node("Conv", ["n", "w"], ["d"], **conv),
             helper.make_node("InstanceNormAffine", ["d"], ["y"], domain=onnx_ops.DOMAIN)]  # fmt: skip
    w = np.random.default_rng(0).standard_normal((8, 8, 3, 3)).astype(np.float32)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 8, 24, 24])],
                              [helper.make_tensor_value_info("y", F, None)],
                              [numpy_helper.from_array(w, "w")])  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION)]
    return helper.make_model(graph, opset_imports=opsets)


def test_rewrite_hands_bf16_conv_statistics_to_their_norms(monkeypatch):
    model = _conv_then_norms("bf16")
    assert fuse_norms.stats_from_convs(model, "avx512bf16") is model  # the conv would read y again: no gain
    assert fuse_norms.stats_from_convs(_conv_then_norms("f32"), "amx").graph.node[0].output[:] == ["c"]
    out = fuse_norms.stats_from_convs(model, "amx")
    nodes = out.graph.node
    assert list(nodes[0].output) == ["c", "c_stats"] and list(nodes[1].input) == ["c", "", "", "x", "c_stats"]
    assert list(nodes[2].output) == ["d", "d_stats"] and list(nodes[3].input) == ["d", "", "", "d_stats"]
    assert len(model.graph.node[0].output) == 1  # the original is untouched
    # the same values on any CPU (where the tiles are emulated or the statistics read from y)
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", "amx")
    x = np.random.default_rng(1).standard_normal((1, 8, 24, 24)).astype(np.float32)
    options = ort.SessionOptions()
    options.register_custom_ops_library(ort_ops_library())
    want, got = (ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0] for m in (model, out))  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
