"""genrt.kernels.conv_transpose2d(precision="bf16"): bfloat16 operands (rounded to nearest, ties to even), products
summed in float32, on every instruction set this machine has (the VDPBF16PS path at ``avx512bf16``, the emulated one
elsewhere) and with each algorithm (``algo``: the default choice, and the AMX tile kernel, on emulated tiles below
the ``amx`` level; tests/test_amx_bochs.py runs its tile loops on the instructions), against torch's float64
conv_transpose2d:

- on the rounded operands (:func:`genrt.reference.round_bf16`, itself checked against torch's conversion in
  test_conv2d_bf16.py): the products are then exact and only the float32 sums differ, by at most R 2^-24 sum|x w|
  for a reduction of length R = C_in kH kW (every output reads at most that many products);
- on the float32 operands: bfloat16's 8-bit significand moves each operand by at most 2^-8 of itself;
- the epilogue (bias, scale, shift, activation) is float32's, applied to the sums.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrt import kernels
from genrt._native import _C
from genrt.errors import ArgumentError
from genrt.reference import round_bf16

torch = pytest.importorskip("torch")
F = torch.nn.functional
U32 = 2.0**-24  # float32's unit roundoff
U16 = 2.0**-8  # bfloat16's
ACTS = {"none": lambda v: v, "relu": F.relu, "leaky_relu": lambda v: F.leaky_relu(v, 0.2), "tanh": torch.tanh,
        "sigmoid": torch.sigmoid}  # fmt: skip


@pytest.fixture(params=["auto", "amx"])
def algo(request, monkeypatch):
    """GENRT_CONV_TRANSPOSE_BF16_ALGO: the default choice, and the AMX tile kernel."""
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE_BF16_ALGO", request.param)
    return request.param


def _ct(x, w, **kw):
    return F.conv_transpose2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)), **kw)


def check(x, w, b=None, scale=None, shift=None, activation="none", **kw):
    """y against the rounded-operand reference (float32 sums' bound) and the exact one (bfloat16's bound), both
    through the same epilogue; returns y."""
    y = kernels.conv_transpose2d(x, w, b, scale=scale, shift=shift, activation=activation,
                                 negative_slope=0.2, precision="bf16", **kw)  # fmt: skip
    geo = {k: v for k, v in kw.items() if k != "threads"}
    rounded, exact = _ct(round_bf16(x), round_bf16(w), **geo), _ct(x, w, **geo)
    bound = _ct(np.abs(round_bf16(x)), np.abs(round_bf16(w)), **geo)  # sum |x| |w| per output
    R = w.shape[0] * w.shape[2] * w.shape[3]
    assert y.dtype == np.float32 and y.shape == tuple(exact.shape)

    def epilogue(v):
        if b is not None:
            v = v + torch.from_numpy(b.astype(np.float64))[:, None, None]
        if scale is not None:
            v = v * torch.from_numpy(scale.astype(np.float64))[:, None, None]
        if shift is not None:
            v = v + torch.from_numpy(shift.astype(np.float64))[:, None, None]
        return ACTS[activation](v).numpy()

    # every activation here is 1-Lipschitz, so an error in the sums passes through scaled by |scale| at most
    gain = 1.0 if scale is None else np.abs(scale).astype(np.float64)[:, None, None]
    tol_sum = (R + 2) * U32 * bound.numpy() * gain
    want = epilogue(rounded)
    tol = tol_sum + 8 * U32 * (np.abs(want) + (0 if b is None else np.abs(b)[:, None, None]) * gain + 1e-30)
    assert np.all(np.abs(y - want) <= tol), float(np.max(np.abs(y - want) - tol))
    tol_exact = (2 * U16 + U16**2) * bound.numpy() * gain + tol
    want = epilogue(exact)
    assert np.all(np.abs(y - want) <= tol_exact), float(np.max(np.abs(y - want) - tol_exact))
    return y


@st.composite
def configs(draw):
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, dh * (kh - 1))), draw(st.integers(0, dw * (kw - 1)))
    oph, opw = draw(st.integers(0, max(sh, dh) - 1)), draw(st.integers(0, max(sw, dw) - 1))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 45))
    if (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph < 0 or (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw < 0:
        ph = pw = 0  # an empty output: keep the padding that still gives one
    return dict(
        n=draw(st.integers(1, 2)), cin=draw(st.integers(1, 19)), cout=draw(st.integers(1, 19)), h=h, w=w,
        k=(kh, kw), stride=(sh, sw), dilation=(dh, dw), padding=(ph, pw), output_padding=(oph, opw),
        act=draw(st.sampled_from(sorted(ACTS))), bias=draw(st.booleans()), affine=draw(st.booleans()),
        seed=draw(st.integers(0, 99)),
    )  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=configs())
def test_matches_reference_on_many_shapes(isa, algo, c):
    rng = np.random.default_rng(c["seed"])
    x = rng.standard_normal((c["n"], c["cin"], c["h"], c["w"])).astype(np.float32)
    w = rng.standard_normal((c["cin"], c["cout"], *c["k"])).astype(np.float32)
    vec = lambda: rng.standard_normal(c["cout"]).astype(np.float32)  # noqa: E731
    check(
        x, w, vec() if c["bias"] else None, *((vec(), vec()) if c["affine"] else (None, None)), activation=c["act"],
        stride=c["stride"], padding=c["padding"], output_padding=c["output_padding"], dilation=c["dilation"],
    )  # fmt: skip


@pytest.mark.parametrize(
    "shape, k, stride, padding, output_padding",
    [
        ((1, 1, 1, 1), 1, 1, 0, 0),  # size 1 everywhere
        ((1, 3, 1, 1), 4, 2, 1, 0),  # a 1x1 image
        ((1, 1, 5, 300), 3, 2, 1, 1),  # one input channel (an odd one, paired with zeros), a wide row
        ((2, 5, 17, 17), 3, 2, 1, 1),  # odd channels, odd size: the two column phases differ in length
        ((1, 64, 24, 40), 3, 2, 1, 1),  # an upsampling layer of sr-x4 and the style networks
        ((2, 32, 8, 8), 4, 2, 1, 0),  # DCGAN's
        ((1, 16, 9, 11), 9, 3, 3, 0),  # FSRCNN's x3 (one phase per tile, stored at stride 3)
        ((1, 7, 6, 6), 3, 1, 1, 0),  # stride 1
    ],
)
@pytest.mark.parametrize("cout", [1, 3, 4, 8, 13])
def test_edge_shapes(isa, algo, shape, k, stride, padding, output_padding, cout):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((shape[1], cout, k, k)).astype(np.float32)
    check(x, w, rng.standard_normal(cout).astype(np.float32), activation="relu", stride=stride, padding=padding,
          output_padding=output_padding)  # fmt: skip


@pytest.mark.parametrize(
    "cin, cout, hw, k, stride, dilation",
    [
        (35, 17, (5, 21), 3, 2, 1),  # two pair blocks (the second mostly zero); a 1-channel weight tile; odd W_out
        (64, 40, (4, 20), 4, 2, 1),  # three weight tiles: a pair and a single
        (8, 16, (3, 40), 3, 1, 1),  # stride 1: two tiles of one phase (J > 16)
        (6, 5, (4, 23), 5, 3, 1),  # stride 3: three phases stored at stride 3, 8 j each
        (4, 9, (5, 9), 3, 2, 2),  # dilation
    ],
)
def test_amx_tile_blocking(isa, monkeypatch, cin, cout, hw, k, stride, dilation):
    """The tile kernel's edge cases (pair blocks, partial tiles, phases, the interleaved store) against torch."""
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE_BF16_ALGO", "amx")
    rng = np.random.default_rng(cin + cout)
    x = rng.standard_normal((2, cin, *hw)).astype(np.float32)
    w = rng.standard_normal((cin, cout, k, k)).astype(np.float32)
    vec = lambda: rng.standard_normal(cout).astype(np.float32)  # noqa: E731
    check(x, w, vec(), vec(), vec(), activation="tanh", stride=stride, padding=1, output_padding=stride - 1,
          dilation=dilation)  # fmt: skip


def test_unknown_algorithm_is_refused(monkeypatch):
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE_BF16_ALGO", "fft")
    with pytest.raises(ArgumentError, match="GENRT_CONV_TRANSPOSE_BF16_ALGO"):
        kernels.conv_transpose2d(np.ones((1, 2, 4, 4), np.float32), np.ones((2, 2, 3, 3), np.float32),
                                 precision="bf16")  # fmt: skip


def test_packed_weights_are_reused_and_threads_agree():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 12, 20, 33)).astype(np.float32)
    w = rng.standard_normal((12, 10, 3, 3)).astype(np.float32)
    conv = kernels.PackedConvTranspose2d(w, stride=2, padding=1, output_padding=1, precision="bf16")
    one = conv(x, threads=1)
    assert conv.packed_bytes > 0
    np.testing.assert_array_equal(conv(x, threads=2), one)  # each output's sum has one order whatever the threads
    np.testing.assert_array_equal(one, check(x, w, stride=2, padding=1, output_padding=1, threads=1))


def test_empty_batch_and_bad_arguments():
    w = np.ones((3, 4, 3, 3), np.float32)
    y = kernels.conv_transpose2d(np.ones((0, 3, 8, 8), np.float32), w, stride=2, padding=1, precision="bf16")
    assert y.shape == (0, 4, 15, 15)
    with pytest.raises(ArgumentError, match="precision"):
        kernels.conv_transpose2d(np.ones((1, 3, 8, 8), np.float32), w, precision="fp8")
    with pytest.raises(ArgumentError, match="bf16 takes float32"):
        kernels.conv_transpose2d(np.ones((1, 3, 8, 8)), w.astype(np.float64), precision="bf16")
    with pytest.raises(ArgumentError, match="groups 1"):
        kernels.conv_transpose2d(np.ones((1, 4, 8, 8), np.float32), np.ones((4, 2, 3, 3), np.float32), groups=2,
                                 precision="bf16")  # fmt: skip
    with pytest.raises(ArgumentError, match="16 rows"):
        kernels.conv_transpose2d(np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 17, 3), np.float32),
                                 precision="bf16")  # fmt: skip


def test_nan_and_inf_propagate(isa, algo):
    x = np.ones((1, 2, 10, 10), np.float32)
    x[0, 1, 1, 1] = np.nan
    x[0, 0, 8, 8] = np.inf
    y = kernels.conv_transpose2d(x, np.ones((2, 2, 3, 3), np.float32), stride=2, padding=1, precision="bf16")
    assert np.isnan(y[0, :, 2, 2]).all() and not np.isfinite(y[0, :, 16, 16]).any()
    assert np.isfinite(y[0, :, :4, 12:]).all()  # far from both


def test_every_isa_gives_the_same_rounding():
    """The packing and rounding are shared code: every instruction set gives the reference's rounded result up to
    float32 summation order, and the VDPBF16PS path is checked where the CPU has it."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 19, 37)).astype(np.float32)
    w = rng.standard_normal((7, 11, 3, 3)).astype(np.float32)
    before = _C.active_isa()
    outs = {}
    try:
        for isa in _C.available_isas():
            _C.set_isa(isa)
            outs[isa] = check(x, w, stride=2, padding=1, output_padding=1)
    finally:
        _C.set_isa(before)
    bound = _ct(np.abs(round_bf16(x)), np.abs(round_bf16(w)), stride=2, padding=1, output_padding=1).numpy()
    for isa, y in outs.items():
        assert np.all(np.abs(y - outs["baseline"]) <= 2 * (7 * 9 + 2) * U32 * bound + 1e-30), isa
    if "avx512bf16" not in outs:
        pytest.skip("this CPU has no AVX512-BF16: the VDPBF16PS path did not run here (the emulated path did)")


def test_bf16_is_faithful_to_float32_on_a_real_layer():
    """An upsampling layer with natural-scale data: relative error about 2^-9, PSNR far above the 45 dB the
    runtime's fidelity check asks of a whole network."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((1, 64, 32, 32)), 0).astype(np.float32)
    w = (rng.standard_normal((64, 32, 3, 3)) * np.sqrt(2 / (64 * 9))).astype(np.float32)
    y = kernels.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, precision="bf16")
    ref = _ct(x, w, stride=2, padding=1, output_padding=1).numpy()
    psnr = 10 * np.log10((ref.max() - ref.min()) ** 2 / np.mean((y - ref) ** 2))
    assert 50 < psnr < 80, psnr


def test_amx_tiles_on_this_cpu(amx_tiles):
    """At the amx level the default bf16 transposed convolution runs on the CPU's own tiles: checked here where the
    CPU has AMX, and said so where it has not (emulated tiles above, real encodings under Bochs elsewhere)."""
    rng = np.random.default_rng(6)
    for k, stride in [(3, 2), (4, 2), (5, 3)]:
        x = rng.standard_normal((2, 40, 9, 21)).astype(np.float32)
        w = rng.standard_normal((40, 33, k, k)).astype(np.float32)
        vec = lambda: rng.standard_normal(33).astype(np.float32)  # noqa: E731
        check(x, w, vec(), vec(), vec(), activation="leaky_relu", stride=stride, padding=1,
              output_padding=stride - 1)  # fmt: skip
