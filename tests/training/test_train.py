import json
import math

import numpy as np
import pytest
import torch

import genrt
from genrt.errors import GenrtError
from tests.training.conftest import tiny
from training import dcgan, gan, improved, r1
from training.loop import CheckpointError, DivergenceError, lr_factor, parse_config, train

TECHNIQUES = [
    {},
    {"feature_matching": True},
    {"minibatch_discrimination": True},
    {"historical_averaging": 0.01},
    {"label_smoothing": 0.1},
    {"vbn": True, "vbn_reference": 8},
    {"diff_augment": "translation,cutout"},
    {"pack": 2, "feature_matching": True},
    {"r1": 1.0},
    {"spectral_norm": True},
    {"k": 2, "g_width": 16, "lr_d": 4e-4},
]


def _run(module, cfg, **kwargs):
    seen = []
    parts = train(cfg, module.build, on_step=lambda s, p, losses: seen.append(losses), **kwargs)
    assert seen and all(math.isfinite(v) for losses in seen for v in losses.values())
    return parts


@pytest.mark.parametrize("flags", TECHNIQUES, ids=lambda f: "-".join(f) or "plain")
def test_dcgan_techniques_run(tmp_path, flags):
    parts = _run(dcgan, tiny(dcgan.DCGANConfig, tmp_path, **flags))
    assert (tmp_path / "run" / "checkpoint.json").is_file()
    assert (tmp_path / "run" / "samples" / "step_00000004.png").is_file()
    assert parts.G(torch.randn(3, 100)).shape == (3, 1, 32, 32)


@pytest.mark.parametrize("loss,k", [("non-saturating", 1), ("minimax", 2)])
def test_gan_runs(tmp_path, loss, k):
    _run(gan, tiny(gan.GANConfig, tmp_path, loss=loss, k=k))


def test_dcgan_64x64_shapes():
    G = dcgan.Generator(100, 3, 64, 16)
    D = dcgan.Discriminator(3, 64, 16, mbd=(10, 3))
    x = G(torch.randn(4, 100))
    assert x.shape == (4, 3, 64, 64) and x.abs().max() <= 1.0
    logits, feats = D(x)
    assert logits.shape == (4,) and feats.shape == (4, 16 * 8 * 16)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in G.modules()) == 5  # 4x4 + 4 doublings


def test_packed_discriminator_judges_packs():
    D = dcgan.Discriminator(1, 32, 8, pack=2)
    x = torch.randn(6, 1, 32, 32)
    logits, feats = D(x)
    assert logits.shape == (3,) and feats.shape == (3, 32 * 16)
    # a pack is its samples side by side as channels: the same as an unpacked D on (3, 2, 32, 32)
    plain = dcgan.Discriminator(2, 32, 8)
    plain.load_state_dict(D.state_dict())
    torch.testing.assert_close(plain(x.reshape(3, 2, 32, 32))[0], logits)
    with pytest.raises(GenrtError, match="pack: a batch of 5 does not split into packs of 2"):
        D(x[:5])


def _params(parts):
    return {f"{k}.{n}": t.clone() for k, m in (("G", parts.G), ("D", parts.D)) for n, t in m.state_dict().items()}


@pytest.mark.parametrize(
    "module,cls,flags",
    [
        (gan, gan.GANConfig, {"k": 2, "diff_augment": "translation", "pack": 2}),  # dropout, augmentation: RNG
        (
            dcgan,
            dcgan.DCGANConfig,
            {
                "minibatch_discrimination": True,
                "historical_averaging": 0.01,
                "vbn": True,
                "vbn_reference": 8,
                "lr_decay": 0.5,
            },
        ),
        (dcgan, dcgan.DCGANConfig, {"r1": 0.1, "spectral_norm": True, "k": 2, "diff_augment": "translation"}),
    ],
    ids=["gan", "dcgan-all-techniques", "dcgan-r1-sn-k2"],
)
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, module, cls, flags):
    flags = {**flags, "max_steps": 7, "ckpt_every": 3}
    whole = train(tiny(cls, tmp_path / "whole", **flags), module.build)

    def crash(step, parts, losses):
        if step == 5:
            raise KeyboardInterrupt  # killed after step 5; the last checkpoint is at step 3

    cfg = tiny(cls, tmp_path / "killed", **flags)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, module.build, on_step=crash)
    meta = json.loads((tmp_path / "killed" / "run" / "checkpoint.json").read_text())
    assert meta["step"] == 3 and (tmp_path / "killed" / "run" / meta["tensors"]).is_file()

    steps = []
    resumed = train(
        tiny(cls, tmp_path / "killed", resume=True, **flags),
        module.build,
        on_step=lambda s, p, losses: steps.append(s),
    )
    assert steps == [4, 5, 6, 7]  # no more than the steps since the last checkpoint were redone
    a, b = _params(whole), _params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_same_seed_same_run(tmp_path):
    a = _params(train(tiny(gan.GANConfig, tmp_path / "a"), gan.build))
    b = _params(train(tiny(gan.GANConfig, tmp_path / "b"), gan.build))
    c = _params(train(tiny(gan.GANConfig, tmp_path / "c", seed=1), gan.build))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_nan_is_detected(tmp_path):
    def poison(step, parts, losses):
        if step == 2:
            with torch.no_grad():
                next(parts.D.parameters()).fill_(float("nan"))

    with pytest.raises(DivergenceError, match="step 3 .*loss_d = nan.*diverged") as info:
        train(tiny(dcgan.DCGANConfig, tmp_path, ckpt_every=100), dcgan.build, on_step=poison)
    assert isinstance(info.value, GenrtError) and "\n" not in str(info.value)


def test_nan_in_parameters_is_not_checkpointed(tmp_path):
    def poison(step, parts, losses):
        if step == 2:
            with torch.no_grad():
                next(parts.G.parameters())[0].fill_(float("inf"))

    # step 2 ends with a checkpoint; the poisoned parameters must not be written
    with pytest.raises(DivergenceError, match="not finite"):
        train(tiny(dcgan.DCGANConfig, tmp_path), dcgan.build, on_step=poison)
    assert not (tmp_path / "run" / "ckpt-00000002.safetensors").exists()


def test_cli_config_and_resume_mismatch(tmp_path):
    out = str(tmp_path / "run")
    cfg = parse_config(
        dcgan.DCGANConfig,
        [
            "--out",
            out,
            "--no-progress",
            "--batch-size",
            "16",
            "--max-steps",
            "2",
            "--no-export",
            "--minibatch-discrimination",
            "--label-smoothing",
            "0.1",
        ],
    )
    assert cfg.batch_size == 16 and cfg.minibatch_discrimination and cfg.label_smoothing == 0.1 and not cfg.vbn
    train(cfg, dcgan.build)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["minibatch_discrimination"] is True and saved["batch_size"] == 16
    again = parse_config(dcgan.DCGANConfig, ["--out", out, "--resume", "--batch-size", "32"])
    with pytest.raises(CheckpointError, match="--batch-size 32 differs"):
        train(again, dcgan.build)


def test_vbn_frozen_generator_matches_and_exports(tmp_path):
    torch.manual_seed(0)
    G = dcgan.Generator(16, 1, 32, 8, vbn_reference=8).eval()
    z = torch.randn(5, 16)
    with torch.no_grad():
        before = G(z)
        assert torch.allclose(G(z[:2]), before[:2], atol=1e-6)  # no dependence on the rest of the batch
        improved.freeze_reference(G, G.z_ref)
        after = G(z)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    path = genrt.export(G, tmp_path / "g.onnx", z, kind="generator", metadata={"description": "t"})
    assert genrt.load(path).sample(3, seed=0).shape == (3, 32, 32, 1)


def test_historical_average_is_the_mean_of_past_parameters():
    p = torch.nn.Parameter(torch.tensor([0.0]))
    h = improved.HistoricalAverage([p])
    for v in (1.0, 2.0, 3.0):
        with torch.no_grad():
            p.fill_(v)
        h.update()
    assert h.mean_0.item() == pytest.approx((0 + 1 + 2 + 3) / 4)  # not an exponential average
    with torch.no_grad():
        p.fill_(3.5)
    assert h.penalty().item() == pytest.approx(2.0**2)


@pytest.mark.slow
def test_end_to_end_export(tmp_path):
    cfg = tiny(dcgan.DCGANConfig, tmp_path, export=True, description="tiny test model", vbn=True, vbn_reference=8)
    train(cfg, dcgan.build)
    g = genrt.load(tmp_path / "run" / "generator.onnx")
    assert g.metadata["dataset"] == "digits" and g.metadata["description"] == "tiny test model"
    assert g.metadata["config"]["vbn"] is True
    assert g.sample(4, seed=0).shape == (4, 32, 32, 1)

    # resuming the finished run with another description only re-exports it: same weights, new metadata
    steps = []
    train(
        tiny(dcgan.DCGANConfig, tmp_path, export=True, description="renamed", vbn=True, vbn_reference=8, resume=True),
        dcgan.build,
        on_step=lambda s, p, losses: steps.append(s),
    )
    again = genrt.load(tmp_path / "run" / "generator.onnx")
    assert steps == [] and again.metadata["description"] == "renamed"
    np.testing.assert_array_equal(again.sample(8, seed=1), g.sample(8, seed=1))


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    train(tiny(gan.GANConfig, tmp_path, max_steps=2), gan.build)
    with pytest.raises(CheckpointError, match="already holds a run; pass --resume"):
        train(tiny(gan.GANConfig, tmp_path, max_steps=2), gan.build)


def test_dcgan_trains_at_64x64(tmp_path):
    parts = _run(dcgan, tiny(dcgan.DCGANConfig, tmp_path, image_size=64, base_width=8, max_steps=2, vbn=True))
    assert parts.G(torch.randn(2, 100)).shape == (2, 1, 64, 64)


def test_lr_decay_is_linear_over_the_last_fraction(tmp_path):
    assert [lr_factor(s, 10, 0.4) for s in range(10)] == [1, 1, 1, 1, 1, 1, 1.0, 0.75, 0.5, 0.25]
    assert lr_factor(5, 10, 0.0) == 1.0
    seen = []
    cfg = tiny(dcgan.DCGANConfig, tmp_path, max_steps=4, lr_decay=0.5)
    train(cfg, dcgan.build, on_step=lambda s, p, losses: seen.append(p.optimizers["G"].param_groups[0]["lr"]))
    assert seen == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4])  # steps 0-3 of 4: the last two decay (1, 0.5)


def test_dcgan_k_updates_g_every_kth_step_and_d_every_step(tmp_path):
    seen = []

    def snapshot(step, parts, losses):
        params = [p.detach().clone() for p in (*parts.G.parameters(), *parts.D.parameters())]
        seen.append((step, sorted(losses), params))

    train(tiny(dcgan.DCGANConfig, tmp_path, k=2, max_steps=4), dcgan.build, on_step=snapshot)
    n_g = len(list(dcgan.Generator(100, 1, 32, 32).parameters()))
    for (_, _, before), (step, names, after) in zip(seen[:-1], seen[1:], strict=True):
        g_moved = any(not torch.equal(a, b) for a, b in zip(before[:n_g], after[:n_g], strict=True))
        d_moved = any(not torch.equal(a, b) for a, b in zip(before[n_g:], after[n_g:], strict=True))
        assert d_moved and g_moved == (step % 2 == 0)
        assert names == (["loss_d", "loss_g"] if step % 2 == 0 else ["loss_d"])


def test_dcgan_g_width_and_lr_d_apply_to_one_player_each(tmp_path):
    parts = dcgan.build(tiny(dcgan.DCGANConfig, tmp_path, g_width=16, lr_d=1e-3), (1, 32, 32), "cpu")
    assert parts.G.net[0].out_channels == 16 * 4 and parts.D.net[0].out_channels == 32  # D keeps base_width
    assert parts.optimizers["G"].param_groups[0]["lr"] == 2e-4
    assert parts.optimizers["D"].param_groups[0]["lr"] == 1e-3
    with pytest.raises(GenrtError, match="k"):
        dcgan.build(tiny(dcgan.DCGANConfig, tmp_path, k=0), (1, 32, 32), "cpu")


def test_r1_penalty_is_the_squared_input_gradient():
    # D(x) = sum_j a_j x_j^2 + w . x per sample: grad_x = 2 a x + w, so the penalty and its gradient in w are known
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
    a = torch.randn(3, generator=gen, dtype=torch.float64)
    w = torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_(True)
    logits = (a * x**2).sum(1) + x @ w
    penalty = r1.r1_penalty(logits, x)
    g = 2 * a.numpy() * x.detach().numpy() + w.detach().numpy()  # (5, 3)
    assert penalty.item() == pytest.approx((g**2).sum(1).mean(), rel=1e-12)
    penalty.backward()  # through create_graph: d/dw mean_i ||g_i||^2 = mean_i 2 g_i
    np.testing.assert_allclose(w.grad.numpy(), (2 * g).mean(0), rtol=1e-12)


def test_spectral_norm_discriminator_has_unit_spectral_norms_and_no_batch_norm():
    torch.manual_seed(0)
    D = dcgan.Discriminator(1, 32, 8, spectral_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    for _ in range(300):  # one power iteration per training-mode forward
        D(torch.randn(4, 1, 32, 32))
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4
    for m in convs:
        sigma = np.linalg.svd(m.weight.detach().flatten(1).double().numpy(), compute_uv=False)[0]
        assert sigma == pytest.approx(1.0, rel=1e-4)
