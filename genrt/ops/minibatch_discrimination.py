"""Minibatch discrimination as the torch op ``genrt::minibatch_discrimination`` (Salimans et al. 2016).

CPU tensors run genrt's C++ kernel (threads: ``torch.get_num_threads()``); float16/bfloat16 are computed there in
float32 and cast back. CUDA tensors run genrt's CUDA kernel (csrc/cuda/minibatch_discrimination.cu: float32,
float16, bfloat16 and float64 stored as they are, summed in float32 or float64, O(N B) extra memory) on torch's
current stream. Other devices, and CUDA where genrt has no CUDA build, run :func:`_chunked_forward` /
:func:`_chunked_backward`, the same formula in torch over blocks of rows, so memory stays bounded there too.
"""

from __future__ import annotations

from genrt import kernels
from genrt._native import _C
from genrt._torch import torch
from genrt.errors import DTypeError, ShapeError
from genrt.ops import _cuda

_KERNEL_DTYPES = (torch.float32, torch.float64)
_UPCAST_DTYPES = (torch.float16, torch.bfloat16)
_CHUNK_BYTES = 64 << 20  # per block of rows in the device fallback


def _check_m(M: torch.Tensor) -> None:
    if not isinstance(M, torch.Tensor):
        raise DTypeError(f"M: expected a torch.Tensor, got {type(M).__name__}")
    if M.dim() != 3:
        raise ShapeError(f"M: expected a 3-D tensor of shape (N, B, C), got {M.dim()}-D with shape {tuple(M.shape)}")
    if not M.dtype.is_floating_point:
        raise DTypeError(f"M: expected a floating-point tensor (float32 or float64), got {M.dtype}")
    if M.shape[2] < 1:
        raise ShapeError(f"M: kernel dimension C (dim 2) must be >= 1, got shape {tuple(M.shape)}")


def _native_low_precision(M: torch.Tensor) -> bool:
    """float16/bfloat16 go to the kernel as they are (CUDA kernel: stored low, summed in float32)."""
    return M.device.type == "cuda" and _cuda.use_kernels()


def _rows_per_chunk(M: torch.Tensor) -> int:
    N, B, C = M.shape
    return max(1, _CHUNK_BYTES // max(1, N * B * C * M.element_size()))


def _chunked_forward(M: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """The formula in torch, `rows` samples at a time: (rows, N, B, C) at most ~64 MB by default."""
    N = M.shape[0]
    out = M.new_empty(M.shape[:2])
    step = rows or _rows_per_chunk(M)
    for i0 in range(0, N, step):
        i1 = min(N, i0 + step)
        e = torch.exp(-(M[i0:i1, None] - M[None]).abs().sum(-1))  # (rows, N, B)
        e[torch.arange(i1 - i0), torch.arange(i0, i1)] = 0  # drop the self term
        out[i0:i1] = e.sum(1)
    return out


def _chunked_backward(M: torch.Tensor, grad_out: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    N = M.shape[0]
    grad = torch.empty_like(M, memory_format=torch.contiguous_format)
    step = rows or _rows_per_chunk(M)
    for i0 in range(0, N, step):
        i1 = min(N, i0 + step)
        diff = M[i0:i1, None] - M[None]  # (rows, N, B, C)
        e = torch.exp(-diff.abs().sum(-1))  # (rows, N, B)
        e[torch.arange(i1 - i0), torch.arange(i0, i1)] = 0
        w = (grad_out[i0:i1, None] + grad_out[None]) * e  # (rows, N, B)
        grad[i0:i1] = -(w[..., None] * diff.sign()).sum(1)
    return grad


@torch.library.custom_op("genrt::minibatch_discrimination", mutates_args=())
def _mbd_op(M: torch.Tensor) -> torch.Tensor:
    if M.device.type != "cpu":
        return _chunked_forward(M)
    return torch.from_numpy(_C.minibatch_discrimination_forward(M.detach().numpy(), torch.get_num_threads()))


@_mbd_op.register_kernel("cuda")
def _(M):
    if not _cuda.supported(M):
        return _chunked_forward(M)
    M = M.contiguous()
    out = M.new_empty(M.shape[:2])
    if out.numel():
        N, B, C = M.shape
        with _cuda.on_device(M) as stream:
            kernels.cuda_call(
                "minibatch_discrimination_forward", M.data_ptr(), out.data_ptr(), N, B, C, _cuda.dtype_code(M), stream
            )
    return out


@_mbd_op.register_fake
def _(M):
    return M.new_empty(M.shape[:2])


@torch.library.custom_op("genrt::minibatch_discrimination_backward", mutates_args=())
def _mbd_backward_op(M: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    if M.device.type != "cpu":
        return _chunked_backward(M, grad_out)
    return torch.from_numpy(
        _C.minibatch_discrimination_backward(M.detach().numpy(), grad_out.detach().numpy(), torch.get_num_threads())
    )


@_mbd_backward_op.register_kernel("cuda")
def _(M, grad_out):
    if not _cuda.supported(M):
        return _chunked_backward(M, grad_out)
    M, grad_out = M.contiguous(), grad_out.to(M.dtype).contiguous()
    grad = torch.empty_like(M, memory_format=torch.contiguous_format)
    if grad.numel():
        N, B, C = M.shape
        with _cuda.on_device(M) as stream:
            kernels.cuda_call(
                "minibatch_discrimination_backward",
                M.data_ptr(),
                grad_out.data_ptr(),
                grad.data_ptr(),
                N,
                B,
                C,
                _cuda.dtype_code(M),
                stream,
            )
    return grad


@_mbd_backward_op.register_fake
def _(M, grad_out):
    return torch.empty_like(M, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    (M,) = inputs
    ctx.save_for_backward(M)


def _backward(ctx, grad):
    (M,) = ctx.saved_tensors
    return _mbd_backward_op(M, grad)


_mbd_op.register_autograd(_backward, setup_context=_setup_context)


def minibatch_discrimination(M: torch.Tensor) -> torch.Tensor:
    """Minibatch discrimination features (Salimans et al. 2016, section 3.2).

    ``o[i, b] = sum over j != i of exp(-||M[i, b, :] - M[j, b, :]||_1)``; the self term is excluded, as in the
    paper's released code. Differentiable; memory O(N B C), never the (N, N, B, C) broadcast.

    Args:
        M: ``Tensor[N, B, C]``, floating point (float16/bfloat16 are computed in float32), any strides.

    Returns:
        ``Tensor[N, B]`` of M's dtype.

    Raises:
        ShapeError: M is not 3-D, or C == 0.
        DTypeError: M is not a floating-point tensor.
    """
    _check_m(M)
    if M.dtype in _UPCAST_DTYPES and not _native_low_precision(M):
        return _mbd_op(M.float()).to(M.dtype)
    return _mbd_op(M)


def minibatch_discrimination_backward(M: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`minibatch_discrimination` with respect to M: ``Tensor[N, B, C]``."""
    _check_m(M)
    if grad_out.shape != M.shape[:2]:
        raise ShapeError(f"grad_out: expected shape {tuple(M.shape[:2])}, got {tuple(grad_out.shape)}")
    if M.dtype in _UPCAST_DTYPES and not _native_low_precision(M):
        return _mbd_backward_op(M.float(), grad_out.float()).to(M.dtype)
    return _mbd_backward_op(M, grad_out.to(M.dtype))
