"""genrt.kernels.conv2d(precision="bf16"): bfloat16 operands (rounded to nearest, ties to even), products summed in
float32, on every instruction set this machine has (the VDPBF16PS path at ``avx512bf16``, the emulated one
elsewhere) and with each algorithm (``algo``: the default choice, and the AMX tile kernel, which runs on emulated
tiles below the ``amx`` level), against plain references:

- numpy's :func:`genrt.reference.round_bf16`, checked against torch's own float32 -> bfloat16 conversion;
- direct paths (every shape but 3x3 stride 1; every shape on AMX tiles): :func:`genrt.reference.reference_conv2d`
  in float64, once on the rounded operands (then only the float32 sums differ: at most R 2^-24 sum|x w| for a
  reduction of length R = C_in kH kW), and once on the float32 operands (bfloat16's 8-bit significand: each
  operand within 2^-8 of itself, so each product within about 2^-7);
- Winograd F(2x2, 3x3) path (3x3 stride 1): :func:`winograd23` below, numpy's transforms in float64 with the
  transformed input and weights rounded to bfloat16, and the bound that rounding implies
  ((2u + u^2) |A^T| (sum_c |U| |V|) |A|, u = 2^-8), plus float32's sums; and the exact convolution within that
  bound plus the transforms' own effect on it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrt import kernels
from genrt._native import _C
from genrt.errors import ArgumentError
from genrt.reference import reference_conv2d, round_bf16

torch = pytest.importorskip("torch")
MODES = ["zeros", "reflect", "edge"]
U32 = 2.0**-24  # float32's unit roundoff
U16 = 2.0**-8  # bfloat16's (8 significant bits: rounding moves a value by at most 2^-8 of itself)


@pytest.fixture(params=["auto", "amx"])
def algo(request, monkeypatch):
    """GENRT_CONV2D_BF16_ALGO: the default choice, and the AMX tile kernel (emulated tiles below the amx level)."""
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", request.param)
    return request.param


def _winograd(w, stride):
    """Whether the kernel takes Winograd F(2x2): 3x3 stride 1 unless the AMX kernel or the direct one is chosen."""
    forced = os.environ.get("GENRT_CONV2D_BF16_ALGO", "auto")
    chosen = forced if forced != "auto" else ("amx" if _C.active_isa() == "amx" else "winograd")
    return w.shape[2:] == (3, 3) and stride in (1, (1, 1)) and chosen == "winograd"


def _bounds(x, w, **kw):
    """sum |x| |w| per output (the scale every error bound multiplies) and the reduction length R."""
    scale = reference_conv2d(np.abs(round_bf16(x)), np.abs(round_bf16(w)), **kw)
    return scale, w.shape[1] * w.shape[2] * w.shape[3]


_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)


def winograd23(x, w, padding, padding_mode):
    """(y, bound): F(2x2, 3x3) in float64 with V and U rounded to bfloat16, and per output the bound on what that
    rounding can change, (2u + u^2) |A^T| (sum_c |U| |V|) |A|, plus the float32 sums' (C 16 + 8) 2^-24 of it."""
    n, c, h, wd = x.shape
    top, left, bottom, right = padding
    mode = {"zeros": "constant", "reflect": "reflect", "edge": "edge"}[padding_mode]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)), mode=mode)
    ho, wo = xp.shape[2] - 2, xp.shape[3] - 2
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    xp = np.pad(xp, ((0, 0), (0, 0), (0, 2 * th + 2 - xp.shape[2]), (0, 2 * tw + 2 - xp.shape[3])))
    tiles = np.stack(
        [np.stack([xp[:, :, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4] for j in range(tw)], 2) for i in range(th)], 2
    )  # fmt: skip  (n, c, th, tw, 4, 4)
    v = round_bf16(np.einsum("ab,nctubd,ed->nctuae", _BT, tiles, _BT).astype(np.float32)).astype(np.float64)
    u = round_bf16(np.einsum("ab,kcbd,ed->kcae", _G, w.astype(np.float64), _G).astype(np.float32))
    u = u.astype(np.float64)
    m = np.einsum("kcae,nctuae->nktuae", u, v)
    m_abs = np.einsum("kcae,nctuae->nktuae", np.abs(u), np.abs(v))
    y = np.einsum("ra,nktuae,se->nktrus", _AT, m, _AT)
    scale = np.einsum("ra,nktuae,se->nktrus", np.abs(_AT), m_abs, np.abs(_AT))
    shape = (n, w.shape[0], 2 * th, 2 * tw)
    y, scale = y.reshape(shape)[:, :, :ho, :wo], scale.reshape(shape)[:, :, :ho, :wo]
    return y, (2 * U16 + U16**2 + (16 * c + 8) * U32) * scale


def check(x, w, b, threads=None, **kw):
    y = kernels.conv2d(x, w, b, precision="bf16", threads=threads, **kw)
    if _winograd(w, kw.get("stride", 1)):
        return check_winograd(y, x, w, b, **kw)
    act, slope = kw.pop("activation", "none"), kw.pop("negative_slope", 0.01)
    scale, R = _bounds(x, w, **kw)
    rounded = reference_conv2d(x, w, b, precision="bf16", activation=act, negative_slope=slope, **kw)
    exact = reference_conv2d(x, w, b, activation=act, negative_slope=slope, **kw)
    assert y.dtype == np.float32 and y.shape == exact.shape
    # the float32 sums of exact products: R u32 sum|xw| (plus the bias, and the output's own rounding)
    tol_sum = (R + 2) * U32 * scale + 2 * U32 * np.abs(rounded) + 1e-30
    assert np.all(np.abs(y - rounded) <= tol_sum), float(np.max(np.abs(y - rounded) - tol_sum))
    # against exact float32 operands: both operands rounded, each within u16 of itself
    tol_exact = (2 * U16 + U16**2) * scale + tol_sum
    assert np.all(np.abs(y - exact) <= tol_exact), float(np.max(np.abs(y - exact) - tol_exact))
    return y


def check_winograd(y, x, w, b, *, padding, padding_mode="zeros", activation="none", negative_slope=0.01, stride=1):
    pads = (padding,) * 4 if np.isscalar(padding) else tuple(padding)
    sim, bound = winograd23(x, w, pads, padding_mode)
    if b is not None:
        sim = sim + b[None, :, None, None]
    if activation == "relu":
        sim = np.maximum(sim, 0)
    if activation == "leaky_relu":  # a slope in [0, 1] keeps the bounds below
        sim = np.where(sim > 0, sim, sim * negative_slope)
    exact = reference_conv2d(
        x, w, b, padding=pads, padding_mode=padding_mode, activation=activation, negative_slope=negative_slope
    )
    assert y.dtype == np.float32 and y.shape == exact.shape
    # The kernel's float32 transforms may round a transformed value to the neighbouring bfloat16 of the reference's:
    # both lie within `bound` of the exact result, so within twice it of each other.
    tol = bound * 1.0001 + 2 * U32 * np.abs(sim) + 1e-30
    assert np.all(np.abs(y - exact) <= tol), float(np.max(np.abs(y - exact) - tol))
    assert np.all(np.abs(y - sim) <= 2 * tol), float(np.max(np.abs(y - sim) - 2 * tol))
    return y


def test_round_bf16_is_torchs_rounding():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            (rng.standard_normal(10000) * 10.0 ** rng.integers(-30, 30, 10000)).astype(np.float32),
            np.array(
                [0.0, -0.0, 1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-9, np.inf, -np.inf, 3.4e38, 1e-40], np.float32
            ),
            (np.arange(1 << 16, dtype=np.uint32) << 16 | 0x8000).view(np.float32),  # every tie
        ]
    )
    want = torch.from_numpy(values).to(torch.bfloat16).to(torch.float32).numpy()
    got = round_bf16(values)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), values[~same][:5]
    assert np.isnan(round_bf16(np.array([np.nan], np.float32)))[0]


@st.composite
def configs(draw):
    kh, kw = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    mode = draw(st.sampled_from(MODES))
    pads = [draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw)]
    lo_h = max(1, kh - pads[0] - pads[2], max(pads[0], pads[2]) + 1 if mode == "reflect" else 1)
    lo_w = max(1, kw - pads[1] - pads[3], max(pads[1], pads[3]) + 1 if mode == "reflect" else 1)
    return dict(
        n=draw(st.integers(1, 2)), cin=draw(st.integers(1, 19)), cout=draw(st.integers(1, 19)),
        h=draw(st.integers(lo_h, lo_h + 20)), w=draw(st.integers(lo_w, lo_w + 40)), k=(kh, kw), stride=(sh, sw),
        pads=tuple(pads), mode=mode, act=draw(st.sampled_from(["none", "relu", "leaky_relu"])),
        bias=draw(st.booleans()), seed=draw(st.integers(0, 99)),
    )  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=configs())
def test_matches_reference_on_many_shapes(isa, algo, c):
    rng = np.random.default_rng(c["seed"])
    x = rng.standard_normal((c["n"], c["cin"], c["h"], c["w"])).astype(np.float32)
    w = rng.standard_normal((c["cout"], c["cin"], *c["k"])).astype(np.float32)
    b = rng.standard_normal(c["cout"]).astype(np.float32) if c["bias"] else None
    check(
        x, w, b, stride=c["stride"], padding=c["pads"], padding_mode=c["mode"], activation=c["act"],
        negative_slope=0.2,  # Real-ESRGAN's
    )  # fmt: skip


@pytest.mark.parametrize(
    "shape, k, stride, pads",
    [
        ((1, 1, 1, 1), (1, 1), 1, (0, 0, 0, 0)),  # size 1 everywhere
        ((1, 3, 1, 1), (3, 3), 1, (1, 1, 1, 1)),  # a 1x1 image, all padding
        ((1, 1, 5, 300), (3, 3), 1, (1, 1, 1, 1)),  # one input channel (an odd one, paired with zeros)
        ((3, 5, 17, 17), (3, 3), 2, (1, 1, 1, 1)),  # odd channels, stride 2
        ((1, 3, 64, 64), (9, 9), 1, (4, 4, 4, 4)),  # a style network's first layer
        ((1, 128, 24, 40), (3, 3), 1, (1, 1, 1, 1)),  # its residual layers
    ],
)
@pytest.mark.parametrize("cout", [1, 3, 8, 13])
def test_edge_shapes(isa, algo, shape, k, stride, pads, cout):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((cout, shape[1], *k)).astype(np.float32)
    check(x, w, rng.standard_normal(cout).astype(np.float32), stride=stride, padding=pads, padding_mode="reflect"
          if min(shape[2:]) > max(pads) else "zeros")  # fmt: skip


def test_empty_batch_and_bad_arguments():
    w = np.ones((4, 3, 3, 3), np.float32)
    assert kernels.conv2d(np.ones((0, 3, 8, 8), np.float32), w, padding=1, precision="bf16").shape == (0, 4, 8, 8)
    with pytest.raises(ArgumentError, match="precision"):
        kernels.conv2d(np.ones((1, 3, 8, 8), np.float32), w, precision="fp8")
    with pytest.raises(ArgumentError, match="bf16 takes float32"):
        kernels.conv2d(np.ones((1, 3, 8, 8)), w.astype(np.float64), precision="bf16")


@pytest.mark.parametrize("k", [3, 5])  # Winograd (where inf - inf makes NaN, as in float32's) and direct
def test_nan_and_inf_propagate(isa, algo, k):
    x = np.ones((1, 2, 10, 10), np.float32)
    x[0, 1, 1, 1] = np.nan
    x[0, 0, 8, 8] = np.inf
    y = kernels.conv2d(x, np.ones((2, 2, k, k), np.float32), padding=k // 2, precision="bf16")
    assert np.isnan(y[0, :, 1, 1]).all() and not np.isfinite(y[0, :, 8, 8]).any()
    assert np.isfinite(y[0, :, :2, 6:]).all()  # far from both


@pytest.mark.parametrize(
    "cin, cout, width, k, stride",
    [
        (35, 17, 33, (3, 3), 1),  # 18 pairs: two pair blocks, the second mostly zero; 17 channels: a 1-row tile
        (64, 40, 16, (3, 3), 1),  # three weight tiles: a pair and a single; exactly one pixel tile
        (32, 16, 17, (1, 1), 1),  # one pair block exactly; 17 pixels: a full tile and a 1-pixel one
        (3, 32, 40, (9, 9), 1),  # a style network's first layer: 2 pairs, so K = 2
        (48, 64, 31, (4, 4), 2),  # stride 2 across phases
        (2, 3, 5, (2, 3), 3),  # tiny everything
        # stride 1 with a small side: the forms that fold the column taps into the tiles
        (3, 40, 37, (9, 9), 1),  # taps in K: K = 9 word-shifted rows per pair, 2 pairs (the odd one half zero)
        (5, 20, 19, (3, 4), 1),  # taps in K with kW > kH, 3 pairs; two weight tiles, the second of 4 channels
        (32, 3, 45, (9, 9), 1),  # taps in M: 27 rows of (channel, tap), 2 weight tiles; 45 pixels: the row's tail
        (64, 3, 33, (3, 3), 1),  # taps in M, 9 rows, 2 pair blocks (Real-ESRGAN's last layer)
        (40, 7, 16, (1, 5), 1),  # taps in M, 35 rows: 3 weight tiles, the third partly zero
    ],
)
def test_amx_tile_blocking(isa, monkeypatch, cin, cout, width, k, stride):
    """The tile kernel's edge cases (pair blocks, partial weight and pixel tiles, phases) against the reference."""
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", "amx")
    rng = np.random.default_rng(cin + cout + width)
    x = rng.standard_normal((2, cin, 11, width)).astype(np.float32)
    w = rng.standard_normal((cout, cin, *k)).astype(np.float32)
    pads = (k[0] // 2, k[1] // 2, (k[0] - 1) // 2, (k[1] - 1) // 2)
    check(x, w, rng.standard_normal(cout).astype(np.float32), stride=stride, padding=pads, activation="relu")


@pytest.mark.parametrize(
    "cin, height, width, threads",
    [
        (96, 48, 300, 1),  # 3 pair blocks, one per chunk; 10 pixel blocks a row: passes of 3 rows, tasks of 6
        (80, 11, 70, 2),  # 3 pair blocks, the last half zero; 3 pixel blocks, the last 6 pixels
    ],
)
def test_amx_pair_block_chunks(isa, monkeypatch, cin, height, width, threads):
    """Pair blocks in L1-sized chunks (run_rows: a 3x3 tile pair's weights for one block of 16 pairs at a time),
    the partial sums kept in memory between chunks, the rows in passes: against the reference, with a residual layer's
    relu and bias."""
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", "amx")
    rng = np.random.default_rng(cin + width)
    x = rng.standard_normal((1, cin, height, width)).astype(np.float32)
    w = rng.standard_normal((40, cin, 3, 3)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    y = check(x, w, b, padding=(1, 1, 1, 1), activation="relu", threads=threads)
    # in one chunk the tiles sum the same products in the same order: the partial sums' round trip through memory is
    # exact
    monkeypatch.setenv("GENRT_AMX_CHUNKS", "off")
    one = kernels.conv2d(x, w, b, precision="bf16", padding=(1, 1, 1, 1), activation="relu", threads=threads)
    np.testing.assert_array_equal(one, y)


def test_unknown_algorithm_is_refused(monkeypatch):
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", "fft")
    with pytest.raises(ArgumentError, match="GENRT_CONV2D_BF16_ALGO"):
        kernels.conv2d(np.ones((1, 2, 4, 4), np.float32), np.ones((2, 2, 3, 3), np.float32), precision="bf16")


@pytest.mark.parametrize("algorithm", ["winograd", "direct", "amx"])
def test_every_isa_gives_the_same_rounding(monkeypatch, algorithm):
    """The packing and rounding are shared code: with the algorithm fixed, every instruction set gives the same
    result up to float32 summation order, and the VDPBF16PS and tile paths are checked where the CPU has them."""
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", algorithm)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 19, 37)).astype(np.float32)
    w = rng.standard_normal((11, 7, 3, 3)).astype(np.float32)
    before = _C.active_isa()
    outs = {}
    try:
        for isa in _C.available_isas():
            _C.set_isa(isa)
            outs[isa] = check(x, w, None, padding=(1, 1, 1, 1), padding_mode="reflect")
    finally:
        _C.set_isa(before)
    scale, R = _bounds(x, w, padding=(1, 1, 1, 1), padding_mode="reflect")
    for isa, y in outs.items():
        assert np.all(np.abs(y - outs["baseline"]) <= 2 * (R + 2) * U32 * scale + 1e-30), isa
    native = {"winograd": "avx512bf16", "direct": "avx512bf16", "amx": "amx"}[algorithm]
    if native not in outs:
        pytest.skip(f"this CPU has no {native}: the {algorithm} kernel ran emulated only, not on its instructions")


def test_bf16_is_faithful_to_float32_on_a_real_layer():
    """On a style network's 3x3 residual layer with natural-scale data the relative error is about 2^-9: PSNR far
    above the 45 dB the runtime's fidelity check asks of a whole network."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((1, 64, 32, 32)), 0).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * np.sqrt(2 / (64 * 9))).astype(np.float32)
    y = kernels.conv2d(x, w, padding=1, padding_mode="reflect", precision="bf16")
    ref = reference_conv2d(x, w, padding=(1, 1, 1, 1), padding_mode="reflect")
    psnr = 10 * np.log10((ref.max() - ref.min()) ** 2 / np.mean((y - ref) ** 2))
    assert 50 < psnr < 80, psnr  # not float32-exact (it is bfloat16), not far off either


def test_amx_tiles_on_this_cpu(amx_tiles):
    """At the amx level the default bf16 convolution runs on the CPU's own tiles (every shape): checked here where
    the CPU has AMX, and said so where it has not (the tile kernel then runs emulated in the tests above and on the
    real instruction encodings under Bochs, tests/test_amx_bochs.py)."""
    rng = np.random.default_rng(5)
    for k, stride in [(3, 1), (9, 1), (3, 2)]:
        x = rng.standard_normal((2, 40, 23, 37)).astype(np.float32)
        w = rng.standard_normal((33, 40, k, k)).astype(np.float32)
        b = rng.standard_normal(33).astype(np.float32)
        check(x, w, b, stride=stride, padding=(k // 2,) * 4, activation="relu")
