"""An instance norm folded into the bfloat16 convolution that reads it (genrt.runtime.fuse_norms.fold_into_convs):
genrt.InstanceNormAffine's (a, b) per plane against numpy, genrt.Conv's input affine A in every kernel path against
a float64 reference of the norm and the convolution, and the rewrite's reach."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt import kernels, onnx_ops
from genrt.reference import reference_conv2d
from genrt.runtime import fuse_norms
from genrt.runtime.onnx_session import ort_ops_library

pytestmark = pytest.mark.skipif(ort_ops_library() is None, reason="genrt was built without ONNX Runtime headers")
U16 = 2.0**-8


def run(nodes, feeds, inits=()):
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in feeds]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits])  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION)]
    options = ort.SessionOptions()
    options.register_custom_ops_library(ort_ops_library())
    model = helper.make_model(graph, opset_imports=opsets)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def normalized(x, scale, bias, eps=1e-5):
    x = x.astype(np.float64)
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


@pytest.mark.parametrize("affine", ["none", "channel", "sample"])
def test_affine_matches_numpy(affine):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 5, 9, 13)) * 4 + 3).astype(np.float32)
    scale = {"none": None, "channel": rng.random(5, dtype=np.float32) + 0.5,
             "sample": rng.random((2, 5, 1, 1), dtype=np.float32) + 0.5}[affine]  # fmt: skip
    bias = None if scale is None else rng.standard_normal(scale.shape).astype(np.float32)
    feeds = {"x": x} | ({} if scale is None else {"s": scale, "b": bias})
    inputs = ["x"] if scale is None else ["x", "s", "b"]
    ab = run([helper.make_node("InstanceNormAffine", inputs, ["y"], domain=onnx_ops.DOMAIN)], feeds)[0]
    s = 1.0 if scale is None else np.broadcast_to(scale.reshape(-1, 5)[:, :, None, None], (2, 5, 1, 1))
    b = 0.0 if bias is None else np.broadcast_to(bias.reshape(-1, 5)[:, :, None, None], (2, 5, 1, 1))
    np.testing.assert_allclose(ab[..., 0, None, None] * x + ab[..., 1, None, None], normalized(x, s, b), atol=2e-5)
    assert ab.shape == (2, 5, 2) and ab.dtype == np.float32


CASES = [
    # cin, cout, kernel, stride, padding mode
    (8, 16, 3, 1, "reflect"),  # Winograd's shape: applied to a copy where the bf16 kernel would be Winograd
    (32, 16, 3, 2, "reflect"),  # stride 2: the even lanes of two loads
    (3, 32, 9, 1, "zeros"),  # a first layer (taps in K on AMX): the padding stays zero, not relu(b)
    (32, 3, 9, 1, "reflect"),  # a last layer (taps in M on AMX)
    (7, 5, 3, 1, "edge"),  # an odd channel: its pair's second half
]


@pytest.mark.parametrize(
    "precision, algo", [("f32", "auto"), ("bf16", "auto"), ("bf16", "direct"), ("bf16", "winograd"), ("bf16", "amx")]
)
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("cin, cout, k, stride, mode", CASES)
def test_conv_applies_its_input_affine(monkeypatch, cin, cout, k, stride, mode, relu, precision, algo):
    """Every kernel path: the bf16 direct and AMX kernels apply it as they convert their rows (AMX emulated below the
    amx level), Winograd's and the float32 kernels to a copy of the input."""
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", algo)
    rng = np.random.default_rng(cin * 10 + k)
    x = (rng.standard_normal((2, cin, 14, 37)) * 3 + 1).astype(np.float32)
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    p = k // 2
    conv = dict(domain=onnx_ops.DOMAIN, pads=[p] * 4, strides=[stride] * 2, padding_mode=mode, precision=precision,
                input_activation="relu" if relu else "none", threads=2)  # fmt: skip
    nodes = [helper.make_node("InstanceNormAffine", ["x"], ["a"], domain=onnx_ops.DOMAIN),
             helper.make_node("Conv", ["x", "w", "bias", "a"], ["y"], **conv)]  # fmt: skip
    y = run(nodes, {"x": x}, [("w", w), ("bias", bias)])[0]
    xn = normalized(x, 1.0, 0.0)
    xn = np.maximum(xn, 0) if relu else xn
    kw = dict(stride=stride, padding=(p,) * 4, padding_mode=mode)
    want = reference_conv2d(xn, w.astype(np.float64), bias.astype(np.float64), **kw)
    scale = reference_conv2d(np.abs(xn), np.abs(w.astype(np.float64)), None, **kw)
    # bf16: both operands rounded (the normalized input after its float32 affine); f32: float32 sums (Winograd's
    # transforms included), the affine's own rounding
    tol = (2 * U16 + U16**2 if precision == "bf16" else 2.0**-16) * scale + 1e-4
    assert np.all(np.abs(y - want) <= tol), float(np.max(np.abs(y - want) - tol))


def test_conv_refuses_a_bad_affine():
    x = np.ones((1, 4, 8, 8), np.float32)
    node = helper.make_node("Conv", ["x", "w", "", "a"], ["y"], domain=onnx_ops.DOMAIN, precision="bf16")
    w = np.ones((2, 4, 3, 3), np.float32)
    with pytest.raises(Exception, match=r"A: expected float32 of shape \(1, 4, 2\)"):
        run([node], {"x": x, "a": np.ones((1, 3, 2), np.float32)}, [("w", w)])


def _norm_conv(readers: str) -> onnx.ModelProto:
    """x -> InstanceNormalization -> Relu -> n, read by a Conv (and, for "two", also by an Add)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("InstanceNormalization", ["x", "s", "b"], ["m"]),
             helper.make_node("Relu", ["m"], ["n"]),
             helper.make_node("Conv", ["n", "w"], ["c"], pads=[1, 1, 1, 1])]  # fmt: skip
    nodes.append(helper.make_node("Add", ["c", "n"] if readers == "two" else ["c", "c"], ["y"]))
    inits = [numpy_helper.from_array(rng.random(16, dtype=np.float32) + 0.5, "s"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1, "w")]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("readers", ["conv", "two"])
def test_rewrite_folds_a_norm_only_its_bf16_convs_read(tmp_path, monkeypatch, readers):
    monkeypatch.setenv("GENRT_CONV", "genrt")
    path = tmp_path / "m.onnx"
    onnx.save(_norm_conv(readers), path)
    x = np.random.default_rng(1).standard_normal((1, 16, 64, 64)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for precision in ("f32", "bf16"):
        model = genrt.load(path, precision=precision)
        got = model({"x": x})
        graph = model._runner.session_graph({"x": x.shape})
        ops = [n.op_type for n in graph.graph.node if n.domain == onnx_ops.DOMAIN]
        folded = precision == "bf16" and readers == "conv" and kernels.cpu_isa() in ("amx", "avx512bf16")
        if kernels.cpu_isa() == "avx512bf16":
            folded = False  # a 3x3 stride-1 layer: Winograd's there, so not folded
        assert ("InstanceNormAffine" in ops) == folded, (precision, ops)
        tol = 5e-2 if precision == "bf16" else 1e-4
        np.testing.assert_allclose(got[0] if isinstance(got, tuple) else got, want, atol=tol * np.abs(want).max())


def _norm_then_conv(precision: str, residual: bool) -> onnx.ModelProto:
    norm = helper.make_node("InstanceNorm", ["x", "", "", "x"] if residual else ["x"], ["n"], domain=onnx_ops.DOMAIN,
                            activation="relu")  # fmt: skip
    conv = helper.make_node("Conv", ["n", "w"], ["y"], domain=onnx_ops.DOMAIN, precision=precision)
    graph = helper.make_graph([norm, conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")])  # fmt: skip
    return helper.make_model(graph)


def test_fold_leaves_f32_convs_and_residual_norms():
    model = _norm_then_conv("f32", residual=False)
    assert fuse_norms.fold_into_convs(model, "amx") is model
    model = _norm_then_conv("bf16", residual=True)  # the norm's output is a residual block's: it must be written
    assert fuse_norms.fold_into_convs(model, "amx") is model
    folded = fuse_norms.fold_into_convs(_norm_then_conv("bf16", residual=False), "amx")
    assert [n.op_type for n in folded.graph.node] == ["InstanceNormAffine", "Conv"]
    assert list(folded.graph.node[1].input) == ["x", "w", "", "n_affine"]
    assert fuse_norms.fold_into_convs(_norm_then_conv("bf16", residual=False), "avx2").graph.node[0].op_type == (
        "InstanceNorm"
    )
