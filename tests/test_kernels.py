"""genrt.kernels (numpy API, no torch) against the plain-numpy reference in genrt.reference."""

import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genrt
from genrt import _C, kernels
from genrt.reference import reference_minibatch_discrimination, reference_minibatch_discrimination_backward

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _sample(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@settings(max_examples=60, deadline=None)
@given(
    N=st.integers(1, 40),
    B=st.integers(1, 6),
    C=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([1e-6, 0.1, 1.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_forward_and_backward_match_reference(N, B, C, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    M = _sample(rng, (N, B, C), dtype, scale)
    g = _sample(rng, (N, B), dtype)
    out = kernels.minibatch_discrimination(M)
    assert out.dtype == dtype and out.shape == (N, B)
    np.testing.assert_allclose(out, reference_minibatch_discrimination(M), **TOL[dtype])
    grad = kernels.minibatch_discrimination_backward(M, g)
    assert grad.dtype == dtype and grad.shape == (N, B, C)
    np.testing.assert_allclose(grad, reference_minibatch_discrimination_backward(M, g), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 7])
def test_every_isa_and_schedule_agree(isa, dtype, threads, rng):
    # B=3 with 7 threads takes the per-row schedule, B=3 with 1-2 threads the symmetric one.
    M = _sample(rng, (70, 3, 5), dtype, 0.3)
    g = _sample(rng, (70, 3), dtype)
    np.testing.assert_allclose(
        kernels.minibatch_discrimination(M, threads=threads), reference_minibatch_discrimination(M), **TOL[dtype]
    )
    np.testing.assert_allclose(
        kernels.minibatch_discrimination_backward(M, g, threads=threads),
        reference_minibatch_discrimination_backward(M, g),
        **TOL[dtype],
    )


def test_single_sample_gives_zeros():
    M = np.ones((1, 4, 3), np.float32)
    np.testing.assert_array_equal(kernels.minibatch_discrimination(M), np.zeros((1, 4), np.float32))
    np.testing.assert_array_equal(kernels.minibatch_discrimination_backward(M, np.ones((1, 4), np.float32)), 0)


def test_extreme_magnitudes():
    # Identical samples: every e_ij = 1, so o = N - 1. Far-apart samples: exp underflows to exactly 0.
    same = np.zeros((33, 2, 5), np.float32)
    np.testing.assert_array_equal(kernels.minibatch_discrimination(same), 32)
    far = np.arange(33, dtype=np.float64)[:, None, None] * np.full((1, 2, 5), 1e30)
    np.testing.assert_array_equal(kernels.minibatch_discrimination(far), 0)
    np.testing.assert_array_equal(kernels.minibatch_discrimination(far.astype(np.float32)), 0)


def test_nan_propagates_to_its_kernel_only():
    M = np.zeros((5, 2, 3))
    M[2, 0, 1] = np.nan
    out = kernels.minibatch_discrimination(M)
    assert np.isnan(out[:, 0]).all() and not np.isnan(out[:, 1]).any()


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a.transpose(1, 0, 2).copy().transpose(1, 0, 2),  # strided
        lambda a: np.asfortranarray(a),
        lambda a: a[::-1],  # negative stride
        lambda a: np.repeat(a, 2, axis=2)[:, :, ::2],  # gapped stride
        lambda a: np.broadcast_to(a[:1], a.shape),  # zero stride, read-only
    ],
)
def test_non_contiguous_inputs(view, rng):
    M = view(_sample(rng, (20, 3, 4), np.float64))
    g = view(_sample(rng, (20, 3, 4), np.float64))[:, :, 0]
    np.testing.assert_allclose(kernels.minibatch_discrimination(M), reference_minibatch_discrimination(M), rtol=1e-12)
    np.testing.assert_allclose(
        kernels.minibatch_discrimination_backward(M, g), reference_minibatch_discrimination_backward(M, g), rtol=1e-12
    )


def test_empty_batch_and_kernels():
    assert kernels.minibatch_discrimination(np.zeros((0, 3, 2), np.float32)).shape == (0, 3)
    assert kernels.minibatch_discrimination(np.zeros((4, 0, 2), np.float32)).shape == (4, 0)
    assert kernels.minibatch_discrimination_backward(np.zeros((0, 3, 2)), np.zeros((0, 3))).shape == (0, 3, 2)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.zeros((3, 4), np.float32),), genrt.ShapeError, r"M: expected a 3-D array .* got 2-D with shape \(3, 4\)"),
        ((np.zeros((2, 3, 4, 5)),), genrt.ShapeError, "got 4-D"),
        ((np.zeros((3, 4, 0)),), genrt.ShapeError, r"M: kernel dimension C \(dim 2\) must be >= 1"),
        ((np.zeros((3, 4, 2), np.int64),), genrt.DTypeError, "M: expected float32 or float64, got int64"),
        ((np.zeros((3, 4, 2), np.float16),), genrt.DTypeError, "got float16"),
        (([[[1.0]]],), genrt.DTypeError, "M: expected a numpy.ndarray, got list"),
        ((None,), genrt.DTypeError, "got NoneType"),
    ],
)
def test_forward_bad_inputs(args, error, match):
    with pytest.raises(error, match=match):
        kernels.minibatch_discrimination(*args)


@pytest.mark.parametrize(
    ("M", "g", "match"),
    [
        (np.zeros((3, 4, 2)), np.zeros((3, 5)), r"grad_out: expected shape matching M \(3, 4, 2\), got \(3, 5\)"),
        (np.zeros((3, 4, 2)), np.zeros((3, 4, 1)), "grad_out: expected a 2-D array"),
        (np.zeros((3, 4, 2)), np.zeros((3, 4), np.float32), "grad_out: expected dtype float64"),
    ],
)
def test_backward_bad_inputs(M, g, match):
    with pytest.raises(genrt.GenrtError, match=match):
        kernels.minibatch_discrimination_backward(M, g)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2", 2**40])
def test_bad_thread_counts(threads):
    with pytest.raises(genrt.ArgumentError, match="threads: expected a positive integer"):
        kernels.minibatch_discrimination(np.zeros((2, 2, 2)), threads=threads)


def test_non_native_byte_order_is_accepted(rng):
    M = _sample(rng, (9, 2, 3), np.float64)
    np.testing.assert_allclose(
        kernels.minibatch_discrimination(M.astype(">f8")), reference_minibatch_discrimination(M), rtol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, object, "V8"])
def test_other_dtypes_raise_dtype_error(dtype):
    with pytest.raises(genrt.DTypeError, match="M: expected float32 or float64"):
        kernels.minibatch_discrimination(np.zeros((2, 2, 2), dtype=dtype))


def test_set_isa_rejects_unknown_names():
    with pytest.raises(genrt.ArgumentError, match="isa: expected one of"):
        _C.set_isa("sse9")


def test_concurrent_callers_get_correct_results(rng):
    M = _sample(rng, (96, 8, 5), np.float32, 0.3)
    expected = reference_minibatch_discrimination(M)
    errors = []

    def work():
        for _ in range(5):
            if not np.allclose(kernels.minibatch_discrimination(M, threads=2), expected, rtol=2e-5, atol=2e-5):
                errors.append("mismatch")

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors


def _child(M, queue):
    queue.put(kernels.minibatch_discrimination(M, threads=2))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kernels_work_after_fork(rng):
    M = _sample(rng, (96, 8, 5), np.float64, 0.3)
    kernels.minibatch_discrimination(M, threads=2)  # start the pool in the parent
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(M, queue))
    proc.start()
    out = queue.get(timeout=60)
    proc.join(timeout=60)
    np.testing.assert_allclose(out, reference_minibatch_discrimination(M), rtol=1e-12)


def test_numpy_api_works_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "import numpy as np, genrt\n"
        "print(genrt.kernels.minibatch_discrimination(np.ones((3, 2, 2))).tolist())\n"
        "try:\n    import genrt.ops\nexcept genrt.MissingDependencyError as e:\n    print('missing:', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]" in result.stdout
    assert "missing: this part of genrt" in result.stdout and "genrt[train]" in result.stdout
