"""genrt.FillSweeps and its load-time rewrite (genrt/runtime/fuse_sweeps.py): the kernel against a numpy reference of
the sweeps, and the bundled inpainters, whose fills it takes over, against plain ONNX Runtime running their files."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt import onnx_ops
from genrt.runtime import fuse_norms, fuse_sweeps
from genrt.runtime.files import bundled_models
from genrt.runtime.onnx_session import ort_ops_library

pytestmark = pytest.mark.skipif(ort_ops_library() is None, reason="genrt was built without ONNX Runtime headers")
BIHARMONIC = np.array([[0, 0, -1, 0, 0], [0, -2, 8, -2, 0], [-1, 8, 0, 8, -1], [0, -2, 8, -2, 0], [0, 0, -1, 0, 0]])
NEIGHBOURS = np.array([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]])


def reference(x, v, a, w, count, mode, divisor=1.0, damping=1.0):
    """The sweeps in float64 numpy: edge padding, a depthwise correlation, then the update."""
    y = x.astype(np.float64)
    k = w.shape[-1]
    r = k // 2
    for _ in range(count):
        p = np.pad(y, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
        s = np.zeros_like(y)
        for i in range(k):
            for j in range(k):
                s += w[None, :, 0, i, j, None, None] * p[:, :, i : i + y.shape[2], j : j + y.shape[3]]
        y = v + a * (s if mode == "replace" else y + damping * (s / divisor - y))
    return y


def session(model: onnx.ModelProto):
    options = ort.SessionOptions()
    options.register_custom_ops_library(ort_ops_library())
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def one_node(w, count, mode, divisor=1.0, damping=1.0) -> onnx.ModelProto:
    attrs = dict(count=count, mode=mode, threads=2)
    if mode == "relax":
        attrs.update(divisor=divisor, damping=damping)
    node = helper.make_node("FillSweeps", ["x", "v", "a", "w"], ["y"], domain=onnx_ops.DOMAIN, **attrs)
    graph = helper.make_graph(
        [node], "sweeps", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xva"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION)]
    return helper.make_model(graph, opset_imports=opsets)


@pytest.mark.parametrize("mode", ["replace", "relax"])
@pytest.mark.parametrize(
    "shape, a_shape",
    [((2, 3, 33, 20), (2, 1, 33, 20)), ((1, 2, 1, 1), (1, 1, 1, 1)), ((1, 3, 1, 5), (1, 3, 1, 5)),
     ((3, 2, 7, 3), (1, 2, 7, 3)), ((1, 3, 64, 64), (1, 1, 64, 64))],
)  # fmt: skip
@pytest.mark.parametrize("count", [0, 1, 7])
def test_kernel_matches_numpy(mode, shape, a_shape, count):
    rng = np.random.default_rng(count)
    c = shape[1]
    stencil = BIHARMONIC if mode == "relax" else NEIGHBOURS
    w = np.broadcast_to(stencil, (c, 1, *stencil.shape)).astype(np.float32).copy()
    x, v = rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)
    a = (rng.random(a_shape) > 0.5).astype(np.float32)
    v *= 1 - a  # known values where a is 0, as the fills have them
    extra = dict(divisor=20.0, damping=0.5) if mode == "relax" else {}
    y = session(one_node(w, count, mode, **extra)).run(None, {"x": x, "v": v, "a": a})[0]
    want = reference(x, v, np.broadcast_to(a, shape), w, count, mode, **extra)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_kernel_refuses_bad_shapes():
    w = np.ones((3, 1, 4, 4), np.float32)  # even stencil
    x = np.ones((1, 3, 8, 8), np.float32)
    with pytest.raises(Exception, match="k odd"):
        session(one_node(w, 1, "replace")).run(None, {"x": x, "v": x, "a": x})
    w = np.ones((3, 1, 3, 3), np.float32)
    with pytest.raises(Exception, match="A: expected"):
        session(one_node(w, 1, "replace")).run(None, {"x": x, "v": x, "a": np.ones((1, 3, 1, 1), np.float32)})


@pytest.mark.parametrize("name, sweeps", [("inpaint-faces", 80), ("inpaint-photos", 732)])
def test_bundled_inpainters_match_plain_onnxruntime(name, sweeps):
    """Their fill's sweeps run as a handful of genrt.FillSweeps nodes, and the output is plain ORT's on the file."""
    path = bundled_models()[name]
    plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = genrt.load(name)
    size = model.metadata["size"]
    rng = np.random.default_rng(0)
    image = rng.random((2, 3, size, size), dtype=np.float32)
    mask = np.zeros((2, 1, size, size), np.float32)
    mask[0, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    mask[1, :, 3:9, :] = 1
    feeds = {model.inputs[0].name: image, model.inputs[1].name: mask}
    want = plain.run(None, feeds)[0]
    got = model(feeds)
    np.testing.assert_allclose(got[0] if isinstance(got, tuple) else got, want, atol=2e-5)
    assert f"of {sweeps} sweep(s)" in model.kernels["FillSweeps"]
    graph = model._runner.session_graph({k: v.shape for k, v in feeds.items()})
    fills = [n for n in graph.graph.node if n.domain == onnx_ops.DOMAIN and n.op_type == "FillSweeps"]
    assert fills and len(graph.graph.node) < 150
    assert sum(helper.get_attribute_value(a) for n in fills for a in n.attribute if a.name == "count") == sweeps


def _written_sweep(a_shape, pads=(0, 0, 1, 1, 0, 0, 1, 1)) -> onnx.ModelProto:
    """Pad(edge) -> depthwise Conv -> Mul(A) -> Add(V), twice: the replace pattern, with A of `a_shape`."""
    w = np.broadcast_to(NEIGHBOURS, (3, 1, 3, 3)).astype(np.float32).copy()
    nodes, y = [], "x"
    for i in range(2):
        nodes += [
            helper.make_node("Pad", [y, "pads"], [f"p{i}"], mode="edge"),
            helper.make_node("Conv", [f"p{i}", "w"], [f"s{i}"], group=3, kernel_shape=[3, 3]),
            helper.make_node("Mul", ["a", f"s{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", "v"], [f"y{i}"]),
        ]
        y = f"y{i}"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16]),
              helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 3, 16, 16]),
              helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape)]  # fmt: skip
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(pads, np.int64), "pads")]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_rewrite_takes_a_run_and_leaves_what_the_kernel_cannot_do(tmp_path):
    rng = np.random.default_rng(1)
    x, v = rng.random((1, 3, 16, 16), dtype=np.float32), rng.random((1, 3, 16, 16), dtype=np.float32)
    for a_shape, taken in (([1, 1, 16, 16], True), ([1, 3, 1, 1], False)):  # a per-channel scale: not a fill
        model = _written_sweep(a_shape)
        runs = fuse_sweeps.find(fuse_norms.fold_constants(model))
        assert [(r.count, r.kind) for r in runs] == ([(2, "replace")] if taken else [])
        a = rng.random(a_shape, dtype=np.float32)
        path = tmp_path / f"m{len(a_shape)}{taken}.onnx"
        onnx.save(model, path)
        want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x, "v": v, "a": a})
        got = genrt.load(path)({"x": x, "v": v, "a": a})
        np.testing.assert_allclose(got[0] if isinstance(got, tuple) else got, want[0], rtol=1e-6, atol=1e-6)
    assert fuse_sweeps.find(_written_sweep([1, 1, 16, 16], pads=(0, 0, 1, 2, 0, 0, 1, 1))) == []  # uneven pads


def test_environment_keeps_the_graphs_nodes(monkeypatch):
    monkeypatch.setenv("GENRT_FILL_SWEEPS", "ort")
    assert "FillSweeps" not in genrt.load("inpaint-faces").kernels
