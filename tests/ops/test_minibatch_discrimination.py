"""genrt.ops.minibatch_discrimination against autograd through the broadcasting formula in PyTorch."""

import pytest

torch = pytest.importorskip("torch")

import genrt  # noqa: E402
from genrt.ops import minibatch_discrimination, minibatch_discrimination_backward  # noqa: E402
from genrt.ops.minibatch_discrimination import _chunked_backward, _chunked_forward  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def broadcast_formula(M):
    """What a user would write: materialises (N, N, B, C)."""
    return torch.exp(-(M[:, None] - M[None]).abs().sum(-1)).sum(1) - 1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 3, 2), (2, 1, 1), (5, 4, 3), (17, 6, 5), (40, 2, 7)])
def test_matches_autograd_of_the_broadcast_formula(shape, device):
    torch.manual_seed(0)
    M = (0.3 * torch.randn(*shape, dtype=torch.float64, device=device)).requires_grad_()
    g = torch.randn(shape[:2], dtype=torch.float64, device=device)
    out = minibatch_discrimination(M)
    expected = broadcast_formula(M)
    torch.testing.assert_close(out, expected)
    (grad,) = torch.autograd.grad(out, M, g)
    (expected_grad,) = torch.autograd.grad(expected, M, g)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 3, 1), (6, 3, 4)])
def test_gradcheck_float64(shape):
    torch.manual_seed(1)
    M = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(minibatch_discrimination, (M,))


@pytest.mark.parametrize("shape", [(1, 2, 2), (7, 3, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(shape, dtype):
    M = torch.randn(*shape, dtype=dtype, requires_grad=True)
    torch.library.opcheck(torch.ops.genrt.minibatch_discrimination.default, (M,))
    g = torch.randn(shape[:2], dtype=dtype)
    torch.library.opcheck(torch.ops.genrt.minibatch_discrimination_backward.default, (M.detach(), g))


def test_non_contiguous_tensors():
    torch.manual_seed(2)
    base = torch.randn(4, 9, 12, dtype=torch.float64)
    M = base.permute(1, 0, 2)[:, :, ::3]  # (9, 4, 4), no unit stride anywhere
    assert not M.is_contiguous()
    torch.testing.assert_close(minibatch_discrimination(M), broadcast_formula(M))
    g = torch.randn(4, 9, dtype=torch.float64).t()
    torch.testing.assert_close(minibatch_discrimination_backward(M, g), _chunked_backward(M, g))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    M = (0.3 * torch.randn(8, 3, 4)).to(dtype).requires_grad_()
    out = minibatch_discrimination(M)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), broadcast_formula(M.detach().float()), rtol=1e-2, atol=1e-2)
    out.sum().backward()
    assert M.grad.dtype == dtype


def test_torch_compile_traces_the_op():
    M = torch.randn(8, 3, 4)
    compiled = torch.compile(lambda m: minibatch_discrimination(m) * 2, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(M), 2 * broadcast_formula(M))


def test_device_fallback_matches_kernel():
    # The chunked torch path serves tensors on other devices; check it on CPU with tiny chunks.
    torch.manual_seed(3)
    M = torch.randn(11, 3, 4, dtype=torch.float64)
    g = torch.randn(11, 3, dtype=torch.float64)
    for rows in (1, 4, None):
        torch.testing.assert_close(_chunked_forward(M, rows), minibatch_discrimination(M))
        torch.testing.assert_close(_chunked_backward(M, g, rows), minibatch_discrimination_backward(M, g))


@pytest.mark.parametrize(
    ("M", "error", "match"),
    [
        (torch.zeros(3, 4), genrt.ShapeError, r"M: expected a 3-D tensor .* got 2-D"),
        (torch.zeros(3, 4, 0), genrt.ShapeError, "kernel dimension C"),
        (torch.zeros(3, 4, 2, dtype=torch.int32), genrt.DTypeError, "got torch.int32"),
        ("M", genrt.DTypeError, "expected a torch.Tensor, got str"),
    ],
)
def test_bad_inputs(M, error, match):
    with pytest.raises(error, match=match):
        minibatch_discrimination(M)
