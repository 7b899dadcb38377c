"""The CUDA build, on any machine: genrt._cuda exists where nvcc did, imports without a GPU, reports none, and its
launchers check their arguments (before touching a device) and report a missing device as a RunError."""

import os
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt import kernels
from genrt.runtime.onnx_session import has_cuda_kernels, ort_ops_library

NVCC = (shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")) and os.environ.get("GENRT_CUDA") != "0"
built = pytest.mark.skipif(kernels._cuda_module() is None, reason="genrt built without CUDA")


@pytest.mark.skipif(not NVCC, reason="no nvcc here, so no CUDA build is expected")
def test_cuda_modules_are_built_where_nvcc_is():
    assert kernels._cuda_module() is not None
    assert ort_ops_library() is None or has_cuda_kernels("cuda")


@built
def test_cuda_available_agrees_with_torch():
    torch = pytest.importorskip("torch")
    assert kernels.cuda_available() == (torch.cuda.is_available() and torch.cuda.device_count() > 0)
    assert kernels.cuda_device_count() == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_cpu_library_is_the_cpu_one():
    lib = ort_ops_library("cpu")
    assert lib is None or "_ort_ops_cuda" not in lib
    assert not has_cuda_kernels("cpu")


def _conv_args(**change):
    args = dict(x_shape=(1, 4, 5, 5), Cout=6, kH=3, kW=3, Ho=11, Wo=11, stride=(2, 2), padding=(0, 0))
    args.update(dilation=(1, 1), groups=1, activation=0, negative_slope=0.0, dtype=0, allow_tf32=False)
    args.update(change)
    return (0, 0, 0, 0, 0, 0, *args.values(), 0)


@built
@pytest.mark.parametrize(
    "change, words",
    [
        ({"groups": 3}, "groups = 3"),
        ({"Ho": 13}, "output_padding"),
        ({"Ho": 9}, "output size"),
        ({"stride": (0, 2)}, "stride"),
        ({"x_shape": (0, 4, 5, 5)}, "every size"),
        ({"dtype": 7}, "dtype code 7"),
        ({"activation": 9}, "activation"),
    ],
)
def test_conv_transpose_launcher_checks_arguments(change, words):
    with pytest.raises(genrt.errors.ArgumentError, match=words):
        kernels.cuda_call("conv_transpose2d_forward", *_conv_args(**change))


@built
@pytest.mark.parametrize("name", ["minibatch_discrimination_forward", "minibatch_discrimination_backward"])
def test_minibatch_launchers_check_arguments(name):
    extra = (0,) if name.endswith("backward") else ()
    with pytest.raises(genrt.errors.ArgumentError, match=r"every size >= 1, got \(0, 3, 2\)"):
        kernels.cuda_call(name, 0, 0, *extra, 0, 3, 2, 0, 0)
    with pytest.raises(genrt.errors.ArgumentError, match="dtype code 9"):
        kernels.cuda_call(name, 0, 0, *extra, 4, 3, 2, 9, 0)


@built
@pytest.mark.skipif(kernels.cuda_available(), reason="a GPU is here: the launch would run")
def test_valid_launch_without_gpu_is_a_run_error():
    with pytest.raises(genrt.errors.RunError, match="CUDA error"):
        kernels.cuda_call("minibatch_discrimination_forward", 0, 0, 4, 3, 2, 0, 0)


@pytest.mark.skipif(not has_cuda_kernels("cuda"), reason="no CUDA build of genrt's ORT library")
def test_cuda_ort_library_still_runs_the_cpu_kernels():
    """genrt._ort_ops_cuda is a superset: on the CPU provider its genrt.ConvTranspose is the CPU kernel's."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 4, 4)).astype(np.float32)
    x = rng.standard_normal((2, 8, 5, 5)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], domain="genrt", strides=[2, 2], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("genrt", 1)])
    options = ort.SessionOptions()
    options.register_custom_ops_library(ort_ops_library("cuda"))
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"X": x})
    expected = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-4, atol=1e-4)


def _random_case(rng):
    groups = int(rng.choice([1, 1, 2, 3]))
    stride = tuple(int(v) for v in rng.integers(1, 5, 2))
    dilation = tuple(int(v) for v in rng.integers(1, 4, 2))
    k = tuple(int(v) for v in rng.integers(1, 6, 2))
    padding = tuple(int(rng.integers(0, (dilation[i] * (k[i] - 1)) // 2 + 2)) for i in range(2))
    output_padding = tuple(int(rng.integers(0, max(stride[i], dilation[i]))) for i in range(2))
    cin, cog = groups * int(rng.integers(1, 4)), int(rng.integers(1, 4))
    x = rng.standard_normal((int(rng.integers(1, 3)), cin, *(int(v) for v in rng.integers(1, 7, 2))))
    w = rng.standard_normal((cin, cog, *k))
    return x, w, dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)


@built
def test_kernel_index_arithmetic_matches_torch_on_300_random_layers():
    """The CUDA kernel's phase / tap / pixel decomposition, run on the host, against torch's transposed convolution
    over random strides, paddings, output paddings, dilations, groups and kernel sizes (phases with no taps
    included), with the fused epilogue."""
    torch = pytest.importorskip("torch")
    module = kernels._cuda_module()
    rng = np.random.default_rng(0)
    done = 0
    while done < 300:
        x, w, args = _random_case(rng)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        try:
            ref = torch.nn.functional.conv_transpose2d(tx, tw, **args)
        except RuntimeError:
            continue  # an empty output: not a layer
        cout = ref.shape[1]
        bias, scale, shift = (rng.standard_normal(cout) for _ in range(3))
        activation = int(rng.integers(0, 5))
        y = module.conv_transpose2d_emulate(
            x, w, bias, scale, shift, **args, activation=activation, negative_slope=0.25
        )
        z = (ref + torch.from_numpy(bias)[:, None, None]) * torch.from_numpy(scale)[:, None, None]
        z = z + torch.from_numpy(shift)[:, None, None]
        acts = [lambda v: v, torch.relu, lambda v: torch.nn.functional.leaky_relu(v, 0.25), torch.tanh, torch.sigmoid]
        np.testing.assert_allclose(y, acts[activation](z).numpy(), rtol=1e-9, atol=1e-9, err_msg=str(args))
        done += 1
