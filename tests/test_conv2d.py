"""genrt.kernels.conv2d (Winograd F(4x4, 3x3) for 3x3 stride 1, a direct implicit GEMM for other kernel sizes and
strides, padding in the kernel) against torch's F.pad + F.conv2d, numpy's reference_conv2d, and genrt.Conv inside
ONNX Runtime against ORT's own Pad + Conv."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genrt
from genrt import kernels
from genrt._native import _C
from genrt.reference import reference_conv2d

torch = pytest.importorskip("torch")
F = torch.nn.functional

MODES = ["zeros", "reflect", "edge"]
_TORCH_MODE = {"zeros": "constant", "reflect": "reflect", "edge": "replicate"}


def reference(
    x, w, bias=None, *, stride=1, padding=(0, 0, 0, 0), padding_mode="zeros", activation="none", negative_slope=0.01
):
    """torch in float64: F.pad (padding is (top, left, bottom, right); F.pad wants (left, right, top, bottom))."""
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
    top, left, bottom, right = padding
    xp = F.pad(t(x), (left, right, top, bottom), mode=_TORCH_MODE[padding_mode])
    y = F.conv2d(xp, t(w), t(bias), stride=stride)
    if activation == "leaky_relu":
        return F.leaky_relu(y, negative_slope).numpy()
    return (F.relu(y) if activation == "relu" else y).numpy()


@st.composite
def configs(draw):
    mode = draw(st.sampled_from(MODES))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    # reflect needs each pad below its dimension; every mode needs a padded size of at least 3
    lo_h = max(1, 3 - pads[0] - pads[2], (max(pads[0], pads[2]) + 1) if mode == "reflect" else 1)
    lo_w = max(1, 3 - pads[1] - pads[3], (max(pads[1], pads[3]) + 1) if mode == "reflect" else 1)
    return dict(
        n=draw(st.integers(1, 3)),
        cin=draw(st.integers(1, 19)),
        cout=draw(st.integers(1, 21)),
        hw=(draw(st.integers(lo_h, 23)), draw(st.integers(lo_w, 41))),
        padding=tuple(pads),
        padding_mode=mode,
        bias=draw(st.booleans()),
        activation=draw(st.sampled_from(["none", "relu", "leaky_relu"])),
        negative_slope=draw(st.sampled_from([0.01, 0.2, -0.5, 2.0])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@st.composite
def direct_configs(draw):
    """Any kernel size up to 11x11 and strides 1..3 (3x3 stride 1 excepted: that is Winograd's, above)."""
    kh, kw = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if (kh, kw, stride) == (3, 3, (1, 1)):
        stride = (2, 1)
    mode = draw(st.sampled_from(MODES))
    pads = [draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw)]
    lo_h = max(1, kh - pads[0] - pads[2], (max(pads[0], pads[2]) + 1) if mode == "reflect" else 1)
    lo_w = max(1, kw - pads[1] - pads[3], (max(pads[1], pads[3]) + 1) if mode == "reflect" else 1)
    return dict(
        n=draw(st.integers(1, 2)),
        cin=draw(st.integers(1, 9)),
        cout=draw(st.sampled_from([1, 2, 3, 4, 5, 8, 9, 17])),  # the narrow tiles (1..4) and the wide one
        k=(kh, kw),
        stride=stride,
        hw=(draw(st.integers(lo_h, lo_h + 20)), draw(st.integers(lo_w, lo_w + 60))),
        padding=tuple(pads),
        padding_mode=mode,
        bias=draw(st.booleans()),
        activation=draw(st.sampled_from(["none", "relu", "leaky_relu"])),
        negative_slope=draw(st.sampled_from([0.01, 0.2, -0.5, 2.0])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def make(cfg, dtype):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal((cfg["n"], cfg["cin"], *cfg["hw"])).astype(dtype)
    w = rng.standard_normal((cfg["cout"], cfg["cin"], *cfg.get("k", (3, 3)))).astype(dtype)
    b = rng.standard_normal(cfg["cout"]).astype(dtype) if cfg["bias"] else None
    kw = dict(padding=cfg["padding"], padding_mode=cfg["padding_mode"], activation=cfg["activation"])
    if cfg["activation"] == "leaky_relu":
        kw["negative_slope"] = cfg["negative_slope"]
    if "stride" in cfg:
        kw["stride"] = cfg["stride"]
    return x, w, b, kw


def _tol32(ref) -> float:
    return 1e-4 * max(1.0, float(np.abs(ref).max()))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_matches_torch_float64(cfg):
    x, w, b, kw = make(cfg, np.float64)
    y = kernels.conv2d(x, w, b, **kw)
    ref = reference(x, w, b, **kw)
    assert y.shape == ref.shape and y.dtype == np.float64 and y.flags.c_contiguous
    np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-11 * max(1.0, np.abs(ref).max()))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_matches_torch_float32(cfg):
    x, w, b, kw = make(cfg, np.float32)
    y = kernels.conv2d(x, w, b, **kw)
    ref = reference(x, w, b, **kw)
    assert y.shape == ref.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=_tol32(ref))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(direct_configs())
def test_direct_matches_torch_float64(cfg):
    x, w, b, kw = make(cfg, np.float64)
    y = kernels.conv2d(x, w, b, **kw)
    ref = reference(x, w, b, **kw)
    assert y.shape == ref.shape and y.dtype == np.float64 and y.flags.c_contiguous
    np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-11 * max(1.0, np.abs(ref).max()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(direct_configs())
def test_direct_matches_torch_float32(cfg):
    x, w, b, kw = make(cfg, np.float32)
    y = kernels.conv2d(x, w, b, **kw)
    ref = reference(x, w, b, **kw)
    assert y.shape == ref.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=_tol32(ref))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", [(0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2), (2, 0, 1, 2), (0, 2, 2, 1)])
def test_matches_numpy_reference(mode, padding, rng):
    x = rng.standard_normal((2, 5, 9, 14))
    w = rng.standard_normal((6, 5, 3, 3))
    b = rng.standard_normal(6)
    kw = dict(padding=padding, padding_mode=mode, activation="relu")
    np.testing.assert_allclose(kernels.conv2d(x, w, b, **kw), reference_conv2d(x, w, b, **kw), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize(
    "shape, padding, mode",
    [
        ((1, 3, 1, 1), (1, 1, 1, 1), "zeros"),  # one pixel
        ((1, 3, 1, 1), (2, 2, 0, 0), "edge"),
        ((2, 4, 1, 5), (1, 1, 1, 1), "edge"),  # one row
        ((1, 2, 2, 2), (1, 1, 1, 1), "reflect"),  # smaller than a tile
        ((1, 2, 3, 3), (0, 0, 0, 0), "zeros"),  # one output pixel, no padding
        ((1, 3, 3, 70), (2, 2, 2, 2), "reflect"),  # rows of several vectors of tiles
        ((1, 17, 130, 67), (1, 1, 1, 1), "reflect"),  # odd sizes, channels not a multiple of the vector width
        ((3, 33, 31, 35), (1, 0, 2, 1), "zeros"),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_shapes(shape, padding, mode, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((13, shape[1], 3, 3)).astype(dtype)
    b = rng.standard_normal(13).astype(dtype)
    y = kernels.conv2d(x, w, b, padding=padding, padding_mode=mode)
    ref = reference(x, w, b, padding=padding, padding_mode=mode)
    tol = _tol32(ref) if dtype == np.float32 else 1e-11 * max(1.0, np.abs(ref).max())
    np.testing.assert_allclose(y, ref, rtol=1e-4 if dtype == np.float32 else 1e-11, atol=tol)


@pytest.mark.parametrize(
    "shape, k, stride, padding, mode",
    [
        ((1, 3, 1, 1), (9, 9), 1, (4, 4, 4, 4), "zeros"),  # one pixel, padded to the kernel
        ((1, 3, 1, 1), (5, 5), 2, (4, 4, 0, 0), "edge"),  # pads at their limit, one output pixel
        ((1, 2, 5, 5), (9, 9), 1, (4, 4, 4, 4), "reflect"),  # reflect pads at their limit (size - 1)
        ((1, 2, 9, 9), (9, 9), 1, (0, 0, 0, 0), "zeros"),  # one output pixel, no padding
        ((1, 4, 2, 3), (1, 1), 1, (0, 0, 0, 0), "zeros"),  # 1x1
        ((2, 3, 1, 40), (1, 11), (1, 3), (0, 10, 0, 10), "edge"),  # one row, the widest kernel
        ((1, 5, 17, 133), (3, 3), 2, (1, 1, 1, 1), "reflect"),  # odd sizes at stride 2
        ((1, 6, 30, 31), (4, 4), 2, (1, 1, 1, 1), "zeros"),  # a DCGAN discriminator layer
        ((1, 7, 19, 21), (2, 5), (3, 2), (1, 4, 0, 2), "edge"),
        ((1, 32, 21, 70), (9, 9), 1, (4, 4, 4, 4), "reflect"),  # the style network's last layer, C_out 3
    ],
)
@pytest.mark.parametrize("cout", [3, 13])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_edge_shapes(shape, k, stride, padding, mode, cout, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((cout, shape[1], *k)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    y = kernels.conv2d(x, w, b, stride=stride, padding=padding, padding_mode=mode, activation="relu")
    ref = reference(x, w, b, stride=stride, padding=padding, padding_mode=mode, activation="relu")
    assert y.shape == ref.shape
    tol = _tol32(ref) if dtype == np.float32 else 1e-11 * max(1.0, np.abs(ref).max())
    np.testing.assert_allclose(y, ref, rtol=1e-4 if dtype == np.float32 else 1e-11, atol=tol)


@pytest.mark.parametrize("k, stride, padding", [((9, 9), 1, (1, 4, 3, 2)), ((3, 3), (2, 1), (2, 0, 1, 2))])
@pytest.mark.parametrize("mode", MODES)
def test_direct_matches_numpy_reference(k, stride, padding, mode, rng):
    x = rng.standard_normal((2, 5, 13, 14))
    w = rng.standard_normal((6, 5, *k))
    b = rng.standard_normal(6)
    kw = dict(stride=stride, padding=padding, padding_mode=mode, activation="relu")
    np.testing.assert_allclose(kernels.conv2d(x, w, b, **kw), reference_conv2d(x, w, b, **kw), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize(
    "cin, cout, k, stride, pad, hw",
    [(3, 32, 9, 1, 4, 64), (32, 64, 3, 2, 1, 64), (64, 128, 3, 2, 1, 32), (32, 3, 9, 1, 4, 64)],
)
def test_johnson_direct_layers(cin, cout, k, stride, pad, hw, rng):
    """The style network's other four layers, at a scale where float32 error adds up."""
    x = rng.standard_normal((1, cin, hw, hw + 3)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    y = kernels.conv2d(x, w, b, stride=stride, padding=pad, padding_mode="reflect")
    ref = reference(x, w, b, stride=stride, padding=(pad,) * 4, padding_mode="reflect")
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=_tol32(ref))


def test_johnson_residual_layer(rng):
    """The shape the kernel is for: 128 channels, reflection padding 1, at a scale where float32 error adds up."""
    x = rng.standard_normal((1, 128, 64, 64)).astype(np.float32)
    w = (rng.standard_normal((128, 128, 3, 3)) / np.sqrt(128 * 9)).astype(np.float32)
    b = rng.standard_normal(128).astype(np.float32)
    y = kernels.conv2d(x, w, b, padding=1, padding_mode="reflect", activation="relu")
    ref = reference(x, w, b, padding=(1, 1, 1, 1), padding_mode="reflect", activation="relu")
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=_tol32(ref))


def test_every_isa_agrees(rng):
    x64 = rng.standard_normal((2, 7, 19, 37))
    w64 = rng.standard_normal((9, 7, 3, 3))
    b64 = rng.standard_normal(9)
    before = _C.active_isa()
    try:
        for isa in _C.available_isas():
            _C.set_isa(isa)
            for mode in MODES:
                kw = dict(padding=(1, 2, 2, 1), padding_mode=mode, activation="relu")
                ref = reference(x64, w64, b64, **kw)
                for dtype, tol in ((np.float32, _tol32(ref)), (np.float64, 1e-10)):
                    y = kernels.conv2d(x64.astype(dtype), w64.astype(dtype), b64.astype(dtype), **kw)
                    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol, err_msg=f"{isa} {mode} {dtype}")
    finally:
        _C.set_isa(before)


@pytest.mark.parametrize("cout", [3, 11])  # the narrow register tile and the wide one
def test_every_isa_agrees_direct(cout, rng):
    x64 = rng.standard_normal((2, 7, 19, 37))
    before = _C.active_isa()
    try:
        for isa in _C.available_isas():
            _C.set_isa(isa)
            for k, stride, padding in (
                ((9, 9), 1, (4, 3, 2, 4)),
                ((3, 3), 2, (1, 1, 1, 0)),
                ((5, 2), (2, 3), (1, 1, 2, 0)),
            ):
                w64 = rng.standard_normal((cout, 7, *k))
                b64 = rng.standard_normal(cout)
                for mode in MODES:
                    kw = dict(stride=stride, padding=padding, padding_mode=mode, activation="relu")
                    ref = reference(x64, w64, b64, **kw)
                    for dtype, tol in ((np.float32, _tol32(ref)), (np.float64, 1e-10)):
                        y = kernels.conv2d(x64.astype(dtype), w64.astype(dtype), b64.astype(dtype), **kw)
                        np.testing.assert_allclose(y, ref, rtol=tol, atol=tol, err_msg=f"{isa} {k} {mode} {dtype}")
    finally:
        _C.set_isa(before)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("k, stride", [(3, 1), (9, 1), (3, 2)])
def test_thread_counts_agree(threads, k, stride, rng):
    x = rng.standard_normal((2, 8, 40, 50)).astype(np.float32)
    w = rng.standard_normal((12, 8, k, k)).astype(np.float32)
    kw = dict(stride=stride, padding=1, padding_mode="edge")
    one = kernels.conv2d(x, w, threads=1, **kw)
    np.testing.assert_array_equal(kernels.conv2d(x, w, threads=threads, **kw), one)


def test_non_contiguous_inputs(rng):
    x = rng.standard_normal((2, 12, 16, 20))[:, ::2, :, ::-1]  # strided channels, flipped width
    w = np.asfortranarray(rng.standard_normal((5, 6, 3, 3)))
    b = rng.standard_normal(10)[::2]
    kw = dict(padding=(1, 1, 1, 1), padding_mode="reflect")
    np.testing.assert_allclose(kernels.conv2d(x, w, b, **kw), reference(x, w, b, **kw), rtol=1e-11, atol=1e-11)


def test_weight_cache_reuses_the_transform(rng):
    x = rng.standard_normal((1, 6, 10, 10)).astype(np.float32)
    w = rng.standard_normal((7, 6, 3, 3)).astype(np.float32)
    cache = _C.WeightCache()
    first = _C.conv2d_forward(x, w, None, [1, 1, 1, 1], "zeros", "none", 2, cache)
    assert cache.entries == 1 and cache.bytes >= 36 * 7 * 6 * 4
    x2 = rng.standard_normal((2, 6, 13, 9)).astype(np.float32)
    second = _C.conv2d_forward(x2, w, None, [1, 1, 1, 1], "zeros", "none", 2, cache)
    assert cache.entries == 1  # other input sizes reuse the one transform
    np.testing.assert_allclose(first, reference(x, w, padding=(1, 1, 1, 1)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(second, reference(x2, w, padding=(1, 1, 1, 1)), rtol=1e-4, atol=1e-4)


def test_weight_cache_reuses_the_packing(rng):
    x = rng.standard_normal((1, 6, 20, 20)).astype(np.float32)
    w = rng.standard_normal((7, 6, 9, 9)).astype(np.float32)
    cache = _C.WeightCache()
    kw = dict(padding=(4, 4, 4, 4), padding_mode="reflect")
    first = _C.conv2d_forward(x, w, None, [4, 4, 4, 4], "reflect", "none", 2, cache, [1, 1])
    assert cache.entries == 1 and cache.bytes >= 7 * 6 * 81 * 4
    x2 = rng.standard_normal((2, 6, 13, 9)).astype(np.float32)
    second = _C.conv2d_forward(x2, w, None, [4, 4, 4, 4], "reflect", "none", 2, cache, [1, 1])
    assert cache.entries == 1
    np.testing.assert_allclose(first, reference(x, w, **kw), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(second, reference(x2, w, **kw), rtol=1e-4, atol=1e-3)


def test_padding_forms_and_aliases(rng):
    x = rng.standard_normal((1, 2, 6, 7))
    w = rng.standard_normal((3, 2, 3, 3))
    np.testing.assert_array_equal(kernels.conv2d(x, w, padding=1), kernels.conv2d(x, w, padding=(1, 1, 1, 1)))
    np.testing.assert_array_equal(kernels.conv2d(x, w, padding=(2, 1)), kernels.conv2d(x, w, padding=(2, 1, 2, 1)))
    np.testing.assert_array_equal(
        kernels.conv2d(x, w, padding=1, padding_mode="replicate"), kernels.conv2d(x, w, padding=1, padding_mode="edge")
    )
    np.testing.assert_array_equal(kernels.conv2d(x, w, stride=2), kernels.conv2d(x, w, stride=(2, 2)))


def test_batch_zero():
    y = kernels.conv2d(np.zeros((0, 3, 4, 4)), np.zeros((2, 3, 3, 3)), padding=1)
    assert y.shape == (0, 2, 4, 4)


X = np.zeros((1, 4, 5, 5))
Wt = np.zeros((2, 4, 3, 3))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kernels.conv2d(X, np.zeros((2, 3, 3, 3))), "weight"),  # mismatched channels
        (lambda: kernels.conv2d(X, np.zeros((2, 4, 17, 17))), "weight"),  # kernel too large
        (lambda: kernels.conv2d(np.zeros((1, 4, 20, 20)), np.zeros((2, 4, 3, 17))), "weight"),
        (lambda: kernels.conv2d(X, np.zeros((2, 4, 3))), "weight"),
        (lambda: kernels.conv2d(X, np.zeros((0, 4, 3, 3))), "weight"),
        (lambda: kernels.conv2d(np.zeros((4, 5, 5)), Wt), "x"),
        (lambda: kernels.conv2d(np.zeros((1, 4, 0, 5)), Wt), "x"),
        (lambda: kernels.conv2d(X.astype(np.int32), Wt), "x"),
        (lambda: kernels.conv2d([[1.0]], Wt), "x"),
        (lambda: kernels.conv2d(X, Wt.astype(np.float32)), "weight"),
        (lambda: kernels.conv2d(X, Wt, np.zeros(3)), "bias"),
        (lambda: kernels.conv2d(X, Wt, np.zeros((2, 1))), "bias"),
        (lambda: kernels.conv2d(X, Wt, np.zeros(2, np.float32)), "bias"),
        (lambda: kernels.conv2d(X, Wt, padding=3), "padding"),
        (lambda: kernels.conv2d(X, np.zeros((2, 4, 9, 9)), padding=9), "padding"),  # more than kernel - 1
        (lambda: kernels.conv2d(X, np.zeros((2, 4, 9, 9)), padding=(4, 4, 4, 5), padding_mode="reflect"), "padding"),
        (lambda: kernels.conv2d(X, np.zeros((2, 4, 9, 9)), padding=1), "padding"),  # padded x smaller than the kernel
        (lambda: kernels.conv2d(X, Wt, stride=0), "stride"),
        (lambda: kernels.conv2d(X, Wt, stride=(1, 9)), "stride"),
        (lambda: kernels.conv2d(X, Wt, stride=(1, 2, 3)), "stride"),
        (lambda: kernels.conv2d(X, Wt, stride=1.5), "stride"),
        (lambda: kernels.conv2d(X, Wt, stride=True), "stride"),
        (lambda: _C.conv2d_forward(X, Wt, None, [0, 0, 0, 0], "zeros", "none", 1, None, [1]), "stride"),
        (lambda: kernels.conv2d(X, Wt, padding=-1), "padding"),
        (lambda: kernels.conv2d(X, Wt, padding=(1, 2, 3)), "padding"),
        (lambda: kernels.conv2d(X, Wt, padding=True), "padding"),
        (lambda: kernels.conv2d(np.zeros((1, 4, 2, 2)), Wt, padding=(2, 0, 0, 0), padding_mode="reflect"), "padding"),
        (lambda: kernels.conv2d(np.zeros((1, 4, 1, 1)), Wt), "padding"),  # empty output
        (lambda: kernels.conv2d(X, Wt, padding_mode="wrap"), "padding_mode"),
        (lambda: kernels.conv2d(X, Wt, activation="tanh"), "activation"),
        (lambda: kernels.conv2d(X, Wt, activation="leaky_relu", negative_slope=float("nan")), "negative_slope"),
        (lambda: kernels.conv2d(X, Wt, activation="leaky_relu", negative_slope="steep"), "negative_slope"),
        (lambda: kernels.conv2d(X, Wt, threads=0), "threads"),
        (lambda: _C.conv2d_forward(X, Wt, None, [1, 1], "zeros", "none", 1), "padding"),
        (lambda: _C.conv2d_forward(X, Wt, None, [0, 0, 0, 0], "zeros", "tanh", 1), "activation"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(genrt.GenrtError, match=match):
        call()


# --- genrt.Conv in ONNX Runtime against ORT's own Pad + Conv --------------------------------------------------------


def _sessions(w, b, pads, mode, relu, *, w_as_input=False, stride=1):
    """(genrt.Conv session, ORT Pad + Conv [+ Relu | LeakyRelu] session) for the same layer (relu: False, True or
    "LeakyRelu", with slope 0.2)."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from genrt.runtime.onnx_session import ort_ops_library

    lib = ort_ops_library()
    if lib is None:
        pytest.skip("genrt was built without ONNX Runtime headers")
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", w.shape[1], "h", "w"])
    y_info = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(b, "B")]
    inputs = [x_info]
    if w_as_input:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, list(w.shape)))
    else:
        inits.append(numpy_helper.from_array(w, "W"))
    top, left, bottom, right = pads
    onnx_mode = {"zeros": "constant", "reflect": "reflect", "edge": "edge"}[mode]
    pads_init = numpy_helper.from_array(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), "pads")
    ort_nodes = [
        helper.make_node("Pad", ["X", "pads"], ["p"], mode=onnx_mode),
        helper.make_node("Conv", ["p", "W", "B"], ["c" if relu else "Y"], strides=[stride, stride]),
    ]
    act = {}
    if relu == "LeakyRelu":
        ort_nodes.append(helper.make_node("LeakyRelu", ["c"], ["Y"], alpha=0.2))
        act = dict(activation="leaky_relu", alpha=0.2)
    elif relu:
        ort_nodes.append(helper.make_node("Relu", ["c"], ["Y"]))
        act = dict(activation="relu")
    genrt_node = helper.make_node(
        "Conv", ["X", "W", "B"], ["Y"], domain="genrt", pads=list(pads), padding_mode=mode, threads=2, **act,
        **({"strides": [stride, stride]} if stride != 1 else {}),
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("genrt", 1)]
    sessions = []
    for nodes, extra in (([genrt_node], []), (ort_nodes, [pads_init])):
        graph = helper.make_graph(nodes, "g", inputs, [y_info], inits + extra)
        opts = ort.SessionOptions()
        opts.register_custom_ops_library(lib)
        model = helper.make_model(graph, opset_imports=opsets)
        sessions.append(ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]))
    return sessions


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "pads, relu", [((1, 1, 1, 1), True), ((2, 0, 1, 2), False), ((0, 0, 0, 0), True), ((1, 1, 1, 1), "LeakyRelu")]
)
def test_ort_op_matches_ort_pad_conv(mode, pads, relu):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((20, 12, 3, 3)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    genrt_sess, ort_sess = _sessions(w, b, pads, mode, relu)
    for shape in ((1, 12, 16, 16), (2, 12, 9, 23)):  # the constant weights' transform is reused across calls
        x = rng.standard_normal(shape).astype(np.float32)
        (got,) = genrt_sess.run(None, {"X": x})
        (want,) = ort_sess.run(None, {"X": x})
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "cin, cout, k, stride, pads, relu",
    [
        (3, 32, 9, 1, (4, 4, 4, 4), False),  # the style network's first layer
        (32, 3, 9, 1, (4, 4, 4, 4), False),  # and its last
        (12, 20, 3, 2, (1, 1, 1, 1), True),  # its downsampling layers
        (5, 7, 4, 2, (1, 2, 0, 3), True),
        (6, 3, 5, 1, (2, 2, 2, 2), "LeakyRelu"),
    ],
)
def test_ort_op_direct_matches_ort_pad_conv(mode, cin, cout, k, stride, pads, relu):
    rng = np.random.default_rng(10)
    w = (rng.standard_normal((cout, cin, k, k)) / k).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    genrt_sess, ort_sess = _sessions(w, b, pads, mode, relu, stride=stride)
    for shape in ((1, cin, 16, 16), (2, cin, 9, 23)):  # the packed weights are reused across calls
        x = rng.standard_normal(shape).astype(np.float32)
        (got,) = genrt_sess.run(None, {"X": x})
        (want,) = ort_sess.run(None, {"X": x})
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_ort_op_weights_as_input_are_not_cached():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    genrt_sess, ort_sess = _sessions(w, b, (1, 1, 1, 1), "reflect", False, w_as_input=True)
    x = rng.standard_normal((1, 5, 11, 12)).astype(np.float32)
    for _ in range(3):  # a different W on every run: a stale transform would be caught
        w = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
        (got,) = genrt_sess.run(None, {"X": x, "W": w})
        (want,) = ort_sess.run(None, {"X": x, "W": w})
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_ort_op_reports_bad_input():
    rng = np.random.default_rng(9)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    genrt_sess, _ = _sessions(w, np.zeros(4, np.float32), (2, 2, 2, 2), "reflect", False)
    with pytest.raises(Exception, match="reflect padding"):
        genrt_sess.run(None, {"X": np.zeros((1, 3, 2, 2), np.float32)})
