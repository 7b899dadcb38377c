"""genrt.export round trips: every format, native and portable, against the torch module."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

import genrt  # noqa: E402
from tests.tiny_models import make  # noqa: E402


@pytest.fixture(scope="module")
def models():
    return make()


def _close(got, expected):
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("suffix", [".onnx", ".pt2", ".pt"])
def test_generator_round_trip(models, tmp_path, suffix):
    g, _ = models
    path = genrt.export(g, tmp_path / f"g{suffix}", torch.randn(4, 16), kind="generator", metadata={"dataset": "x"})
    model = genrt.load(path)
    assert isinstance(model, genrt.runtime.Generator)
    assert model.metadata["kind"] == "generator" and model.metadata["dataset"] == "x"
    assert model.latent_dim == 16
    for batch in (1, 5):  # batch is dynamic, including batch 1
        z = torch.randn(batch, 16)
        _close(model(z.numpy()), g(z))
    if suffix != ".onnx":
        side = json.loads((tmp_path / f"g{suffix}.json").read_text())
        assert side["kind"] == "generator"


@pytest.mark.parametrize(("suffix", "portable"), [(".onnx", False), (".onnx", True), (".pt2", False), (".pt", False)])
def test_discriminator_with_minibatch_discrimination(models, tmp_path, suffix, portable):
    _, d = models
    path = genrt.export(d, tmp_path / f"d{suffix}", torch.randn(6, 1, 8, 8), kind="discriminator", portable=portable)
    model = genrt.load(path)
    x = torch.randn(9, 1, 8, 8)
    _close(model(x.numpy()), d(x))
    if suffix == ".onnx":
        domains = {n.domain for n in onnx.load(path).graph.node}
        assert ("genrt" in domains) != portable
        assert model.metadata["format"] == ("portable" if portable else "native")


def test_fully_convolutional_models_get_dynamic_height_and_width(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.ConvTranspose2d(4, 3, 3, 2, 1, 1)
    )
    path = genrt.export(net.eval(), tmp_path / "up.onnx", torch.randn(1, 3, 10, 12), kind="upscaler")
    model = genrt.load(path)
    assert model.inputs[0].shape == ("batch", 3, "height", "width")
    x = torch.randn(2, 3, 7, 21)
    _close(model(x.numpy()), net(x))


def test_portable_file_runs_in_plain_onnxruntime_without_genrt(models, tmp_path):
    _, d = models
    path = genrt.export(d, tmp_path / "d.onnx", torch.randn(6, 1, 8, 8), kind="discriminator", portable=True)
    x = torch.randn(5, 1, 8, 8)
    np.save(tmp_path / "x.npy", x.numpy())
    code = (
        "import sys, numpy as np\n"
        "sys.modules['genrt'] = None\n"  # genrt not importable
        "import onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(path)!r}, providers=['CPUExecutionProvider'])\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, s.run(None, {{s.get_inputs()[0].name: x}})[0])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    _close(np.load(tmp_path / "y.npy"), d(x))


def test_float16_weights_halve_the_file_and_fold_back_at_load(tmp_path):
    """weights="float16": half the bytes; plain ORT runs the file as it is, genrt.load folds the Casts into float32
    constants (so the ConvTranspose rewrite still sees constant weights), and both compute the module with its
    weights rounded to float16."""
    import onnxruntime as ort

    from genrt.runtime.onnx_session import load_onnx

    def net_():
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.ConvTranspose2d(64, 3, 4, 2, 1)
        ).eval()

    torch.manual_seed(0)
    net = net_()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(2, 3, 12, 12)
    full = genrt.export(net, tmp_path / "full.onnx", x, kind="model")
    half = genrt.export(net, tmp_path / "half.onnx", x, kind="model", weights="float16")

    def weight_bytes(path):
        return sum(len(t.raw_data) for t in onnx.load(path).graph.initializer)

    assert weight_bytes(half) < 0.55 * weight_bytes(full)
    assert half.stat().st_size < full.stat().st_size - 0.4 * weight_bytes(full)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the module's weights restored
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in onnx.load(half).graph.initializer}
    reference = net_()
    reference.load_state_dict({k: v.half().float() for k, v in before.items()})
    expected = reference(x).detach().numpy()
    assert np.abs(expected - net(x).detach().numpy()).max() > 1e-6  # the rounding is visible, so the check bites
    session = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    plain = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(plain, expected, rtol=1e-5, atol=1e-6)
    folded = load_onnx(half)
    assert not any(n.op_type == "Cast" for n in folded.graph.node)
    assert {t.data_type for t in folded.graph.initializer} == {onnx.TensorProto.FLOAT}
    for how in ("genrt", "ort"):
        model = genrt.runtime._load(half, conv_transpose=how)
        np.testing.assert_allclose(model(x.numpy()), expected, rtol=1e-4, atol=1e-5)


def test_failed_verification_raises_and_leaves_no_file(tmp_path):
    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + torch.rand_like(x)

    with pytest.raises(genrt.ExportError, match="verification failed"):
        genrt.export(Noisy(), tmp_path / "n.onnx", torch.randn(3, 4), kind="model")
    assert list(tmp_path.iterdir()) == []


def test_module_mode_is_restored(models, tmp_path):
    g, _ = models
    g.train()
    genrt.export(g, tmp_path / "g.onnx", torch.randn(2, 16), kind="generator")
    assert g.training
    g.eval()


def test_each_submodule_keeps_its_own_mode(tmp_path):
    inner = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).eval()
    wrapper = torch.nn.Sequential(inner)  # made in training mode around a network in eval mode
    genrt.export(wrapper, tmp_path / "w.onnx", torch.randn(2, 4), kind="model")
    assert wrapper.training and not inner.training and not inner[1].training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(path="g.onnx", kind="gan"), "kind: expected one of"),
        (dict(path="g.h5", kind="generator"), "path: suffix must be one of"),
        (dict(path="g.pt2", kind="generator", portable=True), "portable: only applies to .onnx"),
        (dict(path="g.onnx", kind="generator", metadata={"x": object()}), "JSON-serialisable"),
        (dict(path="missing/g.onnx", kind="generator"), "does not exist"),
        (dict(path="g.onnx", kind="generator", weights="int8"), "weights: expected"),
        (dict(path="g.pt2", kind="generator", weights="float16"), "only applies to .onnx"),
    ],
)
def test_bad_export_arguments(models, tmp_path, kwargs, match):
    g, _ = models
    kwargs["path"] = tmp_path / kwargs["path"]
    path = kwargs.pop("path")
    with pytest.raises(genrt.ArgumentError, match=match):
        genrt.export(g, path, torch.randn(2, 16), **kwargs)
