"""python benchmarks/bench_mbd.py [--threads 2] [--max-baseline-gb 8] [--quick] [--isa avx512|avx2|baseline]

Question: how much faster, and how much leaner, is genrt's minibatch discrimination than what a PyTorch user
would write, the broadcasting formula `exp(-(M[:, None] - M[None]).abs().sum(-1)).sum(1) - 1`?

Both run in this process on the same inputs and threads: forward, and backward (autograd through the formula vs
genrt's backward kernel, each given the same output gradient). Prints medians, the ratio and the extra peak
resident memory of each. Baseline runs whose broadcast would not fit in --max-baseline-gb are skipped.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _util import fmt_bytes, machine, median_time, peak_extra_bytes  # noqa: E402

import genrt  # noqa: E402
from genrt.ops import minibatch_discrimination, minibatch_discrimination_backward  # noqa: E402

CASES = [(64, 100, 5), (256, 100, 5), (512, 100, 5), (1024, 100, 5), (2048, 100, 5),
         (64, 300, 50), (256, 300, 50), (1024, 300, 50)]  # fmt: skip


def broadcast_formula(M):
    return torch.exp(-(M[:, None] - M[None]).abs().sum(-1)).sum(1) - 1


def baseline_backward(M, g):
    M = M.detach().requires_grad_()
    broadcast_formula(M).backward(g)
    return M.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-baseline-gb", type=float, default=8.0, help="skip baselines needing more memory")
    parser.add_argument("--quick", action="store_true", help="only N <= 512 with B=100, C=5 (about 20 s)")
    parser.add_argument("--isa", help="run genrt's kernels with this instruction set (default: the best)")
    args = parser.parse_args()
    if args.isa:
        genrt._C.set_isa(args.isa)
    cases = [c for c in CASES if c[0] <= 512 and c[1:] == (100, 5)] if args.quick else CASES
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"machine: {machine()}; threads: {args.threads}; genrt {genrt.__version__} isa={genrt.kernels.cpu_isa()}; "
        f"torch {torch.__version__}"
    )
    header = (
        f"{'N':>5} {'B':>4} {'C':>3} | {'pass':>8} | {'torch ms':>9} {'genrt ms':>9} {'speedup':>8} | "
        f"{'torch peak':>11} {'genrt peak':>11}"
    )
    print(header)
    print("-" * len(header))
    for N, B, C in cases:
        M = torch.randn(N, B, C)
        g = torch.randn(N, B)
        broadcast_bytes = 4 * N * N * B * C
        # Autograd keeps the broadcast difference and its abs alive: about 3x for the backward pass.
        for name, ours, theirs, factor in [
            ("forward", partial(minibatch_discrimination, M), partial(broadcast_formula, M), 2),
            ("backward", partial(minibatch_discrimination_backward, M, g), partial(baseline_backward, M, g), 3),
        ]:
            t_ours = median_time(ours, repeats=7, min_time=0.3)
            peak_ours = peak_extra_bytes(ours)
            if factor * broadcast_bytes <= args.max_baseline_gb * 2**30:
                t_theirs = median_time(theirs, repeats=3 if broadcast_bytes > 2**28 else 7, min_time=0.3)
                peak_theirs = peak_extra_bytes(theirs)
                cols = f"{t_theirs * 1e3:9.2f} {t_ours * 1e3:9.2f} {t_theirs / t_ours:7.1f}x"
            else:
                peak_theirs = None
                cols = f"{'skipped':>9} {t_ours * 1e3:9.2f} {'':>8}"
            theirs_mem = (
                fmt_bytes(peak_theirs) if peak_theirs is not None else f"~{fmt_bytes(factor * broadcast_bytes)}*"
            )
            print(
                f"{N:5d} {B:4d} {C:3d} | {name:>8} | {cols} | {theirs_mem:>11} {fmt_bytes(peak_ours):>11}", flush=True
            )
    print("* not run: estimated from the size of the (N, N, B, C) broadcast")


if __name__ == "__main__":
    main()
