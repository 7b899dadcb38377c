"""genrt.load(..., precision=): "bf16" runs genrt.Conv and genrt.ConvTranspose on bfloat16 operands (output within
45 dB PSNR of float32 on a real network), "auto" takes bfloat16 only where the CPU has the instructions and the model
passes the fidelity check on the probe photo, and says why; the check's verdict is cached with the kernel
decisions."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt.errors import ArgumentError
from genrt.runtime import fuse, precision
from genrt.runtime.onnx_session import ort_ops_library

pytestmark = pytest.mark.skipif(ort_ops_library() is None, reason="genrt was built without ONNX Runtime headers")


def _psnr(ref, out):
    return 10 * np.log10((ref.max() - ref.min()) ** 2 / np.mean((ref.astype(np.float64) - out) ** 2))


@pytest.fixture
def photo():
    return precision.probe_feeds(
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 96, 128])], {"x": [1, 3, 96, 128]}
    )["x"]


def test_bf16_style_network_is_faithful_and_uses_bf16_layers(photo, monkeypatch):
    monkeypatch.setenv("GENRT_CONV", "genrt")  # every chain to genrt's op, so every one runs in bfloat16
    monkeypatch.setenv("GENRT_CONV_TRANSPOSE", "genrt")
    f32 = genrt.load("style-gravel")
    bf16 = genrt.load("style-gravel", precision="bf16")
    x = photo * 255 if f32.metadata.get("input_range", [0, 1])[1] > 1 else photo
    ref, out = f32(x), bf16(x)
    assert not np.array_equal(ref, out)  # it did run in bfloat16
    assert _psnr(ref, out) >= precision.MIN_PSNR_DB
    graph = bf16._runner.session_graph({bf16.inputs[0].name: x.shape})
    convs = [n for n in graph.graph.node if n.domain == "genrt" and n.op_type in ("Conv", "ConvTranspose")]
    assert {n.op_type for n in convs} == {"Conv", "ConvTranspose"}
    assert all(helper.get_attribute_value(a) == b"bf16" for n in convs for a in n.attribute
                         if a.name == "precision")  # fmt: skip
    assert sum(a.name == "precision" for n in convs for a in n.attribute) == len(convs)
    assert bf16.kernels["precision"].endswith("asked for") or "emulated" in bf16.kernels["precision"]


def test_auto_follows_the_cpu(photo, monkeypatch):
    model = genrt.load("style-gravel", precision="auto")
    model(photo)
    note = model.kernels["precision"]
    if precision.native_bf16():
        assert "bf16: output" in note and "dB PSNR against float32" in note, note
    else:
        assert "f32: this CPU has no bfloat16 instructions" in note, note


def _cancelling_model() -> bytes:
    """Two 1x1 convs: the first copies the red channel twice (exact in bfloat16), the second takes
    1.003 r - 1.0 r = 0.003 r. bfloat16 rounds 1.003 to 1.0, so its output is 0: far below 45 dB."""
    w1 = np.zeros((2, 3, 1, 1), np.float32)
    w1[:, 0] = 1.0
    w2 = np.array([1.003, -1.0], np.float32).reshape(1, 2, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["h"]), helper.make_node("Conv", ["h", "w2"], ["y"])],
        "cancel",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def test_auto_refuses_a_model_that_bfloat16_breaks(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRT_CONV", "genrt")
    path = tmp_path / "cancel.onnx"
    path.write_bytes(_cancelling_model())
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    bf16 = genrt.load(path, precision="bf16")
    assert np.abs(bf16(x)).max() < 1e-6  # what bfloat16 makes of it
    monkeypatch.setattr(precision, "native_bf16", lambda: True)  # the check runs wherever the kernel runs
    auto = genrt.load(path, precision="auto")
    np.testing.assert_allclose(auto(x), 0.003 * x[:, :1], rtol=1e-3, atol=1e-7)  # float32 kept
    assert auto.kernels["precision"].startswith("1x3x32x32: f32: output") or "f32: output" in auto.kernels["precision"]
    # the verdict is cached: a second load reads it rather than running the probe again
    keys = [k for k in fuse._read_cache() if k.startswith('["precision"')]
    assert keys
    calls = []
    monkeypatch.setattr(precision, "probe_feeds", lambda *a: calls.append(a) or {})
    again = genrt.load(path, precision="auto")
    again(x)
    assert not calls and "f32: output" in again.kernels["precision"]


def test_bad_precision_values():
    with pytest.raises(ArgumentError, match="precision: expected one of f32, bf16, auto"):
        genrt.load("style-gravel", precision="fp16")
    with pytest.raises(ArgumentError, match="CPU kernels' option"):
        genrt.load("style-gravel", precision="bf16", device="cuda")


def test_cli_info_and_apps_take_precision(tmp_path, capsys, monkeypatch):
    from genrt import cli

    assert cli.main(["info", "style-gravel", "--precision", "auto", "--input-shape", "1,3,64,64"]) in (0, None)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("precision:"))
    assert ("bf16: output" in line) if precision.native_bf16() else ("f32: this CPU has no bfloat16" in line), line
    from PIL import Image

    photo = tmp_path / "p.png"
    precision._photo().crop((0, 0, 64, 48)).save(photo)
    outs = {}
    for kind in ("f32", "bf16"):
        out = tmp_path / f"{kind}.png"
        assert cli.main(["stylize", "style-gravel", str(photo), "-o", str(out), "--precision", kind]) in (0, None)
        outs[kind] = np.asarray(Image.open(out), dtype=np.float64)
    assert _psnr(outs["f32"], outs["bf16"]) >= 40  # 8-bit pictures: the two differ by a few levels at most


def test_psnr_of_non_finite_outputs():
    ref = np.array([0.0, 1.0, np.nan])
    assert precision.psnr([ref], [ref.copy()]) == float("inf")  # equal where float32 is finite
    assert precision.psnr([ref], [np.array([0.0, np.inf, np.nan])]) == float("-inf")
    assert 39 < precision.psnr([np.array([0.0, 1.0])], [np.array([0.0, 1.01])]) < 44  # 20 log10(1 / 0.01) - 3 dB


def test_auto_keeps_float32_when_the_check_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path / "cache"))  # no verdict kept by the test above
    monkeypatch.setenv("GENRT_CONV", "genrt")
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    monkeypatch.setattr(precision, "probe_feeds", lambda *a: (_ for _ in ()).throw(ValueError("no photo for this")))
    path = tmp_path / "cancel.onnx"
    path.write_bytes(_cancelling_model())
    model = genrt.load(path, precision="auto")
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(model(x), 0.003 * x[:, :1], rtol=1e-3, atol=1e-7)
    assert "f32: the fidelity check could not run (no photo for this)" in model.kernels["precision"]
