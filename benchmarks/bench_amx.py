"""python benchmarks/bench_amx.py [--threads 2] [--repeats 15] [--allow-emulated] [--chunks]

Per layer, genrt's bfloat16 kernels on Intel AMX tiles (TDPBF16PS: conv2d_amx_kernel.cpp,
conv_transpose2d_amx_kernel.cpp) against its AVX512-BF16 ones (VDPBF16PS: Winograd F(2x2) for 3x3 stride 1, direct
otherwise) and its float32 ones, all in one process, interleaved, packed weights cached (``_C.WeightCache``),
medians: the convolutions and transposed convolutions of the style, super-resolution and DCGAN networks at the sizes
they run at. Prints milliseconds, AMX's ratio to each, and AMX's PSNR against float32.

The kernel is picked per call with GENRT_CONV2D_BF16_ALGO / GENRT_CONV_TRANSPOSE_BF16_ALGO. Below the ``amx`` level
(``genrt.kernels.cpu_isa()``) the tile kernel runs on emulated tiles, which is no speed measurement: the script
refuses unless ``--allow-emulated`` (to check that it runs).

``--chunks`` instead times the tile kernel's convolutions with their pair blocks in L1-sized chunks (the default,
conv2d_amx.h's run_rows) against all in one chunk (GENRT_AMX_CHUNKS=off), interleaved in one process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from genrt import kernels
from genrt._native import _C

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import cpu, interleaved_medians  # noqa: E402

# (name, C_in, C_out, kernel, stride, input side); transposed layers: padding 1, output_padding stride - 1
CONVS = [
    ("style first 9x9", 3, 32, 9, 1, 512),
    ("style last 9x9", 32, 3, 9, 1, 512),
    ("sr-x4 first 9x9", 3, 64, 9, 1, 256),
    ("style down 3x3/2", 32, 64, 3, 2, 512),
    ("style residual 3x3", 128, 128, 3, 1, 128),
    ("sr-x4 body 3x3", 64, 64, 3, 1, 256),
    ("sr-x4 last 9x9", 64, 3, 9, 1, 1024),
    ("rrdb 3x3", 64, 32, 3, 1, 128),
    ("rrdb first 3x3", 3, 64, 3, 1, 128),
    ("rrdb last 3x3", 64, 3, 3, 1, 512),
]
TRANSPOSED = [
    ("style up 128->64", 128, 64, 3, 2, 128),
    ("style up 64->32", 64, 32, 3, 2, 256),
    ("sr-x4 up 64->64", 64, 64, 3, 2, 256),
    ("dcgan 512->256", 512, 256, 4, 2, 4),
    ("dcgan 128->64", 128, 64, 4, 2, 16),
]


def _psnr(ref, out):
    return 10 * np.log10(np.ptp(ref) ** 2 / max(np.mean((ref - out).astype(np.float64) ** 2), 1e-30))


def chunks(threads: int, repeats: int) -> None:
    """The AMX convolutions with pair blocks in chunks vs in one chunk."""
    rng = np.random.default_rng(0)
    print(f"{'layer':<22}{'1 chunk':>9}{'chunks':>9}{'ratio':>8}")
    for name, cin, cout, k, s, side in [*CONVS, ("rrdb 192->32 3x3", 192, 32, 3, 1, 128)]:
        x = np.maximum(rng.standard_normal((1, cin, side, side), dtype=np.float32), 0)
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (cin * k * k))).astype(np.float32)
        cache = _C.WeightCache()

        def run(setting, x=x, w=w, k=k, s=s, cache=cache):
            os.environ["GENRT_AMX_CHUNKS"] = setting
            return _C.conv2d_forward(x, w, None, [k // 2] * 4, "zeros", "none", threads, cache, [s, s], "bf16")

        os.environ["GENRT_CONV2D_BF16_ALGO"] = "amx"
        assert np.array_equal(run("off"), run("on"))  # the same sums, in the same order per output
        t = interleaved_medians({key: (lambda key=key: run(key)) for key in ("off", "on")}, repeats=repeats)
        print(f"{name:<22}{1e3 * t['off']:>9.3f}{1e3 * t['on']:>9.3f}{t['off'] / t['on']:>7.2f}x")
    del os.environ["GENRT_AMX_CHUNKS"], os.environ["GENRT_CONV2D_BF16_ALGO"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--allow-emulated", action="store_true")
    ap.add_argument("--chunks", action="store_true", help="pair blocks in chunks vs in one chunk")
    args = ap.parse_args()
    isa = kernels.cpu_isa()
    if isa != "amx" and not args.allow_emulated:
        sys.exit(
            f"cpu isa is {isa!r}, not 'amx': the tile kernels would run emulated (--allow-emulated to run anyway)"
        )
    if args.chunks:
        print(f"{cpu()}, isa={isa}, threads={args.threads}: AMX conv2d, pair blocks in chunks vs in one chunk (ms)")
        return chunks(args.threads, args.repeats)
    rng = np.random.default_rng(0)
    print(
        f"{cpu()}, isa={isa}, threads={args.threads}: genrt bf16 on AMX tiles vs genrt bf16 AVX512-BF16 vs genrt f32"
    )
    print(f"{'layer':<22}{'f32 ms':>9}{'avx ms':>9}{'amx ms':>9}{'vs f32':>8}{'vs avx':>8}{'PSNR':>8}")
    for transposed, layers in ((False, CONVS), (True, TRANSPOSED)):
        env = "GENRT_CONV_TRANSPOSE_BF16_ALGO" if transposed else "GENRT_CONV2D_BF16_ALGO"
        for name, cin, cout, k, s, side in layers:
            x = np.maximum(rng.standard_normal((1, cin, side, side), dtype=np.float32), 0)
            fan = cin * k * k
            if transposed:
                w = (rng.standard_normal((cin, cout, k, k)) * np.sqrt(2 / fan)).astype(np.float32)
            else:
                w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / fan)).astype(np.float32)
            caches = {key: _C.WeightCache() for key in ("f32", "avx", "amx")}

            def run(key, x=x, w=w, k=k, s=s, caches=caches, transposed=transposed, env=env):
                os.environ[env] = {"f32": "auto", "avx": "direct" if transposed else "winograd", "amx": "amx"}[key]
                p = "f32" if key == "f32" else "bf16"
                if transposed:
                    geo = dict(stride=[s, s], padding=[1, 1], output_padding=[s - 1] * 2)
                    return _C.conv_transpose2d_forward(
                        x, w, threads=args.threads, cache=caches[key], precision=p, **geo
                    )
                pad = [k // 2] * 4
                return _C.conv2d_forward(x, w, None, pad, "zeros", "none", args.threads, caches[key], [s, s], p)

            ref, amx = run("f32"), run("amx")
            t = interleaved_medians(
                {key: (lambda key=key: run(key)) for key in ("f32", "avx", "amx")}, repeats=args.repeats
            )
            tf, ta, tm = (1e3 * t[key] for key in ("f32", "avx", "amx"))
            print(f"{name:<22}{tf:>9.3f}{ta:>9.3f}{tm:>9.3f}{tf / tm:>7.2f}x{ta / tm:>7.2f}x{_psnr(ref, amx):>6.1f}dB")
            del os.environ[env]


if __name__ == "__main__":
    main()
