"""genrt.nn layers."""

import pytest

torch = pytest.importorskip("torch")

import genrt  # noqa: E402
from genrt.nn import MinibatchDiscrimination  # noqa: E402


def test_output_is_input_then_minibatch_features():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(12, num_kernels=6, kernel_dim=3).double()
    x = torch.randn(9, 12, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert y.shape == (9, 18)
    torch.testing.assert_close(y[:, :12], x)
    M = (x @ layer.T).view(9, 6, 3)
    expected = torch.exp(-(M[:, None] - M[None]).abs().sum(-1)).sum(1) - 1
    torch.testing.assert_close(y[:, 12:], expected)
    y.square().sum().backward()
    assert layer.T.grad is not None and layer.T.grad.abs().sum() > 0
    assert x.grad is not None


def test_init_scale_and_defaults():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(400)
    assert layer.T.shape == (400, 500)
    assert abs(layer.T.std().item() - 0.05) < 0.002 and abs(layer.T.mean().item()) < 0.002


def test_collapsed_batch_scores_higher():
    # The point of the layer: identical samples are close to each other, so their features are large.
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(16, num_kernels=8, kernel_dim=4)
    diverse = torch.randn(10, 16) * 3
    collapsed = diverse[:1].repeat(10, 1)
    assert (layer(collapsed)[:, 16:] > layer(diverse)[:, 16:]).all()


def test_bad_arguments():
    with pytest.raises(genrt.ArgumentError, match="num_kernels: expected a positive integer"):
        MinibatchDiscrimination(4, num_kernels=0)
    with pytest.raises(genrt.ShapeError, match=r"x: expected shape \(N, 4\), got \(2, 5\)"):
        MinibatchDiscrimination(4)(torch.zeros(2, 5))
