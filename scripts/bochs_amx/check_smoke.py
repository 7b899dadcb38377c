#!/usr/bin/env python3
"""Run amx_smoke.c in Bochs and check it against numpy; then check that a
multi-MiB payload image is loaded intact.   python scripts/bochs_amx/check_smoke.py"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUN = [sys.executable, str(HERE / "run.py")]


def lcg_bf16(count, state=1):
    out = np.empty(count, np.uint16)
    for i in range(count):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        r = state >> 40
        out[i] = ((r & 1) << 15) | ((123 + ((r >> 1) & 7)) << 7) | ((r >> 4) & 0x7F)
    return out


def bf16_to_f64(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def hex_to_f32(h):
    return np.array([int(h, 16)], np.uint32).view(np.float32)[0]


def check_close(name, got, a, b):
    """got ~ sum(a*b) over the last axis: float64 reference, error budget of
    one float32 rounding per accumulated term."""
    exact = (a * b).sum(-1)
    budget = (a.shape[-1] + 1) * 2.0**-24 * np.abs(a * b).sum(-1)
    err = np.abs(got.astype(np.float64) - exact)
    worst = float((err / budget).max())
    print(f"{name}: {got.size} values, max |err|/budget = {worst:.3f}")
    assert (err <= budget).all(), f"{name}: mismatch at {np.argwhere(err > budget)[:5].tolist()}"


def smoke():
    out = subprocess.run(RUN + [str(HERE / "amx_smoke.c")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    v = np.array(lcg_bf16(16 * 32 + 32 * 16))
    A = bf16_to_f64(v[:512]).reshape(16, 32)  # A[m][k]
    B = bf16_to_f64(v[512:]).reshape(32, 16)  # B[k][n]
    amx = np.zeros((16, 16), np.float32)
    dp = np.zeros(16, np.float32)
    daz = None
    for line in out.stdout.splitlines():
        f = line.split()
        if f and f[0] == "amx":
            amx[int(f[1]), int(f[2])] = hex_to_f32(f[3])
        elif f and f[0] == "dp":
            dp[int(f[1])] = hex_to_f32(f[2])
        elif f and f[0] == "daz":
            daz = (int(f[1], 16), int(f[2], 16))
    check_close("TDPBF16PS 16x32x16", amx, A[:, None, :], B.T[None, :, :])
    # VDPBF16PS: lane j accumulates A[t][2j+i] * B[2t+i][j] for t < 4, i < 2
    a = np.stack([A[:4, 0::2], A[:4, 1::2]], -1).transpose(1, 0, 2).reshape(16, 8)
    b = np.stack([B[0:8:2, :], B[1:8:2, :]], -1).transpose(1, 0, 2).reshape(16, 8)
    check_close("VDPBF16PS x4", dp, a, b)
    # Informational: Bochs' TDPBF16PS order (bochs/cpu/avx/amx.cc) is two float32
    # FMA chains over k (even / odd bf16 of each pair), then even + odd. Products
    # of bf16 are exact and the sums here are exact in float64, so rounding each
    # step to float32 reproduces the FMA chain bit for bit.
    even = np.zeros((16, 16), np.float32)
    odd = np.zeros((16, 16), np.float32)
    for k in range(16):
        even = (even + np.outer(A[:, 2 * k], B[2 * k])).astype(np.float32)
        odd = (odd + np.outer(A[:, 2 * k + 1], B[2 * k + 1])).astype(np.float32)
    same = int(((even + odd) == amx).sum())
    print(f"TDPBF16PS bit-identical to the emulated Bochs order: {same}/256")
    assert daz == (0, 0), f"denormal bf16 inputs not treated as zero: {daz}"
    print("denormal bf16 input (2^-133 * 2^100): 0 for both, i.e. DAZ")


def big_image(mib=12):
    """A payload whose .rodata holds `mib` MiB of random bytes (several 8 MiB
    optramimage pieces); the payload hashes it and prints the FNV-1a value."""
    data = np.random.default_rng(0).integers(0, 256, mib << 20, np.uint8).tobytes()
    h = 0xCBF29CE484222325
    for x in np.frombuffer(data, np.uint64)[::4096].tolist():  # 1 word per 32 KiB
        h = ((h ^ x) * 0x100000001B3) % 2**64
    with tempfile.TemporaryDirectory() as d:
        Path(d, "blob.bin").write_bytes(data)
        Path(d, "blob.S").write_text(f'.section .rodata\n.p2align 6\n.globl blob\nblob: .incbin "{d}/blob.bin"\n')
        Path(d, "big.c").write_text(
            '#include "payload.h"\nextern const uint64_t blob[];\n'
            "void payload_main(void) {\n  uint64_t h = 0xcbf29ce484222325ull;\n"
            f"  for (unsigned long i = 0; i < {len(data) // 8}ul; i += 4096)\n"
            "    h = (h ^ blob[i]) * 0x100000001b3ull;\n"
            "  e9_puts(\"hash \"); e9_hex64(h); e9_putc('\\n');\n}\n"
        )
        out = subprocess.run(RUN + [f"{d}/big.c", f"{d}/blob.S"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == f"hash {h:016x}", (out.stdout, f"{h:016x}")
    print(f"{mib} MiB payload image: hash matches ({out.stderr.strip()})")


if __name__ == "__main__":
    smoke()
    big_image()
    print("all checks passed")
