"""Weights packed once and reused: genrt.kernels.PackedConvTranspose2d and genrt's ONNX Runtime ConvTranspose with
constant weights, against torch (the same reference as test_conv_transpose2d_kernel)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import genrt
from genrt import kernels
from genrt._native import _C
from tests.test_conv_transpose2d_kernel import ALGORITHMS, LAYERS, as64, configs, make, reference

pytest.importorskip("torch")


@pytest.mark.parametrize("algo", ["auto"] + ALGORITHMS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(cfg=configs())
def test_packed_matches_torch_on_every_call(monkeypatch, algo, cfg):
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE_ALGO", algo)
    for dtype, tol in ((np.float64, 1e-11), (np.float32, 2e-4)):
        x, w, b, kw = make(cfg, dtype)
        ref = reference(*(None if a is None else a.astype(np.float64) for a in (x, w, b)), **as64(kw))
        conv = kernels.PackedConvTranspose2d(w, b, **kw)
        # first call builds the layout, the next ones reuse it; other thread counts may build their own
        for threads in (1, 1, 2, 3, 2):
            y = conv(x, threads=threads)
            assert y.dtype == dtype and y.flags.c_contiguous
            np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()), err_msg=algo)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", LAYERS)
def test_generator_layers_at_several_batch_sizes(layer, dtype):
    """One packed object serves batch 1 (column GEMM / GEMV), 2, and larger batches (phase GEMM): a layout per path."""
    cin, cout, hw, k, s, p, op, _ = layer
    rng = np.random.default_rng(cin + cout)
    w = (rng.standard_normal((cin, cout, k, k)) / np.sqrt(cin * k)).astype(dtype)
    b, sc, sh = (rng.standard_normal(cout).astype(dtype) for _ in range(3))
    kw = dict(stride=s, padding=p, output_padding=op, activation="leaky_relu", negative_slope=0.2, scale=sc, shift=sh)
    conv = kernels.PackedConvTranspose2d(w, b, **kw)
    tol = 1e-11 if dtype == np.float64 else 1e-4
    for n in (1, 2, 5, 1):
        x = rng.standard_normal((n, cin, hw, hw)).astype(dtype)
        ref = reference(*(a.astype(np.float64) for a in (x, w, b)), **as64(kw))
        np.testing.assert_allclose(conv(x, threads=2), ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(conv(x, threads=2), kernels.conv_transpose2d(x, w, b, **kw, threads=2), rtol=tol)


def test_layouts_are_built_once():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32, 4, 4)).astype(np.float32)
    conv = kernels.PackedConvTranspose2d(w, stride=2, padding=1)
    assert conv.packed_bytes == 0
    x = rng.standard_normal((1, 64, 4, 4)).astype(np.float32)
    conv(x, threads=2)
    built = conv.packed_bytes
    assert built >= w.nbytes  # every weight is in the layout (plus zero padding of partial register tiles)
    for _ in range(3):
        conv(x, threads=2)
    assert conv.packed_bytes == built  # reused, not rebuilt


def test_keeps_read_only_copies():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 5, 5))
    w = rng.standard_normal((6, 4, 3, 3))
    b = rng.standard_normal(4)
    conv = kernels.PackedConvTranspose2d(w, b, stride=2)
    before = conv(x)
    w += 1.0  # the caller's arrays may change; the packed object does not see it
    b[:] = 0.0
    np.testing.assert_array_equal(conv(x), before)
    np.testing.assert_allclose(before, reference(x, w - 1.0, conv.bias, stride=2), rtol=1e-11, atol=1e-11)
    with pytest.raises(ValueError):
        conv.weight[0, 0, 0, 0] = 0.0
    # non-native byte order and non-contiguous weights are accepted (copied to native C order)
    wb = np.asarray(w[:, ::-1].copy()[:, ::-1], dtype=">f8")
    np.testing.assert_allclose(kernels.PackedConvTranspose2d(wb, stride=2)(x), reference(x, w, stride=2), rtol=1e-11)


def test_every_isa_with_one_packed_object():
    """Layouts depend on the instruction set's register tiles; switching ISA must not reuse another ISA's layout."""
    rng = np.random.default_rng(2)
    cases = [((1, 40, 2, 2), (40, 9, 3, 3), dict(stride=2)), ((2, 5, 4, 4), (5, 3, 4, 4), dict(stride=2, padding=1))]
    before = _C.active_isa()
    try:
        for xs, ws, kw in cases:
            x, w = rng.standard_normal(xs), rng.standard_normal(ws)
            ref = reference(x, w, **kw)
            conv = kernels.PackedConvTranspose2d(w, **kw)
            for isa in _C.available_isas() * 2:
                _C.set_isa(isa)
                np.testing.assert_allclose(conv(x), ref, rtol=1e-12, atol=1e-12, err_msg=isa)
    finally:
        _C.set_isa(before)


def test_concurrent_first_calls():
    """Threads racing on the first call all get the right answer (one of them builds the layout)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((128, 64, 4, 4)).astype(np.float32)
    xs = [rng.standard_normal((n, 128, 4, 4)).astype(np.float32) for n in (1, 1, 2, 3, 1, 2)]
    conv = kernels.PackedConvTranspose2d(w, stride=2, padding=1, activation="relu")
    results = [None] * len(xs)

    def work(i):
        results[i] = conv(xs[i], threads=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, y in zip(xs, results, strict=True):
        np.testing.assert_allclose(y, reference(x, w, stride=2, padding=1, activation="relu"), rtol=1e-4, atol=1e-4)


def test_bad_arguments():
    w = np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(genrt.DTypeError, match="w: expected float32 or float64"):
        kernels.PackedConvTranspose2d(w.astype(np.int32))
    with pytest.raises(genrt.DTypeError, match="bias: expected a numpy.ndarray"):
        kernels.PackedConvTranspose2d(w, [1.0, 2.0])
    with pytest.raises(genrt.ArgumentError, match="activation"):
        kernels.PackedConvTranspose2d(w, activation="gelu")
    with pytest.raises(genrt.ArgumentError, match="stride"):
        kernels.PackedConvTranspose2d(w, stride=(1, 2, 3))
    conv = kernels.PackedConvTranspose2d(w, stride=2)
    with pytest.raises(genrt.ShapeError, match="weight: expected 3 input channels"):
        conv(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(genrt.DTypeError):
        conv(np.zeros((1, 4, 4, 4), np.float64))


# --- genrt's ONNX Runtime op: constant weights are packed once, weights fed as inputs are not cached ---------------


def _ort_session(w_initializer: np.ndarray | None, shape, **attrs):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from genrt.runtime.onnx_session import ort_ops_library

    lib = ort_ops_library()
    if lib is None:
        pytest.skip("genrt was built without ONNX Runtime headers")
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)]
    inits = []
    if w_initializer is None:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, shape))
    else:
        inits.append(numpy_helper.from_array(w_initializer, "W"))
    node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], domain="genrt", threads=2, **attrs)
    output = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "g", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("genrt", 1)])
    opts = ort.SessionOptions()
    opts.register_custom_ops_library(lib)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("n", [1, 3])
def test_ort_op_constant_weights(n):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((32, 16, 4, 4)).astype(np.float32)
    sess = _ort_session(w, None, strides=[2, 2], pads=[1, 1, 1, 1], activation="relu")
    for _ in range(3):
        x = rng.standard_normal((n, 32, 4, 4)).astype(np.float32)
        (y,) = sess.run(None, {"X": x})
        np.testing.assert_allclose(y, reference(x, w, stride=2, padding=1, activation="relu"), rtol=1e-4, atol=1e-4)


def test_ort_op_weights_as_input_are_not_cached():
    rng = np.random.default_rng(5)
    sess = _ort_session(None, [32, 16, 4, 4], strides=[2, 2], pads=[1, 1, 1, 1])
    x = rng.standard_normal((1, 32, 4, 4)).astype(np.float32)
    for _ in range(3):  # a different W on every run: a stale packed copy would be caught
        w = rng.standard_normal((32, 16, 4, 4)).astype(np.float32)
        (y,) = sess.run(None, {"X": x, "W": w})
        np.testing.assert_allclose(y, reference(x, w, stride=2, padding=1), rtol=1e-4, atol=1e-4)
