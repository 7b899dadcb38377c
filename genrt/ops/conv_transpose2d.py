"""Transposed convolution as the torch op ``genrt::conv_transpose2d``, with the arguments of
``torch.nn.functional.conv_transpose2d``.

CPU float32/float64 tensors run genrt's C++ kernel (threads: ``torch.get_num_threads()``); float16/bfloat16
are computed in float32. CUDA tensors run genrt's CUDA kernel (csrc/cuda/conv_transpose2d.cu: float16/bfloat16
on tensor cores, float32 in TF32 only where torch allows it for convolutions, float64) on torch's current stream;
other devices, and CUDA where genrt has no CUDA build, use torch's own kernel. Gradients (input, weight, bias)
come from torch's ``convolution_backward``, the same formulas torch uses for its own transposed convolution.
"""

from __future__ import annotations

from collections.abc import Sequence

from genrt import kernels
from genrt._torch import torch
from genrt.errors import DTypeError, ShapeError
from genrt.kernels import _pair
from genrt.ops import _cuda

_UPCAST_DTYPES = (torch.float16, torch.bfloat16)


def output_size(x_shape, w_shape, stride, padding, output_padding, dilation, groups) -> list[int]:
    """(N, C_out, H_out, W_out) of conv_transpose2d."""
    N, _, H, W = x_shape
    kH, kW = w_shape[2], w_shape[3]
    Ho = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kH - 1) + output_padding[0] + 1
    Wo = (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kW - 1) + output_padding[1] + 1
    return [N, w_shape[1] * groups, Ho, Wo]


@torch.library.custom_op("genrt::conv_transpose2d", mutates_args=())
def _op(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    groups: int,
    dilation: Sequence[int],
) -> torch.Tensor:
    if input.device.type != "cpu":
        return torch.nn.functional.conv_transpose2d(
            input, weight, bias, stride, padding, output_padding, groups, dilation
        )
    out = kernels.conv_transpose2d(
        input.detach().numpy(),
        weight.detach().numpy(),
        None if bias is None else bias.detach().numpy(),
        stride=tuple(stride),
        padding=tuple(padding),
        output_padding=tuple(output_padding),
        dilation=tuple(dilation),
        groups=groups,
        threads=torch.get_num_threads(),
    )
    return torch.from_numpy(out)


@_op.register_kernel("cuda")
def _(input, weight, bias, stride, padding, output_padding, groups, dilation):
    same = weight.dtype == input.dtype and (bias is None or bias.dtype == input.dtype)
    if not (same and _cuda.supported(input)):
        return torch.nn.functional.conv_transpose2d(
            input, weight, bias, stride, padding, output_padding, groups, dilation
        )
    x, w = input.contiguous(), weight.contiguous()
    b = None if bias is None else bias.contiguous()
    shape = output_size(x.shape, w.shape, stride, padding, output_padding, dilation, groups)
    if w.shape[0] != x.shape[1] or min(shape) < 1 or (b is not None and tuple(b.shape) != (shape[1],)):
        raise ShapeError(
            f"conv_transpose2d: input {tuple(x.shape)}, weight {tuple(w.shape)} and bias "
            f"{None if b is None else tuple(b.shape)} do not fit (weight: (C_in, C_out/groups, kH, kW)), or the "
            f"output {tuple(shape)} would be empty"
        )
    y = x.new_empty(shape)
    if y.numel():
        with _cuda.on_device(x) as stream:
            kernels.cuda_call(
                "conv_transpose2d_forward",
                *(x.data_ptr(), w.data_ptr(), _cuda.ptr(b), 0, 0, y.data_ptr()),
                *(tuple(x.shape), shape[1], w.shape[2], w.shape[3], shape[2], shape[3]),
                *(tuple(stride), tuple(padding), tuple(dilation), groups, 0, 0.0),
                *(_cuda.dtype_code(x), input.dtype == torch.float32 and _cuda.allow_tf32(), stream),
            )
    return y


@_op.register_fake
def _(input, weight, bias, stride, padding, output_padding, groups, dilation):
    shape = output_size(input.shape, weight.shape, stride, padding, output_padding, dilation, groups)
    return input.new_empty(shape)


def _setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, output_padding, groups, dilation = inputs
    ctx.save_for_backward(input, weight)
    ctx.has_bias = bias is not None
    ctx.args = (list(stride), list(padding), list(dilation), list(output_padding), groups)


def _backward(ctx, grad):
    input, weight = ctx.saved_tensors
    stride, padding, dilation, output_padding, groups = ctx.args
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    gi, gw, gb = torch.ops.aten.convolution_backward(
        grad.contiguous(),
        input,
        weight,
        [weight.shape[1] * groups] if ctx.has_bias else None,
        stride,
        padding,
        dilation,
        True,
        output_padding,
        groups,
        mask,
    )
    return gi, gw, gb, None, None, None, None, None


_op.register_autograd(_backward, setup_context=_setup_context)


def conv_transpose2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> torch.Tensor:
    """Drop-in for ``torch.nn.functional.conv_transpose2d`` running genrt's kernel.

    Args:
        input: ``Tensor[N, C_in, H, W]``.
        weight: ``Tensor[C_in, C_out // groups, kH, kW]``.
        bias: ``Tensor[C_out]`` or None.
        stride, padding, output_padding, dilation: int or (h, w).

    Returns:
        ``Tensor[N, C_out, H_out, W_out]`` with
        ``H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1``.
    """
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise DTypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if not t.dtype.is_floating_point:
            raise DTypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    if input.dim() != 4 or weight.dim() != 4:
        raise ShapeError(
            f"input and weight: expected 4-D (N, C_in, H, W) and (C_in, C_out/groups, kH, kW), "
            f"got shapes {tuple(input.shape)} and {tuple(weight.shape)}"
        )
    args = (
        _pair(stride, "stride"),
        _pair(padding, "padding"),
        _pair(output_padding, "output_padding"),
        int(groups),
        _pair(dilation, "dilation"),
    )
    if input.dtype in _UPCAST_DTYPES and input.device.type == "cpu":
        b = None if bias is None else bias.float()
        return _op(input.float(), weight.float(), b, *args).to(input.dtype)
    return _op(input, weight, bias, *args)
