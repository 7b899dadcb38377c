"""Load-time fusion of ConvTranspose -> BatchNormalization -> activation into genrt.ConvTranspose."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt.runtime import fuse as fuse_mod
from genrt.runtime.onnx_session import ort_ops_library

pytestmark = pytest.mark.skipif(ort_ops_library() is None, reason="genrt's ORT library not built")


def _chain_model(path, act="LeakyRelu", bn=True, bias=True, pads=(1, 1, 1, 1), group=1, extra_consumer=False):
    rng = np.random.default_rng(0)
    cin, cout = 6, 4
    inits = [numpy_helper.from_array(rng.standard_normal((cin, cout // group, 4, 3)).astype(np.float32), "W")]
    conv_inputs = ["X", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "B"))
        conv_inputs.append("B")
    nodes = [
        helper.make_node(
            "ConvTranspose", conv_inputs, ["c"], name="up", strides=[2, 1], pads=list(pads), group=group,
            output_padding=[1, 0],
        )
    ]  # fmt: skip
    last = "c"
    if bn:
        for name, value in (
            ("gamma", rng.uniform(0.5, 2, cout)),
            ("beta", rng.standard_normal(cout)),
            ("mean", rng.standard_normal(cout)),
            ("var", rng.uniform(0.5, 2, cout)),
        ):
            inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        nodes.append(
            helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["b"], epsilon=1e-3)
        )
        last = "b"
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)]
    if act:
        kwargs = {"alpha": 0.3} if act == "LeakyRelu" else {}
        nodes.append(helper.make_node(act, [last], ["Y"], **kwargs))
    else:
        nodes[-1].output[0] = "Y"
    if extra_consumer:
        nodes.append(helper.make_node("Identity", ["c"], ["side"]))
        outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", cin, 5, 7])], outputs, inits
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"act": "Relu", "bias": False},
        {"act": "Tanh", "bn": False},
        {"act": "Sigmoid", "group": 2},
        {"act": None},
        {"extra_consumer": True},
    ],
)
def test_fused_model_matches_onnxruntime(tmp_path, monkeypatch, kwargs):
    path = _chain_model(tmp_path / "m.onnx", **kwargs)
    x = np.random.default_rng(1).standard_normal((3, 6, 5, 7)).astype(np.float32)
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "ort")
    plain = genrt.load(path)
    assert "ConvTranspose" not in plain.kernels
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "genrt")
    fused = genrt.load(path)
    assert "ConvTranspose" in fused.kernels
    got, want = fused(x), plain(x)
    if kwargs.get("extra_consumer"):
        assert "ConvTranspose+BatchNormalization" not in fused.kernels["ConvTranspose"]  # BN kept: c is used twice
        got, want = got[0], want[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_asymmetric_pads_are_left_to_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "genrt")
    model = genrt.load(_chain_model(tmp_path / "m.onnx", pads=(1, 0, 2, 0)))
    assert "ConvTranspose" not in model.kernels


def test_auto_measures_once_and_caches(tmp_path, monkeypatch):
    path = _chain_model(tmp_path / "m.onnx")
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "auto")
    calls = []
    real = fuse_mod._time_pair

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(fuse_mod, "_time_pair", counting)
    first = genrt.load(path)
    assert len(calls) == len(fuse_mod.BUCKETS)  # ORT's nodes against genrt's op, once per batch bucket
    assert (tmp_path / "cache" / "conv_transpose_choice.json").is_file()
    second = genrt.load(path)
    assert len(calls) == len(fuse_mod.BUCKETS)  # decided from the cache
    assert first.kernels == second.kernels
    x = np.random.default_rng(1).standard_normal((2, 6, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(first(x), second(x), rtol=1e-5, atol=1e-5)
