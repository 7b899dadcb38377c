"""Plain-numpy reference implementations of genrt's ops: the test oracles, written for clarity, not speed."""

from __future__ import annotations

import numpy as np


def reference_minibatch_discrimination(M: np.ndarray) -> np.ndarray:
    """``o[i, b] = sum_{j != i} exp(-||M[i, b] - M[j, b]||_1)`` in float64, one sample i at a time."""
    M = np.asarray(M, dtype=np.float64)
    N, B, _ = M.shape
    out = np.zeros((N, B))
    for i in range(N):
        e = np.exp(-np.abs(M[i][None] - M).sum(-1))  # (N, B)
        e[i] = 0.0
        out[i] = e.sum(0)
    return out


def reference_minibatch_discrimination_backward(M: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """Gradient of :func:`reference_minibatch_discrimination` with respect to M, in float64."""
    M = np.asarray(M, dtype=np.float64)
    g = np.asarray(grad_out, dtype=np.float64)
    N = M.shape[0]
    grad = np.zeros_like(M)
    for i in range(N):
        diff = M[i][None] - M  # (N, B, C)
        e = np.exp(-np.abs(diff).sum(-1))  # (N, B)
        e[i] = 0.0
        w = (g[i][None] + g) * e  # (N, B)
        grad[i] = -(w[..., None] * np.sign(diff)).sum(0)
    return grad


def reference_instance_norm(
    x: np.ndarray, scale=None, bias=None, *, residual=None, epsilon: float = 1e-5, activation: str | None = "none"
) -> np.ndarray:
    """Instance normalization in float64: each (n, c) plane of x (N, C, H, W) less its mean, over the square root of
    its population variance plus epsilon, times scale plus bias (None, (C,) or (N, C) values), plus residual (None
    or x's shape), then an optional relu."""
    x = np.asarray(x, dtype=np.float64)
    N, C = x.shape[:2]
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(2, 3), keepdims=True)
    y = (x - mean) / np.sqrt(var + epsilon)
    for value, apply in ((scale, np.multiply), (bias, np.add)):
        if value is not None:
            value = np.asarray(value, dtype=np.float64).reshape(-1, C)  # (1 | N, C)
            y = apply(y, value.reshape(value.shape[0], C, 1, 1))
    if residual is not None:
        y = y + np.asarray(residual, dtype=np.float64)
    return np.maximum(y, 0.0) if activation == "relu" else y


def round_bf16(a: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (8 significant bits) to nearest, ties to even, as float32: the upper 16
    bits of each float32 after adding 0x7fff plus the lowest kept bit; a NaN stays a NaN."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = np.where(nan, (u | 0x400000) >> 16 << 16, rounded)
    return rounded.astype(np.uint32).view(np.float32).reshape(np.shape(a))


def reference_conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride=1,
    padding=(0, 0, 0, 0),
    padding_mode: str = "zeros",
    activation: str = "none",
    precision: str = "f32",
    negative_slope: float = 0.01,
) -> np.ndarray:
    """:func:`genrt.kernels.conv2d` in float64: numpy's pad (its "reflect" and "edge" are ONNX Pad's), then the
    kH x kW correlation as kH kW shifted (strided) matrix products. padding is (top, left, bottom, right), stride an
    int or (sh, sw). precision "bf16" rounds x and w with :func:`round_bf16` first (the products are then exact)."""
    if precision == "bf16":
        x, w = round_bf16(x), round_bf16(w)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    top, left, bottom, right = padding
    mode = {"zeros": "constant", "reflect": "reflect", "edge": "edge"}[padding_mode]
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=mode)  # (N, C_in, Hp, Wp)
    kh_, kw_ = w.shape[2:]
    ho, wo = (xp.shape[2] - kh_) // sh + 1, (xp.shape[3] - kw_) // sw + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for kh in range(kh_):
        for kw in range(kw_):
            window = xp[
                :, :, kh : kh + (ho - 1) * sh + 1 : sh, kw : kw + (wo - 1) * sw + 1 : sw
            ]  # (N, C_in, H_out, W_out)
            out += np.einsum("nchw,oc->nohw", window, w[:, :, kh, kw])
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    if activation == "leaky_relu":
        return np.where(out > 0, out, out * negative_slope)
    return np.maximum(out, 0.0) if activation == "relu" else out
