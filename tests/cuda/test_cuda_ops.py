"""genrt's CUDA kernels against independent references on the GPU: torch's broadcasting formula, cuDNN's
transposed convolution with TF32 off, autograd's gradcheck, torch.library's opcheck, ONNX Runtime's CPU run.
Every test is marked `cuda` and skips without a GPU (conftest.py)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import genrt  # noqa: E402
from genrt import kernels  # noqa: E402
from genrt.ops import _cuda as ops_cuda  # noqa: E402
from genrt.ops import conv_transpose2d, minibatch_discrimination  # noqa: E402

pytestmark = pytest.mark.cuda
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}


@pytest.fixture(autouse=True)
def ieee_float32():
    """cuDNN's reference in full float32 precision (torch lets convolutions use TF32 by default)."""
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = "ieee"
    yield
    conv.fp32_precision = before


def broadcast_formula(M):
    M = M.double()
    return torch.exp(-(M[:, None] - M[None]).abs().sum(-1)).sum(1) - 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(1, 3, 2), (5, 4, 3), (130, 3, 5), (300, 2, 8), (70, 2, 9), (40, 3, 40)])
def test_minibatch_forward_and_backward_match_the_formula(shape, dtype):
    torch.manual_seed(0)
    M = (0.3 * torch.randn(*shape, device="cuda", dtype=torch.float64)).to(dtype).requires_grad_()
    g = torch.randn(shape[:2], device="cuda", dtype=torch.float64).to(dtype)
    out = minibatch_discrimination(M)
    assert out.dtype == dtype
    M64 = M.detach().double().requires_grad_()
    ref = broadcast_formula(M64)
    tol = TOL[dtype] * max(1.0, shape[0] / 10)
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    (grad,) = torch.autograd.grad(out, M, g)
    (ref_grad,) = torch.autograd.grad(ref, M64, g.double())
    torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol * 4)


def test_minibatch_gradcheck_and_opcheck_on_cuda():
    M = torch.randn(6, 3, 4, device="cuda", dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(minibatch_discrimination, (M,))
    torch.library.opcheck(torch.ops.genrt.minibatch_discrimination.default, (M,))


def test_minibatch_memory_is_linear_in_n():
    M = torch.randn(4096, 100, 5, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = minibatch_discrimination(M)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - base <= 2 * out.numel() * 4 + (1 << 20)


def test_minibatch_runs_on_the_current_stream():
    M = torch.randn(512, 8, 5, device="cuda")
    expected = minibatch_discrimination(M)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = minibatch_discrimination(M)
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(out, expected)


CASES = [  # (N, C_in, H, W, C_out/groups, k, stride, padding, output_padding, dilation, groups)
    (2, 8, 4, 4, 16, 4, 2, 1, 0, 1, 1),  # DCGAN
    (3, 16, 7, 5, 8, 3, 2, 1, 1, 1, 1),  # Johnson's upsampling, odd sizes
    (1, 6, 5, 6, 4, 3, 3, 0, 2, 1, 2),  # stride 3, groups
    (2, 4, 6, 6, 5, 3, 2, 2, 1, 2, 1),  # dilation 2 with stride 2
    (1, 3, 9, 9, 70, 1, 1, 0, 0, 1, 1),  # 1x1, more than one channel block
    (2, 32, 3, 3, 3, 5, 1, 2, 0, 1, 1),  # stride 1, 3 output channels
    (1, 4, 4, 4, 4, 2, 4, 0, 0, 1, 4),  # stride > kernel: phases without taps
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_conv_transpose_matches_cudnn(case, dtype):
    N, Cin, H, W, Cog, k, s, p, op, d, g = case
    torch.manual_seed(1)
    x = torch.randn(N, Cin, H, W, device="cuda", dtype=torch.float64)
    w = torch.randn(Cin, Cog, k, k, device="cuda", dtype=torch.float64) / (Cin * k) ** 0.5
    b = torch.randn(Cog * g, device="cuda", dtype=torch.float64)
    ref = torch.nn.functional.conv_transpose2d(x, w, b, s, p, op, g, d)
    out = conv_transpose2d(x.to(dtype), w.to(dtype), b.to(dtype), s, p, op, g, d)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, rtol=TOL[dtype] * 5, atol=TOL[dtype] * 5)


def test_conv_transpose_tf32_only_when_allowed():
    x = torch.randn(4, 64, 8, 8, device="cuda")
    w = torch.randn(64, 64, 4, 4, device="cuda") / 32
    ref = torch.nn.functional.conv_transpose2d(x.double(), w.double(), stride=2, padding=1)
    exact = conv_transpose2d(x, w, stride=2, padding=1)
    assert (exact.double() - ref).abs().max() < 1e-4
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    assert ops_cuda.allow_tf32()
    fast = conv_transpose2d(x, w, stride=2, padding=1)
    err = (fast.double() - ref).abs().max()
    assert 1e-4 < err < 5e-2  # TF32's 10-bit products: measurably less exact, still close


@pytest.mark.parametrize("activation, fn", [(1, torch.relu), (2, None), (3, torch.tanh), (4, torch.sigmoid)])
def test_conv_transpose_fused_epilogue(activation, fn):
    x = torch.randn(2, 8, 5, 5, device="cuda")
    w = torch.randn(8, 6, 4, 4, device="cuda") / 8
    bias, scale, shift = (torch.randn(6, device="cuda") for _ in range(3))
    y = torch.empty(2, 6, 10, 10, device="cuda")
    with ops_cuda.on_device(x) as stream:
        kernels.cuda_call(
            "conv_transpose2d_forward",
            *(x.data_ptr(), w.data_ptr(), bias.data_ptr(), scale.data_ptr(), shift.data_ptr(), y.data_ptr()),
            *((2, 8, 5, 5), 6, 4, 4, 10, 10, (2, 2), (1, 1), (1, 1), 1, activation, 0.2, 0, False, stream),
        )
    z = torch.nn.functional.conv_transpose2d(x, w, bias, 2, 1)
    z = z * scale[:, None, None] + shift[:, None, None]
    ref = torch.nn.functional.leaky_relu(z, 0.2) if fn is None else fn(z)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)


def test_conv_transpose_gradients_and_opcheck_on_cuda():
    x = torch.randn(1, 3, 3, 3, device="cuda", dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, device="cuda", dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, device="cuda", dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: conv_transpose2d(*a, stride=2, padding=1), (x, w, b))
    args = (x, w, b, [2, 2], [1, 1], [0, 0], 1, [1, 1])
    torch.library.opcheck(torch.ops.genrt.conv_transpose2d.default, args)


def test_nn_layers_on_cuda_modules():
    torch.manual_seed(2)
    layer = genrt.nn.MinibatchDiscrimination(16, 8, 4)
    h = torch.randn(32, 16)
    expected = layer(h)
    torch.testing.assert_close(layer.cuda()(h.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
    reason="onnxruntime without a CUDA provider (pip install 'genrt[gpu]')",
)
def test_genrt_load_on_cuda_matches_cpu(tmp_path):
    """A generator with ConvTranspose + BatchNorm + activation chains and a discriminator with genrt's minibatch
    node, each loaded on the GPU with genrt's kernels forced, against the CPU run."""
    from genrt.runtime import _load
    from tests.tiny_models import make

    g, d = make()
    paths = {
        "g": genrt.export(g, tmp_path / "g.onnx", torch.randn(4, 16), kind="generator"),
        "d": genrt.export(d, tmp_path / "d.onnx", torch.randn(6, 1, 8, 8), kind="discriminator"),
    }
    z = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    cpu_g, gpu_g = genrt.load(paths["g"]), _load(paths["g"], device="cuda", conv_transpose="genrt")
    np.testing.assert_allclose(gpu_g(z), cpu_g(z), rtol=1e-3, atol=1e-3)
    assert "genrt fused kernel" in gpu_g.kernels["ConvTranspose"]
    images = np.random.default_rng(1).standard_normal((6, 1, 8, 8)).astype(np.float32)
    cpu_d, gpu_d = genrt.load(paths["d"]), genrt.load(paths["d"], device="cuda")
    np.testing.assert_allclose(gpu_d(images), cpu_d(images), rtol=1e-3, atol=1e-3)
