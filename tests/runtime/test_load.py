"""genrt.load: generator methods, threads, fallbacks, and every bad file and input."""

import pickle
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

import genrt
from genrt.runtime import onnx_session, ort_runner

torch = pytest.importorskip("torch")

from tests.tiny_models import make  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    g, d = make()
    return {
        "g": genrt.export(g, root / "g.onnx", torch.randn(4, 16), kind="generator"),
        "d": genrt.export(d, root / "d.onnx", torch.randn(6, 1, 8, 8), kind="discriminator"),
        "modules": (g, d),
    }


def test_generator_methods(exported):
    g = genrt.load(exported["g"])
    images = g.sample(5, seed=3)
    assert images.dtype == np.uint8 and images.shape == (5, 8, 8, 1)
    np.testing.assert_array_equal(images, g.sample(5, seed=3))
    assert not np.array_equal(images, g.sample(5, seed=4))
    # sample == generate(latents) == the torch module mapped from [-1, 1] to [0, 255]
    z = g.latents(5, seed=3)
    np.testing.assert_array_equal(g.generate(z), images)
    ref = exported["modules"][0](torch.from_numpy(z)).detach().numpy()
    expected = np.clip(np.rint((ref + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.abs(images.astype(int) - expected).max() <= 1
    walk = g.interpolate(z[0], z[1], 7)
    assert walk.shape == (7, 8, 8, 1)
    np.testing.assert_array_equal(walk[0], images[0])
    np.testing.assert_array_equal(walk[-1], images[1])
    frames = g.walk(z[:3], steps=4)
    assert frames.shape == (7, 8, 8, 1)
    np.testing.assert_array_equal(frames[[0, 3, 6]], images[:3])
    mixed = g.arithmetic(z[:2], z[2:4], z[4:5], variants=2, noise=0.0)
    np.testing.assert_array_equal(mixed[0], g.generate((z[:2].mean(0) - z[2:4].mean(0) + z[4])[None])[0])
    with pytest.raises(genrt.ShapeError, match=r"b: expected shape \(k, 16\)"):
        g.arithmetic(z[:2], z[:2, :3], z[:2])


def test_metadata_and_io_without_running(exported):
    d = genrt.load(exported["d"])
    assert d.kind == "discriminator" and d.metadata["version"] == genrt.__version__
    assert d.inputs[0].shape == ("batch", 1, "height", "width") or d.inputs[0].shape[1:] == (1, 8, 8)
    # genrt's kernel where its ONNX Runtime library is built (the fallback without it: the test below)
    want = "genrt kernel" if onnx_session.ort_ops_library() else "standard ONNX ops"
    assert d.kernels["MinibatchDiscrimination"].startswith(want)
    # its 4x4 stride-2 convolutions are genrt.Conv candidates, decided per size class on first use
    assert set(d.kernels) <= {"MinibatchDiscrimination", "Conv"}
    assert d.kernels.get("Conv", "chosen per input size class").startswith("chosen per input size class")


def test_native_model_falls_back_to_standard_ops_without_library(exported, monkeypatch):
    # a build without the library: every name the runtime reaches it by (ort_runner imports it too, and on a CPU
    # where genrt.Conv wins a layer, a session would otherwise ask for the library the loader was told is absent)
    monkeypatch.setattr(onnx_session, "ort_ops_library", lambda device="cpu": None)
    monkeypatch.setattr(ort_runner, "ort_ops_library", lambda device="cpu": None)
    monkeypatch.setattr(onnx_session, "_warned_no_library", False)
    with pytest.warns(RuntimeWarning, match="not built"):
        d = genrt.load(exported["d"])
    assert "standard ONNX ops" in d.kernels["MinibatchDiscrimination"]
    x = torch.randn(7, 1, 8, 8)
    np.testing.assert_allclose(d(x.numpy()), exported["modules"][1](x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_concurrent_calls_equal_sequential(exported):
    d = genrt.load(exported["d"], threads=2)
    xs = [np.random.default_rng(i).standard_normal((8, 1, 8, 8)).astype(np.float32) for i in range(16)]
    expected = [d(x) for x in xs]
    results = [None] * len(xs)

    def work(i):
        results[i] = d(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_onnx_path_needs_no_torch(exported):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import genrt\n"
        f"g = genrt.load({str(exported['g'])!r}); print(g.sample(2, seed=0).shape)\n"
        f"d = genrt.load({str(exported['d'])!r}); print(d.kernels)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "(2, 8, 8, 1)" in out and "MinibatchDiscrimination" in out


def test_bad_files(tmp_path, exported):
    cases = {}
    cases["empty.onnx"] = b""
    cases["pickle.pt"] = pickle.dumps({"weights": [1, 2, 3]})
    cases["pickle.onnx"] = pickle.dumps([1, 2, 3], protocol=2)
    cases["garbage.onnx"] = b"\x07this is not a model at all"
    cases["truncated.onnx"] = exported["g"].read_bytes()[:200]
    cases["text.pt2"] = b"hello"
    cases["model.bin"] = b"whatever"
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"w": torch.zeros(2)}, tmp_path / "checkpoint.pt")  # zip holding a pickle
    with zipfile.ZipFile(tmp_path / "other.pt2", "w") as z:
        z.writestr("x/data.pkl", pickle.dumps(1))
    expectations = {
        "empty.onnx": "empty",
        "pickle.pt": "pickle",
        "pickle.onnx": "pickle",
        "garbage.onnx": "not a readable ONNX model",
        "truncated.onnx": "not a readable ONNX model|no nodes|cannot load",
        "text.pt2": "not a pt2 archive",
        "model.bin": "unknown model format",
        "checkpoint.pt": "not a TorchScript archive",
        "other.pt2": "torch cannot load",
    }
    for name, match in expectations.items():
        with pytest.raises(genrt.InvalidModelError, match=match):
            genrt.load(tmp_path / name)
    with pytest.raises(genrt.ModelNotFoundError, match="no such file"):
        genrt.load(tmp_path / "missing.onnx")
    with pytest.raises(genrt.ModelNotFoundError, match="is not a file"):
        genrt.load(tmp_path)


def test_bad_inputs(exported):
    g = genrt.load(exported["g"])
    d = genrt.load(exported["d"])
    with pytest.raises(genrt.ShapeError, match=r"z: expected 2-D input"):
        g(np.zeros((3, 16, 1), np.float32))
    with pytest.raises(genrt.ShapeError, match="axis 1 must be 16"):
        g(np.zeros((3, 15), np.float32))
    with pytest.raises(genrt.DTypeError, match="expected float32, got bool"):
        g(np.zeros((3, 16), bool))
    with pytest.raises(genrt.DTypeError, match="expected float32, got str"):
        g(np.array([["a"] * 16]))
    with pytest.raises(genrt.ArgumentError, match="missing inputs"):
        g()
    with pytest.raises(genrt.ArgumentError, match="not an input"):
        g(w=np.zeros((1, 16)))
    with pytest.raises(genrt.ModelKindError, match=r"sample\(\) needs a generator model; .* kind 'discriminator'"):
        d.sample(2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(genrt.ArgumentError, match="n: expected a positive integer"):
            g.sample(bad)
    with pytest.raises(genrt.ArgumentError, match="method"):
        g.interpolate(np.zeros(16), np.ones(16), 3, method="cubic")
    with pytest.raises(genrt.ShapeError, match=r"z0: expected shape \(16,\)"):
        g.interpolate(np.zeros(15), np.ones(16), 3)
    with pytest.raises(genrt.ArgumentError, match="device"):
        genrt.load(exported["g"], device="tpu")
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        with pytest.raises(genrt.GenrtError, match="no CUDA provider"):
            genrt.load(exported["g"], device="cuda")


def test_model_without_genrt_metadata(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "relu.onnx")
    model = genrt.load(tmp_path / "relu.onnx")
    assert model.kind is None and model.metadata == {}
    np.testing.assert_array_equal(model(np.array([[-1.0, 0.0, 2.0]], np.float32)), [[0, 0, 2]])
    with pytest.raises(genrt.ModelKindError, match=r"sample\(\) needs a generator model; .* has no genrt metadata"):
        model.sample(1)
    assert not hasattr(model, "interpolate")


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/genrt-pwned",))


def test_pt2_loading_never_unpickles(tmp_path, monkeypatch):
    import os

    g, _ = make()
    path = genrt.export(g, tmp_path / "g.pt2", torch.randn(2, 16), kind="generator")
    blob = pickle.dumps(_Payload())
    real = torch.export.load

    def load_with_pickled_constant(*args, **kwargs):  # what torch.export.load does for some constants
        pickle.loads(blob)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.export, "load", load_with_pickled_constant)
    if os.path.exists("/tmp/genrt-pwned"):
        os.unlink("/tmp/genrt-pwned")
    with pytest.raises(genrt.InvalidModelError, match="needs Python unpickling"):
        genrt.load(path)
    assert not os.path.exists("/tmp/genrt-pwned")
    assert pickle.loads(pickle.dumps(1)) == 1  # restored afterwards
