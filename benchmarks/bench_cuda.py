"""genrt's CUDA kernels against torch on the same GPU: CUDA events, medians, peak memory; markdown tables.

    python benchmarks/bench_cuda.py --out results/   # writes cuda.md and cuda.json there

1. Minibatch discrimination, N = 1024 and 4096, B = 100, C = 5, forward and forward+backward: genrt's kernel
   against the broadcasting formula in torch (the (N, N, B, C) tensor), time and peak memory.
2. Transposed convolution on the DCGAN-64 layers (batch 64 and 256) and the Johnson / super-resolution upsampling
   layers, float32 (IEEE) and float16: genrt's kernel against torch (cuDNN), each with bias + ReLU applied -- fused
   in genrt's epilogue, as separate ops in torch.
Needs a GPU and a CUDA build of genrt; exits with a message otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from genrt import kernels
from genrt.ops import _cuda as ops_cuda
from genrt.ops import minibatch_discrimination


def cuda_ms(fn, repeats: int = 20) -> float:
    """Median milliseconds of fn() by CUDA events, after warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def peak_mib(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def broadcast_formula(M):
    return torch.exp(-(M[:, None] - M[None]).abs().sum(-1)).sum(1) - 1


def bench_mbd(rows: list) -> None:
    for n in (1024, 4096):
        M = torch.randn(n, 100, 5, device="cuda", requires_grad=True)
        g = torch.randn(n, 100, device="cuda")
        for label, f in (("genrt", minibatch_discrimination), ("torch broadcast", broadcast_formula)):
            rows.append({"table": "mbd", "N": n, "impl": label, **_mbd_times(f, M, g)})


def _mbd_times(f, M, g) -> dict:
    def forward():
        f(M.detach())

    def forward_backward():
        torch.autograd.grad(f(M), M, g)

    try:
        return {
            "fwd_ms": cuda_ms(forward),
            "fwd_bwd_ms": cuda_ms(forward_backward),
            "peak_MiB": peak_mib(forward_backward),
        }
    except torch.OutOfMemoryError:
        return {"fwd_ms": float("nan"), "fwd_bwd_ms": float("nan"), "peak_MiB": float("nan")}


LAYERS = [  # name, C_in, H, C_out, k, stride, padding, output_padding
    ("DCGAN-64 1 (4x4 -> 8x8)", 512, 4, 256, 4, 2, 1, 0),
    ("DCGAN-64 2 (8 -> 16)", 256, 8, 128, 4, 2, 1, 0),
    ("DCGAN-64 3 (16 -> 32)", 128, 16, 64, 4, 2, 1, 0),
    ("DCGAN-64 4 (32 -> 64)", 64, 32, 3, 4, 2, 1, 0),
    ("Johnson up 1 (64 -> 128)", 128, 64, 64, 3, 2, 1, 1),
    ("Johnson up 2 (128 -> 256)", 64, 128, 32, 3, 2, 1, 1),
]


def bench_conv_transpose(rows: list) -> None:
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    for layer in LAYERS:
        for batch in (64, 256) if layer[0].startswith("DCGAN") else (4,):
            for dtype in (torch.float32, torch.float16):
                ms_g, ms_t = _conv_times(layer, batch, dtype)
                rows.append(
                    {"table": "conv_transpose", "layer": layer[0], "batch": batch, "dtype": str(dtype)[6:],
                     "genrt_ms": ms_g, "torch_ms": ms_t, "torch/genrt": ms_t / ms_g}
                )  # fmt: skip


def _conv_times(layer, batch: int, dtype) -> tuple[float, float]:
    """(genrt ms with bias + ReLU fused, torch ms of cuDNN's transposed convolution + bias, then relu_)."""
    _, cin, h, cout, k, s, p, op = layer
    x = torch.randn(batch, cin, h, h, device="cuda", dtype=dtype)
    w = torch.randn(cin, cout, k, k, device="cuda", dtype=dtype) / (cin * k) ** 0.5
    b = torch.randn(cout, device="cuda", dtype=dtype)
    ho = (h - 1) * s - 2 * p + k + op
    y = torch.empty(batch, cout, ho, ho, device="cuda", dtype=dtype)

    def genrt_fused():
        with ops_cuda.on_device(x) as stream:
            kernels.cuda_call(
                "conv_transpose2d_forward",
                *(x.data_ptr(), w.data_ptr(), b.data_ptr(), 0, 0, y.data_ptr()),
                *((batch, cin, h, h), cout, k, k, ho, ho, (s, s), (p, p), (1, 1), 1, 1, 0.0),
                *(ops_cuda.dtype_code(x), False, stream),
            )

    def torch_cudnn():
        torch.relu_(torch.nn.functional.conv_transpose2d(x, w, b, s, p, op))

    return cuda_ms(genrt_fused), cuda_ms(torch_cudnn)


def markdown(rows: list) -> str:
    lines = [f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}", ""]
    lines += ["| N | impl | forward ms | forward+backward ms | peak MiB |", "|--:|---|--:|--:|--:|"]
    for r in rows:
        if r["table"] == "mbd":
            lines.append(
                f"| {r['N']} | {r['impl']} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} | {r['peak_MiB']:.1f} |"
            )
    lines += ["", "| layer | batch | dtype | genrt ms (fused bias+ReLU) | torch ms (cuDNN + relu) | torch/genrt |"]
    lines += ["|---|--:|---|--:|--:|--:|"]
    for r in rows:
        if r["table"] == "conv_transpose":
            lines.append(
                f"| {r['layer']} | {r['batch']} | {r['dtype']} | {r['genrt_ms']:.3f} | {r['torch_ms']:.3f} "
                f"| {r['torch/genrt']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    if not (torch.cuda.is_available() and kernels.cuda_available()):
        print("bench_cuda: needs a GPU and a CUDA build of genrt", file=sys.stderr)
        return 2
    rows: list = []
    bench_mbd(rows)
    bench_conv_transpose(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cuda.json").write_text(json.dumps(rows, indent=1))
    text = markdown(rows)
    (args.out / "cuda.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
