"""The AMX tile loops (csrc/core/conv2d_amx.h, conv_transpose2d_amx.h) on the real instructions -- LDTILECFG,
TILELOADD, TDPBF16PS, TILESTORED, TILEZERO, TILERELEASE, assembled from genrt's own inline assembly -- run inside the
Bochs emulator (scripts/bochs_amx: CPU model sapphire_rapids), so every CI machine runs them whatever its CPU.

The test writes each case's inputs the way the kernels lay them out, re-derived here in numpy from the layouts'
descriptions (conv2d: PairRows, padded rows split into the stride's phases; conv_transpose2d: TransposedRows, input
rows with zero columns around and the column phases' taps; both as bfloat16 channel-pair words, weights as
[C_out / MT][pair block][kH][kW][MT][Kb] words), runs the tile loops over the whole image and compares the output
with a float64 reference on the bfloat16-rounded operands (:func:`genrt.reference.reference_conv2d`, torch's
conv_transpose2d; only float32's sums may differ: R 2^-24 sum |x w|, R the reduction length), and with genrt's own
kernel on emulated tiles (GENRT_CONV2D_BF16_ALGO / GENRT_CONV_TRANSPOSE_BF16_ALGO=amx). Skips where Bochs is not
built (``scripts/bochs_amx/build.sh``); .ci/run builds it and sets GENRT_REQUIRE_BOCHS, which turns the skip into
a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrt import kernels
from genrt.reference import reference_conv2d, round_bf16

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "scripts" / "bochs_amx" / "run.py"
sys.path.insert(0, str(RUN.parent))
import run as bochs_run  # noqa: E402  (scripts/bochs_amx/run.py: where the Bochs binary is)

if not bochs_run.BOCHS.exists():
    if os.environ.get("GENRT_REQUIRE_BOCHS"):  # .ci/run builds it
        raise RuntimeError(f"GENRT_REQUIRE_BOCHS is set but {bochs_run.BOCHS} is missing")
    pytestmark = pytest.mark.skip(reason=f"no Bochs with AMX at {bochs_run.BOCHS}: run scripts/bochs_amx/build.sh")
TILE = 16
U32 = 2.0**-24


def _bf16_words(a: np.ndarray) -> np.ndarray:
    """bfloat16 bits (round to nearest even) of float32 values, as uint32."""
    return (round_bf16(a.astype(np.float32)).view(np.uint32) >> 16).astype(np.uint32)


def _pairs(a: np.ndarray, axis: int) -> np.ndarray:
    """Words of channel pairs along `axis` (even channel in the low half), zero past the channels."""
    c = a.shape[axis]
    even = np.take(a, range(0, c, 2), axis=axis)
    odd = np.take(a, range(1, c, 2), axis=axis)
    if odd.shape[axis] < even.shape[axis]:
        pad = [(0, 0)] * a.ndim
        pad[axis] = (0, 1)
        odd = np.pad(odd, pad)
    return _bf16_words(even) | (_bf16_words(odd) << 16)


def _odd_lines(pairs: np.ndarray) -> np.ndarray:
    """Each pair's words flattened and padded to an odd number of 64-byte lines (conv2d_common.h's odd_lines)."""
    flat = pairs.reshape(pairs.shape[0], -1)
    lines = -(-flat.shape[1] // 16) | 1
    return np.pad(flat, ((0, 0), (0, lines * 16 - flat.shape[1])))


def _layout(x, w, stride, pads):
    """(header defines, input words, weight words, off) as conv2d_amx_kernel.cpp builds them, for image 0."""
    _, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    sh, sw = stride
    top, left, bottom, right = pads
    ho, wo = (h + top + bottom - kh) // sh + 1, (wd + left + right - kw) // sw + 1
    c2 = (cin + 1) // 2
    kb = min(TILE, c2)
    kblocks = -(-c2 // kb)
    wph = -(-(-(-wo // TILE) * TILE + (kw - 1) // sw) // TILE) * TILE
    rows = (ho - 1) * sh + kh
    xp = np.pad(x[0], ((0, 2 * kblocks * kb - cin), (top, bottom), (left, right)))  # zeros past C_in
    xp = np.pad(xp, ((0, 0), (0, rows - xp.shape[1]), (0, max(0, sw * wph - xp.shape[2]))))[:, :rows, : sw * wph]
    phases = np.concatenate(
        [np.pad(xp[:, :, q::sw], ((0, 0), (0, 0), (0, wph - xp[:, :, q::sw].shape[2]))) for q in range(sw)], axis=2
    )  # fmt: skip  (C, rows, sw wph)
    buf = _odd_lines(_pairs(phases, 0))  # (kblocks kb, pair words)
    mt = min(TILE, cout)
    mtiles = -(-cout // mt)
    wpad = np.pad(w, ((0, mtiles * mt - cout), (0, 2 * kblocks * kb - cin), (0, 0), (0, 0)))
    u = _pairs(wpad, 1)  # (mtiles mt, kblocks kb, kh, kw)
    u = u.reshape(mtiles, mt, kblocks, kb, kh, kw).transpose(0, 2, 4, 5, 1, 3)
    off = np.array([(j % sw) * wph + j // sw for j in range(kw)], np.int64)
    defines = dict(
        COUT=cout, HO=ho, WO=wo, KH=kh, KW=kw, SH=sh, KB_PAIRS=kb, KBLOCKS=kblocks, MT=mt, MTILES=mtiles,
        ROW_WORDS=sw * wph, PAIR_WORDS=buf.shape[1],
    )  # fmt: skip
    return defines, np.ascontiguousarray(buf), np.ascontiguousarray(u), off


def _payload(name, defines, arrays, tmp_path):
    """Runs tests/amx_bochs/<name>_payload.cpp with case.h = defines and data.S = arrays; the output floats."""
    data = []
    for key, arr in arrays.items():
        (tmp_path / f"{key}.bin").write_bytes(np.ascontiguousarray(arr).tobytes())
        data += [".balign 64", f".globl case_{key}", f"case_{key}:", f'.incbin "{tmp_path / key}.bin"']
    (tmp_path / "data.S").write_text(".section .rodata\n" + "\n".join(data) + "\n")
    (tmp_path / "case.h").write_text("".join(f"#define CASE_{k} {v}\n" for k, v in defines.items()))
    payload = ROOT / "tests" / "amx_bochs" / f"{name}_payload.cpp"
    cmd = [sys.executable, str(RUN), str(payload), str(tmp_path / "data.S"),
           "-I", str(tmp_path), "-I", str(ROOT / "csrc" / "core"), "-D", "GENRT_ISA_NS=isa_amx",
           "-D", "GENRT_AMX_TILES=1", "-D", "GENRT_VEC_BYTES=64", "--timeout", "600"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    words = np.array([int(t, 16) for t in out.stdout.split()], np.uint32)
    return words.view(np.float32).reshape(defines["COUT"], defines["HO"], defines["WO"])


def run_in_bochs(x, w, b, stride, pads, relu, tmp_path):
    defines, buf, u, off = _layout(x, w, stride, pads)
    defines.update(RELU=int(relu), BIAS=int(b is not None))
    bias = b if b is not None else np.zeros(1, np.float32)
    return _payload("conv2d", defines, {"buf": buf, "u": u, "bias": bias.astype(np.float32), "off": off}, tmp_path)


CASES = [
    # cin, cout, (h, w), k, stride, pads, relu, bias
    (64, 48, (9, 37), (3, 3), (1, 1), (1, 1, 1, 1), True, True),  # a residual layer: 2 pair blocks, 3 weight tiles
    (3, 32, (12, 20), (9, 9), (1, 1), (4, 4, 4, 4), False, True),  # a first layer: K = 2 pairs
    (35, 17, (6, 33), (1, 1), (1, 1), (0, 0, 0, 0), False, False),  # padded pair block, a 1-channel weight tile
    (24, 7, (13, 31), (4, 4), (2, 2), (1, 1, 2, 2), True, True),  # stride 2: two phases; 7 output channels
    (5, 3, (7, 9), (3, 2), (3, 1), (1, 0, 1, 1), False, True),  # tiny, uneven strides
]


@pytest.mark.parametrize("cin, cout, hw, k, stride, pads, relu, bias", CASES)
def test_tile_loops_on_emulated_amx(tmp_path, monkeypatch, cin, cout, hw, k, stride, pads, relu, bias):
    rng = np.random.default_rng(cin * 100 + cout)
    x = rng.standard_normal((1, cin, *hw)).astype(np.float32)
    w = rng.standard_normal((cout, cin, *k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    y = run_in_bochs(x, w, b, stride, pads, relu, tmp_path)
    act = "relu" if relu else "none"
    rounded = reference_conv2d(x, w, b, stride=stride, padding=pads, precision="bf16", activation=act)[0]
    scale = reference_conv2d(np.abs(round_bf16(x)), np.abs(round_bf16(w)), stride=stride, padding=pads)[0]
    tol = (cin * k[0] * k[1] + 2) * U32 * scale + 2 * U32 * np.abs(rounded) + 1e-30
    assert y.shape == rounded.shape
    assert np.all(np.abs(y - rounded) <= tol), float(np.max(np.abs(y - rounded) - tol))
    monkeypatch.setenv("GENRT_CONV2D_BF16_ALGO", "amx")  # genrt's kernel on emulated tiles, same layout
    mine = kernels.conv2d(x, w, b, stride=stride, padding=pads, activation=act, precision="bf16")[0]
    assert np.all(np.abs(y - mine) <= 2 * tol), float(np.max(np.abs(y - mine) - 2 * tol))


def _transposed_layout(x, w, stride, padding, output_padding, dilation):
    """(defines, arrays) as conv_transpose2d_amx_kernel.cpp builds them for image 0, every input row held."""
    _, cin, h, wd = x.shape
    _, cout, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    c2 = (cin + 1) // 2
    kb = min(TILE, c2)
    kblocks = -(-c2 // kb)
    J = [-(-(wo - q) // sw) if q < wo else 0 for q in range(sw)]
    taps = [[(k, (q + pw - k * dw) // sw) for k in range(kw) if (q + pw - k * dw) % sw == 0] for q in range(sw)]
    offsets = [o for t in taps for _, o in t]
    lp, hi = -min([0, *offsets]), max([0, *offsets])
    wb = -(-max(lp + J[0] + hi + 2 * TILE, lp + wd) // TILE) * TILE
    rows = np.zeros((2 * kblocks * kb, h, wb), np.float32)
    rows[:cin, :, lp : lp + wd] = x[0]
    mt = min(TILE, cout)
    mtiles = -(-cout // mt)
    wpad = np.pad(w.transpose(1, 0, 2, 3), ((0, mtiles * mt - cout), (0, 2 * kblocks * kb - cin), (0, 0), (0, 0)))
    u = _pairs(wpad, 1).reshape(mtiles, mt, kblocks, kb, kh, kw).transpose(0, 2, 4, 5, 1, 3)
    most = max(1, max(len(t) for t in taps))
    off = np.zeros((sw, most), np.int64)
    kws = np.zeros((sw, most), np.int64)
    for q, t in enumerate(taps):
        for s, (k, o) in enumerate(t):
            kws[q, s], off[q, s] = k, o + lp
    defines = dict(
        COUT=cout, HO=ho, WO=wo, KH=kh, KW=kw, SW=sw, SH=sh, PH=ph, DH=dh, H=h, KB_PAIRS=kb, KBLOCKS=kblocks,
        MT=mt, MTILES=mtiles, WB=wb, PAIR_WORDS=_odd_lines(rows[:1]).shape[1], MAXTAPS=most,
    )  # fmt: skip
    counts = np.array([len(t) for t in taps], np.int64)
    arrays = {
        "buf": _odd_lines(_pairs(rows, 0)),
        "u": u,
        "off": off,
        "kw": kws,
        "n": counts,
        "J": np.array(J, np.int64),
    }
    return defines, arrays


TRANSPOSED = [
    # cin, cout, (h, w), k, stride, padding, output_padding, dilation
    (64, 32, (6, 21), 3, 2, 1, 1, 1),  # an upsampling layer (both phases interleaved; odd W_out), 2 pair blocks
    (35, 40, (5, 9), 4, 2, 1, 0, 1),  # DCGAN-like: a padded pair block, three weight tiles
    (8, 16, (3, 40), 3, 1, 1, 0, 1),  # stride 1: two tiles of one phase
    (6, 5, (4, 23), 5, 3, 1, 2, 1),  # stride 3: three phases stored at stride 3
    (4, 9, (5, 9), 3, 2, 2, 1, 2),  # dilation
]


@pytest.mark.parametrize("cin, cout, hw, k, stride, padding, output_padding, dilation", TRANSPOSED)
def test_transposed_tile_loops_on_emulated_amx(tmp_path, monkeypatch, cin, cout, hw, k, stride, padding,
                                               output_padding, dilation):  # fmt: skip
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(cin * 100 + cout)
    x = rng.standard_normal((1, cin, *hw)).astype(np.float32)
    w = rng.standard_normal((cin, cout, k, k)).astype(np.float32)
    b, scale, shift = (rng.standard_normal(cout).astype(np.float32) for _ in range(3))
    geo = dict(stride=(stride,) * 2, padding=(padding,) * 2, output_padding=(output_padding,) * 2,
               dilation=(dilation,) * 2)  # fmt: skip
    defines, arrays = _transposed_layout(x, w, **geo)
    defines.update(BIAS=1, AFFINE=1, ACT=3)  # tanh
    arrays.update(bias=b, scale=scale, shift=shift)
    y = _payload("conv_transpose2d", defines, arrays, tmp_path)

    def ct(a, v):
        t = torch.nn.functional.conv_transpose2d(torch.from_numpy(a.astype(np.float64)),
                                                 torch.from_numpy(v.astype(np.float64)), **geo)  # fmt: skip
        return t.numpy()[0]

    sums = ct(round_bf16(x), round_bf16(w))
    want = np.tanh((sums + b[:, None, None]) * scale[:, None, None] + shift[:, None, None])
    bound = ct(np.abs(round_bf16(x)), np.abs(round_bf16(w))) * np.abs(scale)[:, None, None]
    tol = (cin * k * k + 2) * U32 * bound + 8 * U32 * (np.abs(want) + np.abs(b * scale)[:, None, None]) + 1e-30
    assert y.shape == want.shape
    assert np.all(np.abs(y - want) <= tol), float(np.max(np.abs(y - want) - tol))
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE_BF16_ALGO", "amx")  # genrt's kernel on emulated tiles, same layout
    mine = kernels.conv_transpose2d(x, w, b, scale=scale, shift=shift, activation="tanh", precision="bf16", **geo)[0]
    assert np.all(np.abs(y - mine) <= 2 * tol), float(np.max(np.abs(y - mine) - 2 * tol))


def test_amx_detection_on_emulated_sapphire_rapids():
    """genrt's CPUID and XCR0 check (csrc/core/amx_cpuid.h) says yes on an AMX CPU with the tile state enabled, and
    no once XCR0 drops it (Linux's permission request, the last step, needs a real kernel: not checked here)."""
    cmd = [
        sys.executable,
        str(RUN),
        str(ROOT / "tests" / "amx_bochs" / "cpuid_payload.cpp"),
        "-I",
        str(ROOT / "csrc" / "core"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert out.stdout.split() == ["enabled", "1", "disabled", "0"], out.stdout
