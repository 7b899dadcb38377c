"""genrt.kernels.conv_transpose2d against torch.nn.functional.conv_transpose2d and ONNX's reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genrt
from genrt import kernels
from genrt._native import _C

torch = pytest.importorskip("torch")
F = torch.nn.functional

ACTIVATIONS = [None, "relu", "leaky_relu", "tanh", "sigmoid"]


def reference(
    x,
    w,
    bias=None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    groups=1,
    activation=None,
    negative_slope=0.01,
    scale=None,
    shift=None,
):
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    y = F.conv_transpose2d(
        t(x),
        t(w),
        t(bias),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )
    if scale is not None:
        y = y * t(scale)[None, :, None, None]
    if shift is not None:
        y = y + t(shift)[None, :, None, None]
    if activation == "relu":
        y = F.relu(y)
    elif activation == "leaky_relu":
        y = F.leaky_relu(y, negative_slope)
    elif activation == "tanh":
        y = torch.tanh(y)
    elif activation == "sigmoid":
        y = torch.sigmoid(y)
    return y.numpy()


@st.composite
def configs(draw):
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    op = tuple(draw(st.integers(0, max(s[i], d[i]) - 1)) for i in range(2))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 6))
    cout = groups * draw(st.integers(1, 11))
    n = draw(st.integers(1, 3))
    hw = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    ho = [(hw[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 for i in range(2)]
    if min(ho) < 1:
        p = (0, 0)
    return dict(
        n=n,
        cin=cin,
        cout=cout,
        hw=hw,
        k=k,
        stride=s,
        padding=p,
        output_padding=op,
        dilation=d,
        groups=groups,
        bias=draw(st.booleans()),
        affine=draw(st.booleans()),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        slope=draw(st.sampled_from([0.01, 0.2, -1.5])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def as64(kw):
    """Keyword arguments with their arrays in float64, for the reference."""
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}


def make(cfg, dtype):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal((cfg["n"], cfg["cin"], *cfg["hw"])).astype(dtype)
    w = rng.standard_normal((cfg["cin"], cfg["cout"] // cfg["groups"], *cfg["k"])).astype(dtype)
    b = rng.standard_normal(cfg["cout"]).astype(dtype) if cfg["bias"] else None
    sc = rng.standard_normal(cfg["cout"]).astype(dtype) if cfg["affine"] else None
    sh = rng.standard_normal(cfg["cout"]).astype(dtype) if cfg["affine"] else None
    kw = dict(
        stride=cfg["stride"],
        padding=cfg["padding"],
        output_padding=cfg["output_padding"],
        dilation=cfg["dilation"],
        groups=cfg["groups"],
        activation=cfg["activation"],
        negative_slope=cfg["slope"],
        scale=sc,
        shift=sh,
    )
    return x, w, b, kw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_matches_torch_float64(cfg):
    x, w, b, kw = make(cfg, np.float64)
    y = kernels.conv_transpose2d(x, w, b, **kw)
    ref = reference(x, w, b, **kw)
    assert y.shape == ref.shape and y.dtype == np.float64 and y.flags.c_contiguous
    np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_matches_torch_float32(cfg):
    x, w, b, kw = make(cfg, np.float32)
    y = kernels.conv_transpose2d(x, w, b, **kw)
    ref = reference(
        x.astype(np.float64),
        w.astype(np.float64),
        None if b is None else b.astype(np.float64),
        **as64(kw),
    )
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=2e-4, atol=2e-4 * max(1.0, np.abs(ref).max()))


ALGORITHMS = ["col", "packed", "direct", "flat"]  # GENRT_CONV_TRANSPOSE_ALGO; flat falls back where it does not apply


@pytest.mark.parametrize("algo", ALGORITHMS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(cfg=configs())
def test_every_algorithm_matches_torch(monkeypatch, algo, cfg):
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE_ALGO", algo)
    for dtype, tol in ((np.float64, 1e-11), (np.float32, 2e-4)):
        x, w, b, kw = make(cfg, dtype)
        y = kernels.conv_transpose2d(x, w, b, **kw, threads=2)
        ref = reference(
            *(None if a is None else a.astype(np.float64) for a in (x, w, b)),
            **as64(kw),
        )
        np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()), err_msg=algo)


def test_algorithm_override_rejects_unknown(monkeypatch):
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE_ALGO", "fft")
    with pytest.raises(genrt.GenrtError, match="GENRT_CONV_TRANSPOSE_ALGO"):
        kernels.conv_transpose2d(X, Wt)


# Shapes of the generator layers the kernel is tuned for (both algorithms, every blocking remainder), small batch.
LAYERS = [
    # cin, cout, hw, k, stride, padding, output_padding, n
    (100, 512, 1, 4, 1, 0, 0, 2),  # DCGAN first layer: 1x1 -> 4x4
    (64, 32, 4, 4, 2, 1, 0, 1),
    (32, 16, 8, 4, 2, 1, 0, 2),
    (16, 3, 16, 4, 2, 1, 0, 2),
    (16, 8, 12, 3, 2, 1, 1, 1),  # super-resolution upsampling
    (20, 37, 7, 3, 1, 1, 0, 3),
    (9, 19, 6, 5, 3, 2, 2, 2),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_generator_layers(layer, dtype, activation, monkeypatch):
    cin, cout, hw, k, s, p, op, n = layer
    for algo in ["auto"] + ALGORITHMS:
        monkeypatch.setenv("GENRT_CONV_TRANSPOSE_ALGO", algo)
        check_layer(layer, dtype, activation)


def check_layer(layer, dtype, activation):
    cin, cout, hw, k, s, p, op, n = layer
    rng = np.random.default_rng(cin * cout + hw)
    x = rng.standard_normal((n, cin, hw, hw)).astype(dtype)
    w = (rng.standard_normal((cin, cout, k, k)) / np.sqrt(cin * k)).astype(dtype)
    b, sc, sh = (rng.standard_normal(cout).astype(dtype) for _ in range(3))
    kw = dict(stride=s, padding=p, output_padding=op, activation=activation, scale=sc, shift=sh)
    y = kernels.conv_transpose2d(x, w, b, **kw, threads=2)
    ref = reference(
        *(a.astype(np.float64) for a in (x, w, b)),
        **{**kw, "scale": sc.astype(np.float64), "shift": sh.astype(np.float64)},
    )
    tol = 1e-11 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_counts_agree(threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 24, 9, 7))
    w = rng.standard_normal((24, 20, 4, 4))
    ref = reference(x, w, stride=2, padding=1)
    np.testing.assert_allclose(
        kernels.conv_transpose2d(x, w, stride=2, padding=1, threads=threads), ref, rtol=1e-11, atol=1e-11
    )


def test_every_isa(monkeypatch):
    rng = np.random.default_rng(1)
    cases = [
        (rng.standard_normal((2, 12, 6, 5)), rng.standard_normal((12, 13, 4, 3)), dict(stride=(2, 3), padding=1)),
        (rng.standard_normal((1, 40, 2, 2)), rng.standard_normal((40, 9, 3, 3)), dict(stride=2)),  # column GEMM
        (rng.standard_normal((2, 5, 4, 4)), rng.standard_normal((5, 3, 4, 4)), dict(stride=2, padding=1)),  # flat
        (rng.standard_normal((1, 7, 3, 20)), rng.standard_normal((7, 2, 4, 4)), dict(stride=2, padding=1)),  # direct
    ]
    before = _C.active_isa()
    try:
        for isa in _C.available_isas():
            _C.set_isa(isa)
            for algo in ["auto"] + ALGORITHMS:
                monkeypatch.setenv("GENRT_CONV_TRANSPOSE_ALGO", algo)
                for x, w, kw in cases:
                    for dtype in (np.float32, np.float64):
                        y = kernels.conv_transpose2d(x.astype(dtype), w.astype(dtype), activation="tanh", **kw)
                        ref = reference(x, w, activation="tanh", **kw)
                        tol = 1e-12 if dtype == np.float64 else 1e-4
                        np.testing.assert_allclose(y, ref, rtol=tol, atol=tol, err_msg=f"{isa} {algo} {dtype}")
    finally:
        _C.set_isa(before)


def test_non_contiguous_inputs():
    rng = np.random.default_rng(2)
    xb = rng.standard_normal((2, 6, 14, 10))
    x = xb[:, ::2, ::2, ::-1]  # (2, 3, 7, 10), negative and non-unit strides
    wb = rng.standard_normal((5, 3, 6, 3))
    w = wb.transpose(1, 0, 2, 3)[:, :, ::2]  # (3, 5, 3, 3)
    bias = rng.standard_normal(10)[::2]
    scale = np.broadcast_to(np.float64(0.5), (5,))  # zero stride
    y = kernels.conv_transpose2d(x, w, bias, stride=2, padding=(1, 0), scale=scale, activation="sigmoid")
    ref = reference(x, w, bias, stride=2, padding=(1, 0), scale=np.full(5, 0.5), activation="sigmoid")
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    assert y.flags.c_contiguous


def test_activation_extremes():
    x = np.array([-1e4, -800.0, -100.0, -20.0, -1e-9, -0.0, 0.0, 1e-300, 1e-9, 0.3, 20.0, 100.0, 1e4, np.nan])
    x = x.reshape(1, 1, 1, -1)
    w = np.ones((1, 1, 1, 1))
    for act in ("tanh", "sigmoid", "relu", "leaky_relu"):
        for dtype in (np.float64, np.float32):
            y = kernels.conv_transpose2d(x.astype(dtype), w.astype(dtype), activation=act)
            with np.errstate(all="ignore"):
                ref = reference(x, w, activation=act)
            tol = 1e-15 if dtype == np.float64 else 1e-6
            np.testing.assert_allclose(
                y,
                ref,
                rtol=tol,
                atol=1e-300 if dtype == np.float64 else 1e-30,
                equal_nan=True,
                err_msg=f"{act} {dtype}",
            )


def onnx_reference(x, w, b, stride, padding, output_padding, dilation, groups):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    inputs = ["x", "w"] + (["b"] if b is not None else [])
    node = helper.make_node(
        "ConvTranspose",
        inputs,
        ["y"],
        strides=list(stride),
        pads=[padding[0], padding[1]] * 2,
        output_padding=list(output_padding),
        dilations=list(dilation),
        group=groups,
        kernel_shape=list(w.shape[2:]),
    )
    vi = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, None) for n in inputs]
    graph = helper.make_graph([node], "g", vi, [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": x, "w": w} | ({"b": b} if b is not None else {})
    return ReferenceEvaluator(model).run(None, feeds)[0]


@pytest.mark.parametrize(
    "cfg",
    [
        # n, cin, cout/groups, hw, k, stride, padding, output_padding, dilation, groups, bias
        (1, 4, 3, (4, 4), (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1, True),
        (2, 3, 2, (5, 3), (3, 2), (3, 1), (1, 0), (2, 0), (1, 1), 1, False),
        # groups > 1 left to the torch tests: onnx 1.23's reference evaluator fails on grouped ConvTranspose
        (1, 4, 2, (3, 4), (3, 3), (2, 2), (0, 1), (1, 1), (2, 1), 1, True),
        (2, 2, 3, (6, 6), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1, True),
    ],
)
def test_matches_onnx_reference(cfg):
    n, cin, cog, hw, k, s, p, op, d, g, with_bias = cfg
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, cin, *hw))
    w = rng.standard_normal((cin, cog, *k))
    b = rng.standard_normal(cog * g) if with_bias else None
    ref = onnx_reference(x, w, b, s, p, op, d, g)
    y = kernels.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op, dilation=d, groups=g)
    np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-11)


def test_batch_zero():
    y = kernels.conv_transpose2d(np.zeros((0, 3, 4, 4)), np.zeros((3, 2, 3, 3)), stride=2)
    assert y.shape == (0, 2, 9, 9)


X = np.zeros((1, 4, 5, 5))
Wt = np.zeros((4, 2, 3, 3))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kernels.conv_transpose2d(X, np.zeros((3, 2, 3, 3))), "weight"),  # mismatched channels
        (lambda: kernels.conv_transpose2d(X, Wt, groups=3), "groups"),
        (lambda: kernels.conv_transpose2d(X, Wt, groups=0), "groups"),
        (lambda: kernels.conv_transpose2d(X, Wt, stride=2, output_padding=2), "output_padding"),
        (lambda: kernels.conv_transpose2d(X, Wt, stride=1, dilation=1, output_padding=(0, 1)), "output_padding"),
        (lambda: kernels.conv_transpose2d(X, Wt, stride=0), "stride"),
        (lambda: kernels.conv_transpose2d(X, Wt, stride=(1, -2)), "stride"),
        (lambda: kernels.conv_transpose2d(X, Wt, dilation=0), "dilation"),
        (lambda: kernels.conv_transpose2d(X, Wt, padding=-1), "padding"),
        (lambda: kernels.conv_transpose2d(X, Wt, padding=(1, 2, 3)), "padding"),
        (lambda: kernels.conv_transpose2d(X, Wt, padding=4), "padding"),  # empty output
        (lambda: kernels.conv_transpose2d(np.zeros((4, 5, 5)), Wt), "x"),
        (lambda: kernels.conv_transpose2d(X, np.zeros((4, 2, 3))), "weight"),
        (lambda: kernels.conv_transpose2d(X.astype(np.int32), Wt), "x"),
        (lambda: kernels.conv_transpose2d(X, Wt.astype(np.float32)), "weight"),
        (lambda: kernels.conv_transpose2d([[1.0]], Wt), "x"),
        (lambda: kernels.conv_transpose2d(X, Wt, np.zeros(3)), "bias"),
        (lambda: kernels.conv_transpose2d(X, Wt, np.zeros((2, 1))), "bias"),
        (lambda: kernels.conv_transpose2d(X, Wt, np.zeros(2, np.float32)), "bias"),
        (lambda: kernels.conv_transpose2d(X, Wt, scale=np.zeros(5)), "scale"),
        (lambda: kernels.conv_transpose2d(X, Wt, shift=np.zeros(1)), "shift"),
        (lambda: kernels.conv_transpose2d(X, Wt, activation="gelu"), "activation"),
        (lambda: kernels.conv_transpose2d(X, Wt, threads=0), "threads"),
        (lambda: kernels.conv_transpose2d(np.zeros((1, 4, 0, 5)), Wt), "x"),
        (lambda: kernels.conv_transpose2d(X, np.zeros((4, 0, 3, 3))), "weight"),
        (lambda: kernels.conv_transpose2d(X, np.zeros((4, 2, 0, 3))), "weight"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(genrt.GenrtError, match=match):
        call()


def test_binding_rejects_bad_pairs():
    with pytest.raises(genrt.GenrtError, match="stride"):
        _C.conv_transpose2d_forward(X, Wt, None, None, None, [1], [0, 0], [0, 0], [1, 1], 1, "none", 0.01, 1)


def test_huge_stride_is_cheap(monkeypatch):
    # a 1x1 input: the output is only the kernel footprint, however large the stride (phases are capped by H_out)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 1, 1))
    w = rng.standard_normal((3, 2, 3, 2))
    ref = reference(x, w, stride=(10**9, 10**9), output_padding=(5, 0))
    for algo in ["auto"] + ALGORITHMS:
        monkeypatch.setenv("GENRT_CONV_TRANSPOSE_ALGO", algo)
        y = kernels.conv_transpose2d(x, w, stride=(10**9, 10**9), output_padding=(5, 0))
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12, err_msg=algo)


@pytest.mark.parametrize("n, hw", [(1, (1, 1)), (2, (1, 1)), (1, (1, 2))])
def test_one_or_two_pixels(n, hw):
    # the GEMV (one pixel) and wide-tile (two pixels) column paths, with groups, dilation and padding
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, 6, *hw))
    w = rng.standard_normal((6, 3, 3, 2))
    b = rng.standard_normal(9)
    kw = dict(stride=2, padding=(1, 0), dilation=(2, 1), output_padding=(1, 0), groups=3, activation="tanh")
    np.testing.assert_allclose(
        kernels.conv_transpose2d(x, w, b, **kw), reference(x, w, b, **kw), rtol=1e-12, atol=1e-12
    )
