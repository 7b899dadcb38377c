"""What genrt's torch ops need to call the CUDA launchers: device guard, current stream, dtype codes.

The kernels run on the tensor's device and torch's current stream there, so they order with the rest of the
caller's CUDA work and with CUDA graphs' capture like any torch op. Where genrt has no CUDA build or sees no GPU,
:func:`use_kernels` is False and the ops fall back to torch.
"""

from __future__ import annotations

import contextlib
import functools

from genrt import kernels
from genrt._torch import torch

_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}


@functools.cache
def use_kernels() -> bool:
    """genrt's CUDA kernels are built and see a GPU (decided once per process)."""
    return kernels.cuda_available()


def dtype_code(t: torch.Tensor) -> int:
    return _CODES[t.dtype]


def supported(*tensors) -> bool:
    return use_kernels() and all(t.dtype in _CODES for t in tensors)


@contextlib.contextmanager
def on_device(t: torch.Tensor):
    """Yields the raw handle of torch's current stream on t's device, with that device current."""
    with torch.cuda.device(t.device):
        yield torch.cuda.current_stream(t.device).cuda_stream


def ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def allow_tf32() -> bool:
    """Whether float32 transposed convolutions may use TF32, by torch's own setting for convolutions."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    precision = getattr(conv, "fp32_precision", None)
    if precision is not None:
        return precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)
