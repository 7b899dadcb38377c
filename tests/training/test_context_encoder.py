"""training/context_encoder.py: the paper's network and losses against plain PyTorch and numpy references, the
training masks, the harmonic fill, and tiny runs (exact resume, NaN detection, an export genrt runs like torch)."""

import json

import numpy as np
import pytest
import torch

import genrt
from genrt.apps.inpaint import Inpainter
from training import context_encoder as ce
from training.data import DataError
from training.loop import CheckpointError, DivergenceError


def tiny(tmp_path, **kw):
    base = dict(data="faces", size=16, out=str(tmp_path / "run"), steps=4, batch_size=4, width=4, max_width=8,
                ckpt_every=2, sample_every=100, progress=False, export=False, threads=1)  # fmt: skip
    return ce.CEConfig(**{**base, **kw})


def test_network_is_the_papers_encoder_bottleneck_decoder():
    net = ce.ContextEncoder(128, width=32, max_width=192)
    convs = [m for m in net.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (4, 32, (4, 4), (2, 2)), (32, 64, (4, 4), (2, 2)), (64, 128, (4, 4), (2, 2)), (128, 192, (4, 4), (2, 2)),
        (192, 192, (4, 4), (2, 2)),
    ]  # fmt: skip
    x = torch.rand(2, 3, 128, 128)
    m = ce.centre_mask(128).expand(2, -1, -1, -1)
    assert net.encoder(torch.cat([x, m], 1)).shape == (2, 192, 4, 4)
    assert net(x, m).shape == (2, 3, 128, 128)
    assert isinstance(net.bottleneck[0], ce.ChannelWiseFC)


def test_channel_wise_fc_is_one_dense_layer_per_channel():
    torch.manual_seed(0)
    layer = ce.ChannelWiseFC(5, 16)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(3, 5, 4, 4)
    y = layer(x)
    for c in range(5):
        ref = x[:, c].reshape(3, 16) @ layer.weight[c] + layer.bias[c]  # (3, 16): channel c alone
        torch.testing.assert_close(y[:, c].reshape(3, 16), ref)


@pytest.mark.parametrize("skip", ce.SKIPS)
def test_the_hole_is_never_read(skip):
    torch.manual_seed(0)
    net = ce.ContextEncoder(32, width=4, max_width=8, skip=skip).eval()
    torch.nn.init.normal_(net.decoder[-1].weight, 0, 0.1)
    x = torch.rand(2, 3, 32, 32)
    m = ce.random_masks(2, 32)
    other = torch.where(m > 0.5, torch.rand_like(x), x)
    with torch.no_grad():
        torch.testing.assert_close(net(x, m), net(other, m))


def test_harmonic_fill_keeps_the_context_and_fills_a_linear_ramp_exactly():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    ramp = torch.stack([0.2 + 0.6 * xx, 0.8 - 0.5 * yy, 0.3 * xx + 0.4 * yy])[None]  # harmonic: its own solution
    known = 1 - ce.centre_mask(64)[None]
    fill = ce.harmonic_fill(ramp, known)
    torch.testing.assert_close(fill * known, ramp * known)
    assert (fill - ramp).abs().max() < 0.02


def test_harmonic_fill_approaches_laplaces_solution():
    """Against the Jacobi iteration of Laplace's equation run to convergence in numpy."""
    rng = np.random.default_rng(0)
    img = rng.random((1, 32, 32)).astype(np.float64)
    hole = np.zeros((32, 32), bool)
    hole[8:24, 6:26] = True
    ref = img.copy()
    ref[0, hole] = img[0, ~hole].mean()
    for _ in range(5000):
        padded = np.pad(ref[0], 1, mode="edge")
        nb = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
        ref[0, hole] = nb[hole]
    x, known = torch.from_numpy(img).float()[None], torch.from_numpy(~hole).float()[None, None]
    errors = [np.abs(ce.harmonic_fill(x, known, n)[0, 0].numpy()[hole] - ref[0, hole]).mean() for n in (0, 16, 64)]
    assert errors[0] > errors[1] > errors[2]  # more sweeps: closer to Laplace's solution (the default: 16)
    assert errors[1] < 0.025 and errors[2] < 0.005  # of a context of random values in [0, 1]


def test_biharmonic_fill_carries_gradients_into_the_hole():
    """A cubic polynomial solves the biharmonic equation (its bilaplacian is zero) and not Laplace's: the biharmonic
    sweeps fill it far closer than the harmonic fill, and keep the context exactly."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    cubic = torch.stack([0.2 + 0.8 * xx**2, 0.9 - 0.6 * yy**2 + 0.3 * xx * yy, 0.1 + 0.5 * xx**3])[None]
    known = 1 - ce.centre_mask(64)[None]
    hole = known[0, 0] < 0.5
    harmonic = ce.harmonic_fill(cubic, known)
    biharmonic = ce.harmonic_fill(cubic, known, iterations=8, biharmonic=True)
    torch.testing.assert_close(biharmonic * known, cubic * known)
    err_h = (harmonic - cubic)[..., hole].abs().mean()
    err_b = (biharmonic - cubic)[..., hole].abs().mean()
    assert err_b < 0.5 * err_h and err_b < 0.01, (err_b, err_h)  # measured: 0.0059 against 0.0197


def test_biharmonic_fill_keeps_a_constant_and_its_stencil_is_exact_in_float16():
    """The stencil is stored as integers (exact in float16): a constant image fills to itself, every sweep."""
    x = torch.full((1, 3, 64, 64), 0.7)
    known = 1 - ce.centre_mask(64)[None]
    torch.testing.assert_close(ce.harmonic_fill(x, known, 8, True), x, atol=1e-5, rtol=0)
    assert ce._BIHARMONIC.half().float().equal(ce._BIHARMONIC)


@pytest.mark.parametrize("kind", ce.MASKS)
def test_training_masks(kind):
    torch.manual_seed(0)
    m = ce.random_masks(32, 64, (kind,))
    assert m.shape == (32, 1, 64, 64) and set(m.unique().tolist()) <= {0.0, 1.0}
    cover = m.mean((1, 2, 3))
    assert (cover > 0).all() and (cover < 0.6).all()
    if kind == "centre":
        assert (m[:, :, 16:48, 16:48] == 1).all() and m.sum() == 32 * 32 * 32
    else:
        assert len({tuple(x.flatten().tolist()) for x in m}) == 32  # each one different


def test_loss_weights_are_the_papers_overlap():
    m = ce.centre_mask(32)[None]
    w = ce.loss_weights(m, 4, 10.0)[0, 0]
    assert (w[8:24, 8:24] == 1).all()
    assert (w[4:8, 4:28] == 10).all() and (w[24:28, 4:28] == 10).all()
    assert (w[:4] == 0).all() and (w[:, :4] == 0).all()


def test_held_out_data_is_not_trained_on():
    train, held = ce.training_set("faces", 16), ce.held_out_set("faces", 16)
    assert len(train) + len(held) == 100 and len(held) == ce.HELD_OUT_FACES
    d = (train[:, None] - held[None]).abs().flatten(2).mean(-1)  # (train, held) mean differences
    assert d.min() > 0.01
    digits = ce.held_out_set("digits", 16)
    assert len(digits) == ce.HELD_OUT_DIGITS
    crops = ce.evaluation_crops(128)
    assert crops.shape == (30, 3, 128, 128)


def test_photo_windows_are_drawn_at_the_window_size():
    torch.manual_seed(0)
    w = ce.Windows("skimage", 64)
    x = w.draw(6)
    assert x.shape == (6, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
    assert x.std((1, 2, 3)).min() > 0.01


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole = ce.train(tiny(tmp_path / "whole", steps=6))

    def crash(step, net, losses):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ce.train(tiny(tmp_path / "killed", steps=6), on_step=crash)
    assert json.loads((tmp_path / "killed" / "run" / "checkpoint.json").read_text())["step"] == 2
    with pytest.raises(CheckpointError, match="pass --resume"):
        ce.train(tiny(tmp_path / "killed", steps=6))
    steps = []
    resumed = ce.train(tiny(tmp_path / "killed", steps=6, resume=True), on_step=lambda s, *_: steps.append(s))
    assert steps == [3, 4, 5, 6]
    a, b = whole.net.state_dict(), resumed.net.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert list((tmp_path / "killed" / "run" / "samples").glob("*.png"))


def test_nan_is_detected(tmp_path):
    def poison(step, net, losses):
        with torch.no_grad():
            next(net.parameters()).fill_(float("nan"))

    with pytest.raises(DivergenceError):
        ce.train(tiny(tmp_path, steps=4), on_step=poison)


def test_export_runs_in_genrt_like_torch(tmp_path):
    run = ce.train(tiny(tmp_path, steps=2, export=True, export_weights="float32", adv_weight=0.0))
    model = genrt.load(run.export)
    assert isinstance(model, Inpainter) and model.kind == "inpainter" and model.size == 16
    assert [tuple(i.shape) for i in model.inputs] == [("batch", 3, 16, 16), ("batch", 1, 16, 16)]  # one window size
    torch.manual_seed(1)
    torch.nn.init.normal_(run.net.decoder[-1].weight, 0, 0.1)  # not the zero start: a real correction
    path = ce.export_inpainter(run.net, run.cfg, tmp_path / "again.onnx")
    model = genrt.load(path)
    x, m = torch.rand(3, 3, 16, 16), ce.random_masks(3, 16)
    with torch.no_grad():
        ref = run.net.eval()(x, m).clamp(0, 1).numpy()
    np.testing.assert_allclose(model(x.numpy(), m.numpy()), ref, atol=1e-5)


def test_bad_configs_fail_before_any_work(tmp_path):
    for bad in (dict(size=24), dict(skip="bicubic"), dict(masks="circle"), dict(batch_size=1), dict(adv_weight=-1)):
        with pytest.raises(genrt.GenrtError):
            ce.train(tiny(tmp_path, **bad))
        assert not (tmp_path / "run").exists()
    with pytest.raises(DataError):
        ce.train(tiny(tmp_path, data="nowhere"))


def test_evaluation_photos_are_refused_in_a_folder(tmp_path):
    import shutil

    from training.style import _evaluation_paths

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(_evaluation_paths()[0], folder / "holiday.jpg")
    with pytest.raises(DataError, match="evaluation image"):
        ce.train(tiny(tmp_path, data=f"folder:{folder}", size=32))


def test_untrained_network_is_the_harmonic_fill():
    x, m = torch.rand(2, 3, 32, 32), ce.random_masks(2, 32)
    with torch.no_grad():
        exact = ce.ContextEncoder(32, width=4, max_width=8, tail_init=0.0).eval()(x, m)
        near = ce.ContextEncoder(32, width=4, max_width=8).eval()(x, m)
    fill = ce.harmonic_fill(x, 1 - m)
    torch.testing.assert_close(exact, fill)
    assert 0 < (near - fill).abs().max() < 0.1  # the default: a small correction, so gradients reach the encoder
