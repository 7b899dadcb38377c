"""genrt's compiled kernels as plain numpy functions: no torch needed.

Threads: ``threads=None`` uses :func:`get_num_threads`, which defaults to the CPUs this process may run on and
follows ``GENRT_NUM_THREADS`` or :func:`set_num_threads`.
"""

from __future__ import annotations

import os

import numpy as np

from genrt._native import _C
from genrt.errors import ArgumentError, DTypeError

__all__ = [
    "PackedConvTranspose2d",
    "conv2d",
    "conv_transpose2d",
    "cpu_isa",
    "cuda_available",
    "cuda_device_count",
    "get_num_threads",
    "instance_norm",
    "minibatch_discrimination",
    "minibatch_discrimination_backward",
    "set_num_threads",
]

_num_threads: int | None = None
_MAX_THREADS = 4096


def get_num_threads() -> int:
    """Threads the kernels use when a call does not say."""
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("GENRT_NUM_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise ArgumentError(f"GENRT_NUM_THREADS: expected a positive integer, got {env!r}")
        return value
    return _C.hardware_threads()


def set_num_threads(threads: int) -> None:
    """Sets the default thread count of the kernels for this process."""
    global _num_threads
    _num_threads = _check_threads(threads)


def _check_threads(threads) -> int:
    if threads is None:
        return get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or not 1 <= threads <= _MAX_THREADS:
        raise ArgumentError(f"threads: expected a positive integer up to {_MAX_THREADS}, got {threads!r}")
    return int(threads)


def _cuda_module():
    """genrt._cuda, or None where this build has no CUDA kernels (no nvcc at build time, or GENRT_CUDA=0)."""
    try:
        from genrt import _cuda
    except ImportError:
        return None
    return _cuda


def cuda_device_count() -> int:
    """GPUs genrt's CUDA kernels can run on: 0 without a CUDA build, a driver or a device."""
    module = _cuda_module()
    return module.device_count() if module is not None else 0


def cuda_available() -> bool:
    """Whether genrt's CUDA kernels are built and a GPU is there to run them.

    False on a CPU-only install, and on a CUDA build running where there is no GPU (it still imports).
    """
    return cuda_device_count() > 0


def cuda_call(name: str, *args) -> None:
    """Calls genrt._cuda.<name>(*args), turning its errors into genrt errors (ArgumentError, RunError)."""
    from genrt.errors import RunError

    module = _cuda_module()
    if module is None:
        raise RunError(f"{name}: genrt was built without CUDA kernels (no nvcc at build time, or GENRT_CUDA=0)")
    try:
        getattr(module, name)(*args)
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    except RuntimeError as exc:
        raise RunError(str(exc)) from None


def cpu_isa() -> str:
    """The instruction set the kernels run with: 'amx' (AVX512-BF16 and Intel AMX tiles), 'avx512bf16' (AVX-512 and
    AVX512-BF16), 'avx512', 'avx2' or 'baseline' (SSE2 / NEON)."""
    return _C.active_isa()


def minibatch_discrimination(M: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Minibatch discrimination features (Salimans et al. 2016, section 3.2).

    ``o[i, b] = sum over j != i of exp(-||M[i, b, :] - M[j, b, :]||_1)``

    Args:
        M: ``ndarray[N, B, C]``, float32 or float64, any strides (no copy is made).
        threads: threads to use; default :func:`get_num_threads`.

    Returns:
        ``ndarray[N, B]`` of M's dtype. N == 1 gives zeros (no other sample).

    Raises:
        ShapeError: M is not 3-D, or C == 0.
        DTypeError: M is not a float32/float64 ndarray.
    """
    return _C.minibatch_discrimination_forward(M, _check_threads(threads))


def minibatch_discrimination_backward(
    M: np.ndarray, grad_out: np.ndarray, *, threads: int | None = None
) -> np.ndarray:
    """Gradient of :func:`minibatch_discrimination` with respect to M.

    Args:
        M: ``ndarray[N, B, C]``, float32 or float64.
        grad_out: ``ndarray[N, B]``, the gradient of the loss with respect to the output, M's dtype.

    Returns:
        ``ndarray[N, B, C]``: ``dM[i, b, c] = -sum_{j != i} (g[i, b] + g[j, b]) e_ij sign(M[i, b, c] - M[j, b, c])``
        with ``e_ij = exp(-||M[i, b] - M[j, b]||_1)`` and sign(0) = 0.
    """
    return _C.minibatch_discrimination_backward(M, grad_out, _check_threads(threads))


def instance_norm(
    x: np.ndarray,
    scale: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    *,
    residual: np.ndarray | None = None,
    epsilon: float = 1e-5,
    activation: str | None = "none",
    threads: int | None = None,
) -> np.ndarray:
    """Instance normalization (Ulyanov et al. 2016) with its affine, a residual and a relu in one pass per plane.

    ``y[n, c] = act((x[n, c] - mean[n, c]) / sqrt(var[n, c] + epsilon) * scale[n, c] + bias[n, c] + residual[n, c])``,
    mean and (population) variance over each H x W plane, as ONNX InstanceNormalization or torch's InstanceNorm2d.

    Args:
        x: ``ndarray[N, C, H, W]``, float32 or float64, any strides.
        scale: None (1), ``ndarray[C]`` per channel, or ``ndarray[N, C]`` per sample and channel (a conditional
            instance norm's, from a style vector); ``(1 | N, C, 1, 1)`` is accepted too. x's dtype.
        bias: like scale; None is 0.
        residual: None or ``ndarray[N, C, H, W]`` (x's shape and dtype, any strides: ``np.broadcast_to`` views
            too), added before the activation, as a residual block's skip connection.
        epsilon: added to the variance, >= 0.
        activation: None/"none" or "relu".
        threads: threads to use (they share the N x C planes); default :func:`get_num_threads`.

    Returns:
        A fresh C-contiguous ``ndarray[N, C, H, W]`` of x's dtype.

    Raises:
        ShapeError: x is not 4-D, scale or bias has neither C nor N x C values, or residual is not x's shape.
        ArgumentError: a negative or non-finite epsilon, a bad activation or threads.
        DTypeError: x, scale, bias or residual is not a float32/float64 ndarray, or the dtypes differ.
    """
    act = "none" if activation is None else activation
    if not isinstance(act, str) or act not in ("none", "relu"):
        raise ArgumentError(f"activation: expected None, 'none' or 'relu', got {activation!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | np.floating | np.integer):
        raise ArgumentError(f"epsilon: expected a float >= 0, got {epsilon!r}")
    return _C.instance_norm_forward(x, scale, bias, float(epsilon), act, _check_threads(threads), residual)


_ACTIVATIONS = ("none", "relu", "leaky_relu", "tanh", "sigmoid")


def _pair(value, name: str) -> list[int]:
    if isinstance(value, bool):
        raise ArgumentError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if isinstance(value, int | np.integer):
        return [int(value), int(value)]
    try:
        items = list(value)
    except TypeError:
        raise ArgumentError(f"{name}: expected an int or a pair of ints, got {value!r}") from None
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in items):
        raise ArgumentError(f"{name}: expected an int or a pair of ints, got {value!r}")
    return [int(items[0]), int(items[1])]


_PADDING_MODES = ("zeros", "reflect", "edge")


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride=1,
    padding=(0, 0, 0, 0),
    padding_mode: str = "zeros",
    activation: str | None = "none",
    negative_slope: float = 0.01,
    threads: int | None = None,
    precision: str = "f32",
) -> np.ndarray:
    """2-D convolution with the padding done in the kernel, as ONNX Pad(mode) + Conv or ``torch`` F.pad +
    F.conv2d, followed by ``+ bias`` and an optional relu or leaky relu. 3x3 stride 1 is computed with Winograd's
    F(4x4, 3x3), every other kernel size and stride as a direct implicit GEMM; ``precision="bf16"`` rounds x and w to
    bfloat16 (nearest even) and sums in float32: every shape as a direct implicit GEMM on Intel AMX tiles where the
    CPU has them (:func:`cpu_isa` ``"amx"``), elsewhere 3x3 stride 1 as Winograd's F(2x2, 3x3) (with the
    transformed operands rounded) and every other shape as a direct implicit GEMM, with VDPBF16PS where the CPU has
    AVX512-BF16 (``"avx512bf16"``) and the same rounding emulated in float32 elsewhere.
    ``GENRT_CONV2D_BF16_ALGO=winograd|direct|amx`` forces one (``amx`` below that level: emulated tiles, slow).

    ``H_out = (H + top + bottom - kH) // sh + 1``, ``W_out = (W + left + right - kW) // sw + 1``.

    Args:
        x: ``ndarray[N, C_in, H, W]``, float32 or float64, any strides.
        w: ``ndarray[C_out, C_in, kH, kW]``, x's dtype, kH and kW in 1..16 (the layout of torch's Conv2d.weight;
            groups 1).
        bias: ``ndarray[C_out]`` or None.
        stride: an int or an (sh, sw) pair, each 1..8.
        padding: an int (all sides), an (h, w) pair, or (top, left, bottom, right); top and bottom 0..kH-1, left
            and right 0..kW-1.
        padding_mode: "zeros", "reflect" (mirror without repeating the edge; each pad smaller than its dimension)
            or "edge" (replicate; torch's "replicate" is accepted too).
        activation: None/"none", "relu" or "leaky_relu", applied after the bias.
        negative_slope: leaky_relu's slope for negative inputs (a finite number).
        threads: threads to use; default :func:`get_num_threads`.
        precision: "f32" (exact float32; float64 input stays float64) or "bf16" (float32 input only).

    Returns:
        A fresh C-contiguous ``ndarray[N, C_out, H_out, W_out]`` of x's dtype.

    Raises:
        ShapeError: wrong ranks, a kernel larger than 16x16, mismatched channels, a bias of the wrong length, an
            empty output.
        ArgumentError: bad stride, padding, padding_mode, activation, negative_slope, threads or precision.
        DTypeError: x or w is not a float32/float64 ndarray, or the dtypes differ.
    """
    pads, mode, act = _conv2d_args(padding, padding_mode, activation)
    slope = _negative_slope(negative_slope)
    threads = _check_threads(threads)
    stride = _conv2d_stride(stride)
    return _C.conv2d_forward(x, w, bias, pads, mode, act, threads, None, stride, _precision(precision), slope)


PRECISIONS = ("f32", "bf16")


def _precision(precision) -> str:
    if precision not in PRECISIONS:
        raise ArgumentError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _conv2d_stride(stride) -> list[int]:
    """conv2d's stride, checked for form (the kernel checks the range): [sh, sw]."""
    bad = ArgumentError(f"stride: expected an int or (sh, sw), got {stride!r}")
    if isinstance(stride, bool):
        raise bad
    if isinstance(stride, int | np.integer):
        return [int(stride)] * 2
    try:
        items = list(stride)
    except TypeError:
        raise bad from None
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in items):
        raise bad
    return [int(v) for v in items]


def _conv2d_args(padding, padding_mode, activation) -> tuple[list[int], str, str]:
    """conv2d's options, checked: padding as [top, left, bottom, right], the mode, the activation."""
    act = "none" if activation is None else activation
    if not isinstance(act, str) or act not in ("none", "relu", "leaky_relu"):
        raise ArgumentError(f"activation: expected None, 'none', 'relu' or 'leaky_relu', got {activation!r}")
    mode = {"replicate": "edge", "constant": "zeros"}.get(padding_mode, padding_mode)
    if not isinstance(mode, str) or mode not in _PADDING_MODES:
        raise ArgumentError(f"padding_mode: expected one of {', '.join(_PADDING_MODES)}, got {padding_mode!r}")
    bad = ArgumentError(f"padding: expected an int, (h, w) or (top, left, bottom, right), got {padding!r}")
    if isinstance(padding, bool):
        raise bad
    if isinstance(padding, int | np.integer):
        return [int(padding)] * 4, mode, act
    try:
        items = list(padding)
    except TypeError:
        raise bad from None
    if len(items) not in (2, 4) or any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in items):
        raise bad
    pads = [int(v) for v in items]
    return (pads * 2 if len(pads) == 2 else pads), mode, act


def conv_transpose2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    groups: int = 1,
    activation: str | None = None,
    negative_slope: float = 0.01,
    scale: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    threads: int | None = None,
    precision: str = "f32",
) -> np.ndarray:
    """Transposed 2-D convolution with a fused epilogue, as ``torch.nn.functional.conv_transpose2d`` / ONNX
    ConvTranspose followed by ``act((y + bias) * scale + shift)`` per output channel.
    ``precision="bf16"`` rounds x and w to bfloat16 (nearest even) and sums their products in float32, on Intel AMX
    tiles where the CPU has them (:func:`cpu_isa` ``"amx"``), with VDPBF16PS where it has AVX512-BF16
    (``"avx512bf16"``) and the same rounding emulated in float32 elsewhere (float32 input, groups 1, kernels up to
    16 rows high). ``GENRT_CONV_TRANSPOSE_BF16_ALGO=direct|amx`` forces one (``amx`` below that level: emulated
    tiles, slow).

    ``H_out = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kH - 1) + output_padding[0] + 1``, likewise
    ``W_out``.

    Args:
        x: ``ndarray[N, C_in, H, W]``, float32 or float64, any strides.
        w: ``ndarray[C_in, C_out // groups, kH, kW]``, x's dtype (the layout of torch's ConvTranspose2d.weight).
        bias: ``ndarray[C_out]`` or None.
        stride, padding, output_padding, dilation: an int or a (height, width) pair. stride and dilation must be
            positive, padding non-negative, output_padding smaller than max(stride, dilation) in each dimension.
        groups: divides C_in; C_out = groups * w.shape[1].
        activation: None/"none", "relu", "leaky_relu", "tanh" or "sigmoid", applied last.
        negative_slope: slope of leaky_relu for negative inputs.
        scale, shift: ``ndarray[C_out]`` or None: a folded BatchNorm, ``y * scale[c] + shift[c]`` after the bias.
        threads: threads to use; default :func:`get_num_threads`.
        precision: "f32" (exact float32; float64 input stays float64) or "bf16".

    Returns:
        A fresh C-contiguous ``ndarray[N, C_out, H_out, W_out]`` of x's dtype.

    Raises:
        ShapeError: wrong ranks, mismatched channels, bias/scale/shift of the wrong length, an empty output.
        ArgumentError: bad stride, padding, output_padding, dilation, groups, activation, threads or precision.
        DTypeError: x or w is not a float32/float64 ndarray, or the dtypes differ.
    """
    args = _conv_transpose2d_args(stride, padding, output_padding, dilation, groups, activation, negative_slope)
    threads = _check_threads(threads)
    return _C.conv_transpose2d_forward(x, w, bias, scale, shift, *args, threads, precision=_precision(precision))


def _negative_slope(negative_slope) -> float:
    try:
        return float(negative_slope)
    except (TypeError, ValueError):
        raise ArgumentError(f"negative_slope: expected a number, got {negative_slope!r}") from None


def _conv_transpose2d_args(stride, padding, output_padding, dilation, groups, activation, negative_slope) -> tuple:
    """conv_transpose2d's options, checked, in _C.conv_transpose2d_forward's order."""
    act = "none" if activation is None else activation
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise ArgumentError(f"activation: expected None or one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
    if isinstance(groups, bool) or not isinstance(groups, int | np.integer):
        raise ArgumentError(f"groups: expected a positive integer, got {groups!r}")
    slope = _negative_slope(negative_slope)
    pairs = [_pair(v, n) for v, n in ((stride, "stride"), (padding, "padding"), (output_padding, "output_padding"))]
    return (*pairs, _pair(dilation, "dilation"), int(groups), act, slope)


class PackedConvTranspose2d:
    """:func:`conv_transpose2d` with fixed weights, packed once and reused: the fast path for repeated inference.

    Takes :func:`conv_transpose2d`'s arguments except ``x`` and ``threads``, keeps read-only copies of ``w``,
    ``bias``, ``scale`` and ``shift``, and is then called with ``x`` alone. Where the kernel rearranges the weights
    for its inner loop (register-tile panels per output phase, or contiguous panels when few input pixels make the
    call a weight-streaming GEMM), the first call that needs a layout builds it and later calls reuse it, as ONNX
    Runtime does with a model's constant weights. Layouts depend on the path taken (which follows the number of
    input pixels) and the thread count, so a few may be kept; :attr:`packed_bytes` says how much memory they hold.
    Thread-safe.

    >>> conv = PackedConvTranspose2d(w, b, stride=2, padding=1, activation="relu")
    >>> y = conv(x)  # == conv_transpose2d(x, w, b, stride=2, padding=1, activation="relu")
    """

    def __init__(
        self,
        w: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        stride=1,
        padding=0,
        output_padding=0,
        dilation=1,
        groups: int = 1,
        activation: str | None = None,
        negative_slope: float = 0.01,
        scale: np.ndarray | None = None,
        shift: np.ndarray | None = None,
        precision: str = "f32",
    ):
        self._args = _conv_transpose2d_args(
            stride, padding, output_padding, dilation, groups, activation, negative_slope
        )
        self._precision = _precision(precision)
        self.weight, self.bias, self.scale, self.shift = (
            None if a is None else _frozen_copy(a, name)
            for a, name in ((w, "w"), (bias, "bias"), (scale, "scale"), (shift, "shift"))
        )
        self._cache = _C.WeightCache()

    def __call__(self, x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """``conv_transpose2d(x, w, bias, ...)`` with the options given at construction; same errors."""
        return _C.conv_transpose2d_forward(
            x,
            self.weight,
            self.bias,
            self.scale,
            self.shift,
            *self._args,
            _check_threads(threads),
            self._cache,
            precision=self._precision,
        )

    @property
    def packed_bytes(self) -> int:
        """Bytes held by the packed weight layouts built so far."""
        return self._cache.bytes


def _frozen_copy(a, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise DTypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise DTypeError(f"{name}: expected float32 or float64, got {a.dtype}")
    out = np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True)  # native byte order, C order
    out.flags.writeable = False
    return out
