"""genrt.ops.conv_transpose2d and genrt.nn.ConvTranspose2d against torch's own transposed convolution."""

import pytest

torch = pytest.importorskip("torch")

import genrt  # noqa: E402
from genrt.nn import ConvTranspose2d  # noqa: E402
from genrt.ops import conv_transpose2d  # noqa: E402

F = torch.nn.functional

CONFIGS = [
    # (N, Cin, H, W, Cout_per_group, k, stride, padding, output_padding, groups, dilation, bias)
    (2, 4, 5, 6, 3, 4, 2, 1, 0, 1, 1, True),
    (1, 6, 3, 4, 2, 3, 2, 1, 1, 2, 1, False),
    (3, 2, 4, 4, 2, (2, 3), (1, 3), (0, 1), (0, 2), 1, (2, 1), True),
    (1, 3, 1, 1, 5, 4, 1, 0, 0, 1, 1, False),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_forward_and_gradients_match_torch(cfg):
    N, Cin, H, W, Cog, k, s, p, op, g, d, has_bias = cfg
    k2 = (k, k) if isinstance(k, int) else k
    torch.manual_seed(0)
    x = torch.randn(N, Cin, H, W, dtype=torch.float64, requires_grad=True)
    w = torch.randn(Cin, Cog, *k2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(Cog * g, dtype=torch.float64, requires_grad=True) if has_bias else None
    ours = conv_transpose2d(x, w, b, s, p, op, g, d)
    ref = F.conv_transpose2d(x, w, b, s, p, op, g, d)
    torch.testing.assert_close(ours, ref)
    inputs = (x, w) + ((b,) if has_bias else ())
    grad = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(ref, inputs, grad))
    assert torch.autograd.gradcheck(
        lambda *t: conv_transpose2d(t[0], t[1], t[2] if has_bias else None, s, p, op, g, d), inputs
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    x = torch.randn(2, 4, 3, 5, dtype=dtype, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=dtype, requires_grad=True)
    b = torch.randn(3, dtype=dtype, requires_grad=True)
    torch.library.opcheck(torch.ops.genrt.conv_transpose2d.default, (x, w, b, [2, 2], [1, 1], [1, 1], 1, [1, 1]))
    torch.library.opcheck(torch.ops.genrt.conv_transpose2d.default, (x, w, None, [1, 2], [0, 1], [0, 0], 1, [2, 1]))


def test_module_is_a_drop_in_replacement():
    torch.manual_seed(0)
    ref = torch.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    ours = ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 8, 5, 5)
    torch.testing.assert_close(ours(x), ref(x))
    # output_size picks the output padding, as in torch
    torch.testing.assert_close(ours(x, output_size=[11, 11]), ref(x, output_size=[11, 11]))
    assert isinstance(ours, torch.nn.ConvTranspose2d)


def test_non_contiguous_and_half_precision():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 6, 4).permute(0, 1, 3, 2)
    w = torch.randn(3, 5, 3, 3).transpose(0, 1)
    torch.testing.assert_close(conv_transpose2d(x, w, None, 2, 1), F.conv_transpose2d(x, w, None, 2, 1))
    xh, wh = x.to(torch.bfloat16), w.to(torch.bfloat16)
    out = conv_transpose2d(xh, wh, None, 2, 1)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float(), F.conv_transpose2d(xh.float(), wh.float(), None, 2, 1), rtol=2e-2, atol=2e-2
    )


def test_bad_inputs():
    with pytest.raises(genrt.ShapeError, match="expected 4-D"):
        conv_transpose2d(torch.zeros(2, 3, 4), torch.zeros(3, 2, 3, 3))
    with pytest.raises(genrt.DTypeError, match="input: expected a floating-point tensor"):
        conv_transpose2d(torch.zeros(1, 3, 4, 4, dtype=torch.int64), torch.zeros(3, 2, 3, 3))
    with pytest.raises(genrt.GenrtError, match="groups"):
        conv_transpose2d(torch.zeros(1, 3, 4, 4), torch.zeros(3, 2, 3, 3), groups=2)
