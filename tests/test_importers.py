"""genrt.importers: pretrained .pth/.safetensors files -> genrt models, checked against plain torch.

python -m pytest -q tests/test_importers.py

Random weights in the real layouts (Real-ESRGAN's RRDBNet and SRVGGNetCompact, fast_neural_style's TransformerNet);
references: spandrel's own call for the super-resolution family, a functional TransformerNet written here.
"""

import argparse
import pickle
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import genrt  # noqa: E402
import genrt.cli  # noqa: E402
from genrt import importers  # noqa: E402
from genrt.errors import ArgumentError, InvalidModelError, ModelNotFoundError  # noqa: E402

pytestmark = pytest.mark.torch

try:
    spandrel = importers._spandrel()
except genrt.errors.MissingDependencyError:
    spandrel = None
needs_spandrel = pytest.mark.skipif(spandrel is None, reason="spandrel is not installed")


# --- random state dicts in the published layouts ---------------------------------------------------------------------


def _conv(sd, gen, name, cout, cin, k=3, gain=1.0, bias=0.0):
    sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=gen) * (gain / (cin * k * k) ** 0.5)
    sd[f"{name}.bias"] = torch.randn(cout, generator=gen) * 0.02 + bias


def rrdbnet(scale=4, num_feat=16, num_block=1, seed=0):
    """Real-ESRGAN's RRDBNet (BasicSR key names; RealESRGAN_x4plus: num_feat 64, num_block 23, growth 32).
    Scales 2 and 1 take the pixel-unshuffled input (12 and 48 channels), as Real-ESRGAN's x2 model does."""
    gen, sd, grow = torch.Generator().manual_seed(seed), {}, 32  # spandrel reads the growth channels as 32
    _conv(sd, gen, "conv_first", num_feat, {4: 3, 2: 12, 1: 48}[scale])
    for b in range(num_block):
        for r in (1, 2, 3):
            for k in range(1, 6):
                _conv(sd, gen, f"body.{b}.rdb{r}.conv{k}", grow if k < 5 else num_feat, num_feat + (k - 1) * grow)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        _conv(sd, gen, name, num_feat, num_feat)
    _conv(sd, gen, "conv_last", 3, num_feat, gain=0.5, bias=0.5)
    return sd


def srvgg_compact(scale=4, num_feat=16, num_conv=4, seed=0):
    """Real-ESRGAN's SRVGGNetCompact: body = conv, PReLU, (conv, PReLU) * num_conv, conv to 3 * scale^2."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    _conv(sd, gen, "body.0", num_feat, 3)
    sd["body.1.weight"] = torch.full((num_feat,), 0.25)
    for i in range(num_conv):
        _conv(sd, gen, f"body.{2 * i + 2}", num_feat, num_feat)
        sd[f"body.{2 * i + 3}.weight"] = torch.full((num_feat,), 0.25)
    _conv(sd, gen, f"body.{2 * num_conv + 2}", 3 * scale * scale, num_feat, gain=0.3)
    return sd


_TN_CONVS = [("conv1", 32, 3, 9), ("conv2", 64, 32, 3), ("conv3", 128, 64, 3)]
_TN_CONVS += [(f"res{i}.conv{j}", 128, 128, 3) for i in range(1, 6) for j in (1, 2)]
_TN_CONVS += [("deconv1", 64, 128, 3), ("deconv2", 32, 64, 3), ("deconv3", 3, 32, 9)]
_TN_NORMS = [("in1", 32), ("in2", 64), ("in3", 128)] + [(f"res{i}.in{j}", 128) for i in range(1, 6) for j in (1, 2)]
_TN_NORMS += [("in4", 64), ("in5", 32)]


def transformer_net(seed=0, running_stats=True):
    """fast_neural_style's TransformerNet checkpoint: `<layer>.conv2d.*` convolutions, affine InstanceNorm2d `in*`,
    and (as old torch versions saved them) the norms' running_mean / running_var, which the README says to delete."""
    gen, sd = torch.Generator().manual_seed(seed), {}
    for name, cout, cin, k in _TN_CONVS:
        last = name == "deconv3"  # outputs around 128 +- 60: the 0-255 the network gives
        _conv(sd, gen, f"{name}.conv2d", cout, cin, k, gain=60.0 if last else 1.0, bias=128.0 if last else 0.0)
    for name, c in _TN_NORMS:
        sd[f"{name}.weight"] = 1.0 + 0.1 * torch.randn(c, generator=gen)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=gen)
        if running_stats:
            sd[f"{name}.running_mean"] = torch.randn(c, generator=gen)
            sd[f"{name}.running_var"] = torch.rand(c, generator=gen) + 0.5
    return sd


def reference_transformer_net(sd, x):
    """TransformerNet in plain torch.functional, from pytorch/examples' description: reflection-padded convolutions,
    instance norm, five residual blocks, nearest x2 upsampling before the two decoder convolutions."""

    def conv(name, y, stride=1, upsample=False):
        w = sd[f"{name}.conv2d.weight"]
        if upsample:
            y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = F.pad(y, [w.shape[-1] // 2] * 4, mode="reflect")
        return F.conv2d(y, w, sd[f"{name}.conv2d.bias"], stride=stride)

    def norm(name, y):  # instance statistics always: the checkpoint's running stats are stale
        return F.instance_norm(y, weight=sd[f"{name}.weight"], bias=sd[f"{name}.bias"], eps=1e-5)

    y = F.relu(norm("in1", conv("conv1", x)))
    y = F.relu(norm("in2", conv("conv2", y, stride=2)))
    y = F.relu(norm("in3", conv("conv3", y, stride=2)))
    for i in range(1, 6):
        r = F.relu(norm(f"res{i}.in1", conv(f"res{i}.conv1", y)))
        y = y + norm(f"res{i}.in2", conv(f"res{i}.conv2", r))
    y = F.relu(norm("in4", conv("deconv1", y, upsample=True)))
    y = F.relu(norm("in5", conv("deconv2", y, upsample=True)))
    return conv("deconv3", y)


def _save(sd, path, wrap=None):
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({wrap: sd} if wrap else sd, str(path))
    return path


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _assert_dynamic(path):
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]


def _interior(t, lo, hi):
    """Fraction of values strictly inside the clip range: a comparison of saturated outputs proves little."""
    return float(((t > lo + 0.01 * (hi - lo)) & (t < hi - 0.01 * (hi - lo))).float().mean())


# --- super-resolution, through spandrel ---------------------------------------------------------------------------


@needs_spandrel
@pytest.mark.parametrize(
    "make, scale, suffix, arch_id, arch",
    [
        (rrdbnet, 4, ".pth", "ESRGAN", "ESRGAN"),
        (rrdbnet, 2, ".safetensors", "ESRGAN", "ESRGAN"),  # pixel-unshuffled input: padded to 2 inside the graph
        (srvgg_compact, 4, ".safetensors", "Compact", "RealESRGAN Compact"),
    ],
)
def test_upscaler_matches_spandrel(tmp_path, make, scale, suffix, arch_id, arch):
    sd = make(scale=scale)
    src = _save(sd, tmp_path / f"model{suffix}", wrap="params_ema")  # how Real-ESRGAN ships its .pth files
    out = importers.import_model(src, tmp_path / "model.onnx")
    assert out == tmp_path / "model.onnx"
    _assert_dynamic(out)

    model = genrt.load(out)
    assert model.kind == "upscaler" and model.scale == scale
    meta = model.metadata
    assert meta["input_range"] == [0.0, 1.0] and meta["output_range"] == [0.0, 1.0]
    assert meta["source"]["file"] == src.name and meta["source"]["architecture"] == arch_id
    assert src.name in meta["description"] and arch in meta["description"]

    reference = spandrel.ModelLoader().load_from_state_dict(make(scale=scale)).eval()
    assert reference.architecture.name == arch and reference.scale == scale
    x = torch.rand(2, 3, 19, 23, generator=torch.Generator().manual_seed(1))  # odd sizes, batch 2
    expected = torch.cat([reference(x[i : i + 1]) for i in range(2)])  # spandrel's call: pads, crops, clips
    assert _interior(expected, 0, 1) > 0.5
    got = model(x.numpy())
    assert got.shape == (2, 3, 19 * scale, 23 * scale)
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-4)

    photo = _image(21, 30)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0
    expected = (reference(x)[0].permute(1, 2, 0).numpy() * 255.0).round()
    big = model.upscale(photo)
    assert big.shape == (21 * scale, 30 * scale, 3) and big.dtype == np.uint8
    assert np.abs(big.astype(np.int16) - expected).max() <= 1


@needs_spandrel
def test_full_size_real_esrgan_x4plus_detected():
    # RealESRGAN_x4plus.pth's layout: 64 features, 23 blocks, growth 32; detection and build only (no export).
    sd = {k: torch.zeros(v.shape) for k, v in rrdbnet(num_feat=64, num_block=23).items()}
    assert len(sd) == 2 * (1 + 23 * 3 * 5 + 4 + 1)  # conv_first, the blocks, body/up1/up2/hr, conv_last
    descriptor = importers._spandrel_model(sd, importers.Path("RealESRGAN_x4plus.pth"))
    assert descriptor.architecture.id == "ESRGAN" and descriptor.scale == 4
    assert {"64nf", "23nb"} <= set(descriptor.tags)
    net = importers._upscaler_module(descriptor)
    assert net(torch.zeros(1, 3, 5, 7)).shape == (1, 3, 20, 28)


# --- fast_neural_style -----------------------------------------------------------------------------------------------


def test_transformer_net_matches_reference_and_drops_running_stats(tmp_path):
    sd = transformer_net()
    assert any(k.endswith("running_mean") for k in sd)
    src = _save(sd, tmp_path / "candy.pth")
    out = importers.import_model(src, tmp_path / "candy.onnx", kind="stylizer")
    _assert_dynamic(out)

    model = genrt.load(out)
    assert model.kind == "stylizer"
    meta = model.metadata
    assert meta["input_range"] == [0.0, 255.0] and meta["output_range"] == [0.0, 255.0]
    assert meta["multiple"] == 4 and meta["style"] == "candy"
    assert "TransformerNet" in meta["description"] and "candy.pth" in meta["description"]

    weights = {k: v for k, v in sd.items() if "running" not in k}
    x = torch.rand(2, 3, 36, 44, generator=torch.Generator().manual_seed(1)) * 255.0
    with torch.no_grad():
        expected = reference_transformer_net(weights, x)
    assert _interior(expected, 0, 255) > 0.5
    got = model(x.numpy())
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-3)  # 1e-3 of 255: 4e-6 of the range
    np.testing.assert_allclose(got / 255.0, expected.numpy() / 255.0, rtol=0, atol=1e-4)

    photo = _image(40, 52)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        expected = reference_transformer_net(weights, x)[0].permute(1, 2, 0).clamp(0, 255).round().numpy()
    styled = model.stylize(photo)
    assert styled.shape == photo.shape and styled.dtype == np.uint8
    assert np.abs(styled.astype(np.int16) - expected).max() <= 1


def test_transformer_net_class_takes_the_checkpoint(tmp_path):
    sd = transformer_net(running_stats=False)
    src = _save(sd, tmp_path / "mosaic.safetensors")
    loaded = importers.load_state_dict(src)
    assert set(loaded) == set(sd)
    net = importers.TransformerNet().eval()
    net.load_state_dict(loaded)  # strict: the parameter names are the checkpoint's
    x = torch.rand(1, 3, 32, 40) * 255
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_transformer_net(sd, x), rtol=1e-5, atol=1e-3)


def test_transformer_net_wrong_shape_names_the_key(tmp_path):
    sd = transformer_net()
    sd["res3.conv1.conv2d.weight"] = torch.zeros(64, 128, 3, 3)
    with pytest.raises(InvalidModelError, match=r"res3\.conv1\.conv2d\.weight"):
        importers.import_model(_save(sd, tmp_path / "bad.pth"), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


@needs_spandrel
def test_kind_mismatch_refused(tmp_path):
    src = _save(srvgg_compact(), tmp_path / "x4.pth")
    with pytest.raises(InvalidModelError, match="--kind stylizer"):
        importers.import_model(src, tmp_path / "x4.onnx", kind="stylizer")
    with pytest.raises(ArgumentError, match="kind"):
        importers.import_model(src, tmp_path / "x4.onnx", kind="generator")


# --- unsafe and unknown files ----------------------------------------------------------------------------------------


def _touch(path):
    open(path, "w").close()


class _Payload:
    """Unpickling this creates a file: what a hostile checkpoint's code would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return _touch, (self.marker,)


def test_pickled_object_refused_and_never_run(tmp_path):
    live = tmp_path / "payload-works"
    pickle.loads(pickle.dumps(_Payload(live)))  # the payload is real: plain unpickling runs it
    assert live.exists()

    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pth"
    torch.save({"conv_first.weight": torch.zeros(1), "hook": _Payload(marker)}, str(src))
    with pytest.raises(InvalidModelError, match="refused.*pickled Python objects"):
        importers.import_model(src, tmp_path / "evil.onnx")
    assert not marker.exists()
    assert not (tmp_path / "evil.onnx").exists()


@needs_spandrel
def test_unknown_architecture_refused(tmp_path):
    sd = {"encoder.fc.weight": torch.zeros(8, 4), "encoder.fc.bias": torch.zeros(8)}
    with pytest.raises(InvalidModelError, match="no known architecture matches.*encoder.fc.weight"):
        importers.import_model(_save(sd, tmp_path / "mlp.safetensors"), tmp_path / "mlp.onnx")


@pytest.mark.parametrize(
    "content, match",
    [(b"", "empty"), (b"not a model at all", "not a torch.save or safetensors"), (None, "expected a state dict")],
)
def test_unreadable_files_refused(tmp_path, content, match):
    src = tmp_path / "m.pth"
    if content is None:
        torch.save(torch.zeros(3), str(src))  # a bare tensor, not a state dict
    else:
        src.write_bytes(content)
    with pytest.raises(InvalidModelError, match=match):
        importers.load_state_dict(src)
    with pytest.raises(ModelNotFoundError):
        importers.load_state_dict(tmp_path / "missing.pth")


def test_bad_output_refused(tmp_path):
    src = _save(transformer_net(), tmp_path / "s.pth")
    with pytest.raises(ArgumentError, match=r"\.onnx"):
        importers.import_model(src, tmp_path / "s.pt2")
    with pytest.raises(ArgumentError, match="does not exist"):
        importers.import_model(src, tmp_path / "nowhere" / "s.onnx")


# --- the `genrt import` command --------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    """genrt.cli.main with `import` registered (by genrt/cli.py itself once it calls importers.add_cli)."""
    make = genrt.cli._parser

    def parser():
        p = make()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        if "import" not in sub.choices:
            importers.add_cli(sub)
        return p

    monkeypatch.setattr(genrt.cli, "_parser", parser)
    return genrt.cli.main


@needs_spandrel
def test_cli_import(tmp_path, cli, capsys):
    src = _save(srvgg_compact(scale=2), tmp_path / "2x-compact.pth")
    assert cli(["import", str(src)]) == 0  # default output: beside the input, suffix .onnx
    out = capsys.readouterr().out
    assert re.search(r"wrote .*2x-compact\.onnx: upscaler x2, RealESRGAN Compact", out)
    assert "max |onnx - torch| = " in out
    assert genrt.load(tmp_path / "2x-compact.onnx").scale == 2


def test_cli_errors(tmp_path, cli, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"w": _Payload(marker)}, str(evil))
    assert cli(["import", str(evil), "-o", str(tmp_path / "e.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrt: error: ") and "refused" in err and err.count("\n") == 1
    assert not marker.exists()
    assert cli(["import", str(tmp_path / "missing.pth")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli(["import", str(evil), "--kind", "generator"]) == 2  # argparse's choices
    assert cli(["import", str(evil), "-o", str(tmp_path / "e.png")]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert cli(["import", "--help"]) == 0
    assert "genrt import RealESRGAN_x4plus.pth -o" in capsys.readouterr().out
