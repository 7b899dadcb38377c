"""Tiny runs of the VAE and RBM papers: losses, checkpoints and resume, export, and the RBM's AIS."""

import json
import math

import numpy as np
import pytest
import torch

import genrt
from tests.training.conftest import tiny
from training import rbm, vae
from training.loop import train


def _losses(module, cfg):
    seen = []
    parts = train(cfg, module.build, on_step=lambda s, p, losses: seen.append(losses))
    assert seen and all(math.isfinite(v) for losses in seen for v in losses.values())
    return parts, seen


def test_vae_elbo_terms_match_a_direct_computation():
    torch.manual_seed(0)
    enc, dec = vae.Encoder(1, 8, 4, 3), vae.Decoder(1, 8, 4, 3)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    torch.manual_seed(1)
    loss, rec, kl = vae.negative_elbo(enc, dec, x)
    mu, logvar = enc(x)
    torch.manual_seed(1)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    p = torch.sigmoid(dec(z))
    t = (x + 1) / 2
    want_rec = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).flatten(1).sum(1)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    want_kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(rec, want_rec, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(kl, want_kl, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, rec + kl)


def test_vae_run_checkpoints_and_resumes(tmp_path):
    flags = dict(latent_dim=2, width=4, image_size=16, max_steps=5, ckpt_every=2, train_images=200)
    whole, _ = _losses(vae, tiny(vae.VAEConfig, tmp_path / "whole", **flags))

    def crash(step, parts, losses):
        if step == 3:
            raise KeyboardInterrupt

    cfg = tiny(vae.VAEConfig, tmp_path / "killed", **flags)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, vae.build, on_step=crash)
    resumed = train(tiny(vae.VAEConfig, tmp_path / "killed", resume=True, **flags), vae.build)
    for a, b in zip(whole.D.state_dict().values(), resumed.D.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert (tmp_path / "killed" / "run" / "samples" / "step_00000005.png").is_file()


def test_vae_main_exports_and_measures_held_out_elbo(tmp_path):
    out = tmp_path / "vae"
    argv = ["--image-size", "8", "--latent-dim", "2", "--width", "4", "--max-steps", "3", "--batch-size", "16"]
    vae.main([*argv, "--train-images", "1700", "--out", str(out), "--no-progress", "--threads", "1"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out"]["n"] == 97 and metrics["held_out"]["elbo"] < 0
    m = genrt.load(out / "vae.onnx")
    assert m.kind == "vae" and m.metadata["likelihood"] == "bernoulli" and m.metadata["metrics"] == metrics
    assert m.manifold(3).shape == (24, 24, 1)


@pytest.mark.parametrize("flags", [{}, {"persistent": True, "cd_k": 2}], ids=["cd1", "pcd2"])
def test_rbm_runs_and_lowers_reconstruction_error(tmp_path, flags):
    parts, seen = _losses(
        rbm, tiny(rbm.RBMConfig, tmp_path, image_size=8, epochs=3, max_steps=300, lr=0.1, ckpt_every=100, **flags)
    )
    assert np.mean([s["recon"] for s in seen[-20:]]) < 0.8 * np.mean([s["recon"] for s in seen[:20]])
    assert (tmp_path / "run" / "samples" / "step_00000300.png").is_file()
    if flags:
        saved = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
        assert "chains" in saved["state"]["modules"]  # the fantasy particles are checkpointed


def test_rbm_cd_gradient_is_the_free_energy_difference():
    # With the negative samples fixed, the CD update equals d/dtheta [F(v_data) - F(v_neg)] (means over the batch).
    torch.manual_seed(0)
    r = rbm.RBM((1, 3, 3), 4)
    with torch.no_grad():
        r.c.normal_()
    v0, vk = torch.rand(6, 9), torch.rand(6, 9)
    (r.free_energy(v0).mean() - r.free_energy(vk).mean()).backward()
    ph0, phk = r.p_h(v0).detach(), r.p_h(vk).detach()
    torch.testing.assert_close(r.W.grad, (vk.T @ phk - v0.T @ ph0) / 6)
    torch.testing.assert_close(r.b.grad, vk.mean(0) - v0.mean(0))
    torch.testing.assert_close(r.c.grad, phk.mean(0) - ph0.mean(0))


def test_ais_matches_the_exact_partition_function():
    rng = np.random.default_rng(0)
    W, b, c = rng.normal(0, 0.5, (12, 6)), rng.normal(0, 1, 12), rng.normal(0, 1, 6)
    exact = rbm.exact_log_partition(W, b, c)
    # brute force over the visible states agrees with the enumeration over hidden ones
    v = ((np.arange(2**12)[:, None] >> np.arange(12)) & 1).astype(float)
    assert exact == pytest.approx(np.logaddexp.reduce(rbm.unnormalised_log_prob(W, b, c, v)), abs=1e-9)
    est, err = rbm.ais_log_partition(W, b, c, np.zeros(12), runs=200, betas=np.linspace(0, 1, 2001), seed=0)
    assert est == pytest.approx(exact, abs=max(0.05, 4 * err))


def test_rbm_main_exports_and_evaluates(tmp_path):
    out = tmp_path / "rbm"
    argv = ["--latent-dim", "8", "--max-steps", "5", "--ais-steps", "50", "--ais-runs", "10", "--train-images", "1347"]
    rbm.main([*argv, "--out", str(out), "--no-progress", "--threads", "1"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["logistic_regression"]["C=1"]) == {"rbm_features", "raw_pixels"}
    assert metrics["ais"]["test_loglik_binarised"] < 0
    m = genrt.load(out / "rbm.onnx")
    assert m.kind == "rbm" and m.hidden == 8 and m.metadata["training"] == "CD-1"
