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
