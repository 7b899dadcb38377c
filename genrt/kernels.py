"""genrt's compiled kernels as plain numpy functions: no torch needed.

Threads: ``threads=None`` uses :func:`get_num_threads`, which defaults to the CPUs this process may run on and
follows ``GENRT_NUM_THREADS`` or :func:`set_num_threads`.
"""

from __future__ import annotations

import os

import numpy as np

from genrt._native import _C
from genrt.errors import ArgumentError

__all__ = [
    "cpu_isa",
    "get_num_threads",
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


def cpu_isa() -> str:
    """The instruction set the kernels run with: 'avx512', 'avx2' or 'baseline' (SSE2 / NEON)."""
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
