"""python benchmarks/bench_conv2d_bf16.py [--threads 1] [--repeats 15] [--other | --fidelity]

genrt's bfloat16 convolution (``kernels.conv2d(precision="bf16")``: Winograd F(2x2, 3x3) for 3x3 stride 1) against
its float32 one (Winograd F(4x4, 3x3)) per layer, both with their weights transformed once (``_C.WeightCache``),
interleaved in one process, medians: the 3x3 layers of the style and super-resolution networks at the sizes they run
at. Prints milliseconds, the ratio, and the bfloat16 output's PSNR against float32. ``--other`` does the same for
the other layer shapes of those networks, on the direct bfloat16 kernel (9x9, stride 2, 3 output channels).

``--fidelity`` instead simulates, in float64 numpy, what rounding the transformed operands to bfloat16 costs each
Winograd variant F(m x m, 3x3) (m = 2, 3, 4, with several sets of interpolation points) on a 64-channel layer of
post-ReLU activations, against the exact convolution: the reason bfloat16 uses F(2x2) (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from genrt import kernels
from genrt._native import _C
from genrt.reference import round_bf16

LAYERS = [(64, 256), (64, 128), (128, 256), (128, 128), (128, 64), (32, 512)]  # (channels, height = width)
# (C_in, C_out, kernel, stride, padding mode, height = width): the other shapes, which take the direct bf16 kernel
# (--other): the style networks' 9x9 first and last layers and stride-2 layer, sr-x4's and Real-ESRGAN's last layers,
# and a 3x3 layer of Real-ESRGAN's dense blocks forced onto the direct kernel (GENRT_CONV2D_BF16_ALGO=direct).
OTHER = [
    (3, 32, 9, 1, "reflect", 512),
    (32, 64, 3, 2, "reflect", 512),
    (32, 3, 9, 1, "reflect", 512),
    (64, 3, 9, 1, "zeros", 512),
    (64, 3, 3, 1, "zeros", 512),
    (128, 32, 3, 1, "zeros", 128),
]


def _median_ms(fns, repeats):
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for f, ts in zip(fns, times, strict=True):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
    return [1e3 * float(np.median(t)) for t in times]


def speed(threads: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    print(f"isa={kernels.cpu_isa()} threads={threads}: 3x3 stride 1, padding 1 (zeros), batch 1")
    print(f"{'channels':>9}{'size':>6}{'f32 ms':>9}{'bf16 ms':>9}{'bf16 vs f32':>12}{'PSNR':>9}")
    for c, s in LAYERS:
        x = np.maximum(rng.standard_normal((1, c, s, s), dtype=np.float32), 0)
        w = (rng.standard_normal((c, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
        caches = {p: _C.WeightCache() for p in ("f32", "bf16")}

        def run(p, x=x, w=w, caches=caches):
            return _C.conv2d_forward(x, w, None, [1, 1, 1, 1], "zeros", "none", threads, caches[p], [1, 1], p)

        ref, out = run("f32"), run("bf16")
        psnr = 10 * np.log10(np.ptp(ref) ** 2 / np.mean((ref - out).astype(np.float64) ** 2))
        tf, tb = _median_ms([lambda: run("f32"), lambda: run("bf16")], repeats)
        print(f"{c:>9}{s:>6}{tf:>9.2f}{tb:>9.2f}{tf / tb:>11.2f}x{psnr:>7.1f}dB")


def other(threads: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    print(f"isa={kernels.cpu_isa()} threads={threads}: direct bf16 kernel, batch 1, padding k // 2")
    print(f"{'layer':>24}{'size':>6}{'f32 ms':>9}{'bf16 ms':>9}{'bf16 vs f32':>12}{'PSNR':>9}")
    os.environ["GENRT_CONV2D_BF16_ALGO"] = "direct"
    for cin, cout, k, s, mode, size in OTHER:
        x = np.maximum(rng.standard_normal((1, cin, size, size), dtype=np.float32), 0)
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (k * k * cin))).astype(np.float32)
        caches = {p: _C.WeightCache() for p in ("f32", "bf16")}
        pad = [k // 2] * 4

        def run(p, x=x, w=w, caches=caches, s=s, mode=mode, pad=pad):
            return _C.conv2d_forward(x, w, None, pad, mode, "none", threads, caches[p], [s, s], p)

        ref, out = run("f32"), run("bf16")
        psnr = 10 * np.log10(np.ptp(ref) ** 2 / np.mean((ref - out).astype(np.float64) ** 2))
        tf, tb = _median_ms([lambda: run("f32"), lambda: run("bf16")], repeats)
        name = f"{cin}->{cout} {k}x{k} s{s} {mode}"
        print(f"{name:>24}{size:>6}{tf:>9.2f}{tb:>9.2f}{tf / tb:>11.2f}x{psnr:>7.1f}dB")


def winograd_matrices(m: int, points: list[float]):
    """A^T (m x n), G (n x 3), B^T (n x n) of F(m, 3) from n - 1 finite points and infinity (Toom-Cook); B^T is
    solved for from the algorithm's identity, so any point set works."""
    n, r = m + 2, 3
    at, g = np.zeros((m, n)), np.zeros((n, r))
    for i, p in enumerate(points):
        f = np.prod([p - q for k, q in enumerate(points) if k != i])
        at[:, i] = [p**j for j in range(m)]
        g[i] = [p**j / f for j in range(r)]
    at[m - 1, n - 1] = g[n - 1, r - 1] = 1
    rows, rhs = [], []
    for j in range(m):
        for t in range(r):
            for s in range(n):
                row = np.zeros((n, n))
                row[:, s] = at[j] * g[:, t]
                rows.append(row.ravel())
                rhs.append(float(s == j + t))
    bt = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0].reshape(n, n)
    return at, g, bt


def fidelity() -> None:
    rng = np.random.default_rng(0)
    c, k, h = 64, 64, 48
    x = np.maximum(rng.standard_normal((c, h + 2, h + 2)), 0)
    w = rng.standard_normal((k, c, 3, 3)) * np.sqrt(2 / (c * 9))

    def direct(x, w):
        return sum(
            np.einsum("kc,chw->khw", w[:, :, i, j], x[:, i : i + h, j : j + h]) for i in range(3) for j in range(3)
        )

    exact = direct(x, w)

    def psnr(y):
        return 10 * np.log10(np.ptp(exact) ** 2 / np.mean((y - exact) ** 2))

    def bf16(a):
        return round_bf16(a.astype(np.float32)).astype(np.float64)

    print(f"PSNR against float64, {c} channels, {h}x{h}, operands rounded to bfloat16:")
    print(f"  direct: {psnr(direct(bf16(x), bf16(w))):.1f} dB")
    for m, sets in (
        (2, [[0, 1, -1]]),
        (3, [[0, 1, -1, 2], [0, 1, -1, 0.5]]),
        (4, [[0, 1, -1, 2, -2], [0, 1, -1, 0.5, -2]]),
    ):
        for points in sets:
            at, g, bt = winograd_matrices(m, points)
            n, t = m + 2, h // m
            u = bf16(np.einsum("ab,kcbd,ed->kcae", g, w, g))
            tiles = np.stack(
                [np.stack([x[:, i * m : i * m + n, j * m : j * m + n] for j in range(t)], 1) for i in range(t)], 1
            )
            v = bf16(np.einsum("ab,cijbd,ed->cijae", bt, tiles, bt))
            y = np.einsum("ra,kijae,se->kirjs", at, np.einsum("kcae,cijae->kijae", u, v), at).reshape(k, h, h)
            print(f"  F({m}x{m}, 3x3), points {points} and infinity: {psnr(y):.1f} dB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--fidelity", action="store_true", help="the Winograd variants' bfloat16 error, simulated")
    ap.add_argument("--other", action="store_true", help="the other layer shapes, on the direct bf16 kernel")
    args = ap.parse_args()
    if args.fidelity:
        fidelity()
    elif args.other:
        other(args.threads, args.repeats)
    else:
        speed(args.threads, args.repeats)


if __name__ == "__main__":
    main()
