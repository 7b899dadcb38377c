"""genrt.Resize (csrc/core/resize.h) and its load-time rewrite (genrt.runtime.fuse_resize): ONNX Resize's linear,
cubic and nearest modes against ONNX Runtime's own Resize and torch's interpolate, the rewrite's reach, and bad
scales."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt import onnx_ops
from genrt.runtime import fuse_norms, fuse_resize
from genrt.runtime.onnx_session import ort_ops_library

pytestmark = pytest.mark.skipif(ort_ops_library() is None, reason="genrt was built without ONNX Runtime headers")
COORDINATES = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]


def session(model: onnx.ModelProto, native: bool):
    options = ort.SessionOptions()
    if native:
        options.register_custom_ops_library(ort_ops_library())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def onnx_resize(scales, mode, coordinates, a=-0.75, opset=18, **extra) -> onnx.ModelProto:
    """One standard Resize node of x by constant scales (1, 1, h, w)."""
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, cubic_coeff_a=a,
                            coordinate_transformation_mode=coordinates, **extra)  # fmt: skip
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1, 1, *scales], np.float32), "scales")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def genrt_resize(scales, mode, coordinates, a=-0.75, **extra) -> onnx.ModelProto:
    node = helper.make_node("Resize", ["x"], ["y"], domain=onnx_ops.DOMAIN, scales=list(scales), mode=mode,
                            coordinate_transformation_mode=coordinates, cubic_coeff_a=a, threads=2,
                            **extra)  # fmt: skip
    graph = helper.make_graph(
        [node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION)]
    return helper.make_model(graph, opset_imports=opsets)


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("mode, a", [("cubic", -0.75), ("cubic", -0.5), ("linear", -0.75)])
@pytest.mark.parametrize(
    "shape, scales",
    [((1, 3, 13, 17), (4.0, 4.0)), ((2, 2, 9, 31), (2.0, 3.0)), ((1, 1, 40, 33), (0.5, 0.75)),
     ((1, 2, 5, 7), (1.7, 2.3)), ((1, 1, 1, 6), (3.0, 1.0)), ((3, 1, 70, 3), (1.0, 5.0))],
)  # fmt: skip
def test_kernel_matches_onnxruntime(shape, scales, mode, a, coordinates):
    """Up-, down- and non-integer scales, one-pixel inputs: ORT's Resize on the same node up to float32 rounding."""
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32) * 10
    want = session(onnx_resize(scales, mode, coordinates, a), native=False).run(None, {"x": x})[0]
    got = session(genrt_resize(scales, mode, coordinates, a), native=True).run(None, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=4e-6 * 10 * 4)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_kernel_matches_torch_interpolate(mode, align_corners):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).random((2, 3, 24, 19), dtype=np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=(4.0, 2.0), mode=mode,
                                           align_corners=align_corners).numpy()  # fmt: skip
    coordinates = "align_corners" if align_corners else "pytorch_half_pixel"
    got = session(genrt_resize((4.0, 2.0), mode[2:], coordinates), native=True).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_kernel_refuses_bad_scales():
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(Exception, match="output's height would be 0"):
        session(genrt_resize((0.1, 1.0), "linear", "half_pixel"), native=True).run(None, {"x": x})
    with pytest.raises(Exception, match="expected positive finite scales"):
        session(genrt_resize((-1.0, 1.0), "linear", "half_pixel"), native=True).run(None, {"x": x})
    with pytest.raises(Exception, match="expected 'linear', 'cubic' or 'nearest'"):
        session(genrt_resize((2.0, 2.0), "area", "half_pixel"), native=True)
    with pytest.raises(Exception, match="nearest_mode: expected round_prefer_floor"):
        session(genrt_resize((2.0, 2.0), "nearest", "half_pixel", nearest_mode="up"), native=True)


def test_sr_x4_runs_its_bicubic_upscale_in_genrt():
    model = genrt.load("sr-x4")
    assert model.kernels["Resize"] == "genrt resize kernel for 1 node(s) (cubic)"
    graph = model._runner.session_graph({model.inputs[0].name: (1, 3, 32, 32)})
    assert not any(n.op_type == "Resize" and n.domain != onnx_ops.DOMAIN for n in graph.graph.node)


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("nearest", fuse_resize.NEAREST)
@pytest.mark.parametrize(
    "shape, scales",
    [((1, 3, 13, 17), (2.0, 2.0)), ((2, 2, 9, 31), (2.0, 3.0)), ((1, 1, 40, 33), (0.5, 0.75)),
     ((1, 2, 5, 7), (1.7, 2.3)), ((1, 1, 1, 6), (3.0, 1.0)), ((1, 1, 12, 10), (1.5, 2.5))],
)  # fmt: skip
def test_nearest_matches_onnxruntime_exactly(shape, scales, nearest, coordinates):
    """The same input pixels as ORT picks, ties (x.5 coordinates at scales 2, 0.5, 1.5, 2.5) included."""
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    want = session(onnx_resize(scales, "nearest", coordinates, nearest_mode=nearest), native=False).run(None, {"x": x})
    got = session(genrt_resize(scales, "nearest", coordinates, nearest_mode=nearest), native=True).run(None, {"x": x})
    np.testing.assert_array_equal(got[0], want[0])


def test_rewrite_takes_what_the_kernel_computes_and_leaves_the_rest(tmp_path):
    cases = [
        (onnx_resize((2.0, 3.0), "cubic", "half_pixel"), True),
        (onnx_resize((2.0, 2.0), "linear", "asymmetric", opset=13), True),
        (onnx_resize((2.0, 2.0), "nearest", "asymmetric", nearest_mode="floor"), True),  # torch's nearest upsample
        (onnx_resize((2.0, 2.0), "nearest", "tf_half_pixel_for_nn"), False),
        (onnx_resize((2.0, 2.0), "linear", "half_pixel", antialias=1), False),
        (onnx_resize((2.0, 2.0), "cubic", "half_pixel", exclude_outside=1), False),
        (onnx_resize((2.0, 2.0), "linear", "tf_half_pixel_for_nn"), False),
    ]
    rng = np.random.default_rng(5)
    for i, (model, taken) in enumerate(cases):
        assert bool(fuse_resize.find(fuse_norms.fold_constants(model))) == taken, i
        path = tmp_path / f"m{i}.onnx"
        onnx.save(model, path)
        x = rng.random((1, 2, 9, 11), dtype=np.float32)
        want = session(model, native=False).run(None, {"x": x})[0]
        loaded = genrt.load(path)
        assert ("Resize" in loaded.kernels) == taken, i
        got = loaded({"x": x})
        np.testing.assert_allclose(got[0] if isinstance(got, tuple) else got, want, atol=1e-5)
    # opset 18's axes: the scales of H and W only
    axes = onnx_resize((2.0, 3.0), "linear", "half_pixel", axes=[3, 2])
    axes.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([3.0, 2.0], np.float32), "scales"))
    assert [r.scales for r in fuse_resize.find(axes)] == [(2.0, 3.0)]
    # scales on axes other than H and W, and a size instead of scales: left to ORT
    batch = onnx_resize((2.0, 2.0), "linear", "half_pixel")
    batch.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([2, 1, 1, 1], np.float32), "scales"))
    assert fuse_resize.find(batch) == []
    sized = onnx_resize((2.0, 2.0), "linear", "half_pixel")
    sized.graph.node[0].input[:] = ["x", "", "", "sizes"]
    sized.graph.initializer.append(numpy_helper.from_array(np.array([1, 2, 18, 22], np.int64), "sizes"))
    assert fuse_resize.find(sized) == []


def test_environment_keeps_the_graphs_nodes(monkeypatch):
    monkeypatch.setenv("GENRT_RESIZE", "ort")
    assert "Resize" not in genrt.load("sr-x4").kernels
