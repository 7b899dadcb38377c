"""Tiny runs of the semi-supervised GAN classifier and InfoGAN: losses, protocol, export, metrics."""

import json
import math

import numpy as np
import pytest
import torch

import genrt
from tests.training.conftest import tiny
from training import data, infogan, ssgan
from training.loop import train


def test_labelled_subset_is_per_class_within_the_training_images():
    labels = data.load("digits", 8).labels
    idx = ssgan.labelled_subset(labels, 1347, 10, 10, seed=3)
    assert len(idx) == 100 and idx.max() < 1347 and len(set(idx.tolist())) == 100
    assert np.bincount(labels[idx].numpy(), minlength=10).tolist() == [10] * 10
    assert torch.equal(idx, ssgan.labelled_subset(labels, 1347, 10, 10, seed=3))
    assert not torch.equal(idx, ssgan.labelled_subset(labels, 1347, 10, 10, seed=4))


def test_unsupervised_loss_is_the_k_plus_1_class_likelihood():
    # -log p(real|x) with a fixed fake logit 0 is softplus(lse) - lse; softmax over K+1 classes gives the same
    logits = torch.randn(5, 10)
    lse = torch.logsumexp(logits, 1)
    full = torch.cat([logits, torch.zeros(5, 1)], 1)
    p_fake = torch.softmax(full, 1)[:, -1]
    torch.testing.assert_close(torch.nn.functional.softplus(lse) - lse, -torch.log(1 - p_fake))
    torch.testing.assert_close(torch.nn.functional.softplus(lse), -torch.log(p_fake))


@pytest.mark.parametrize("supervised_only", [False, True])
def test_ssgan_run_exports_a_classifier_and_measures_it(tmp_path, supervised_only):
    cfg = tiny(ssgan.SSGANConfig, tmp_path, image_size=16, width=8, supervised_only=supervised_only, max_steps=3)
    metrics = ssgan.run(cfg)
    assert metrics["test_images"] == 450 and 0.0 <= metrics["test_accuracy"] <= 1.0
    c = genrt.load(tmp_path / "run" / "classifier.onnx")
    assert c.kind == "classifier" and c.metadata["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    assert c.predict(np.zeros((2, 8, 8), np.uint8)).shape == (2,)


def test_ssgan_compare_table(tmp_path, capsys):
    cfg = tiny(ssgan.SSGANConfig, tmp_path, image_size=16, width=8, max_steps=2, compare_seeds="0,1")
    result = ssgan.compare(cfg)
    assert set(result["per_seed"]["ssgan"]) == {0, 1} and result["labels"] == 100
    assert "| supervised |" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "compare.json").read_text())["summary"]["ssgan"]["std"] >= 0


def test_infogan_run_and_category_match(tmp_path):
    seen = []
    cfg = tiny(infogan.InfoGANConfig, tmp_path, base_width=8, max_steps=4)
    parts = train(cfg, infogan.build, on_step=lambda s, p, losses: seen.append(losses))
    assert all(math.isfinite(v) for losses in seen for v in losses.values())
    assert "Q" in json.loads((tmp_path / "run" / "checkpoint.json").read_text())["state"]["modules"]
    path = infogan.export(parts, cfg, "digits", tmp_path / "i.onnx")
    m = genrt.load(path)
    assert m.kind == "infogan" and m.codes["categorical"] == [10]
    result = infogan.category_match(path, per_category=5)
    assert result["samples"] == 50 and 0.0 <= result["category_digit_match"] <= 1.0
    assert sorted(result["assignment"].values()) == list(range(10))
    assert np.asarray(result["confusion"]).sum() == 50


def test_infogan_mutual_information_term_is_learnable():
    # Q alone learns to read the codes back from G's images: the info loss falls well below log(10)
    torch.manual_seed(0)
    cfg = infogan.InfoGANConfig(base_width=8)
    parts = infogan.build(cfg, (1, 16, 16), "cpu")
    G, D, Q = parts.G.G, parts.D, parts.extra["Q"]
    opt = torch.optim.Adam(list(G.parameters()) + list(D.parameters()) + list(Q.parameters()), lr=1e-3)
    first = None
    for _ in range(60):
        latent, cat, cont = infogan.sample_latent(64, cfg, "cpu")
        loss, acc = infogan.info_loss(Q, D(G(latent))[1], cat, cont, cfg)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert acc.item() > 0.9 and loss.item() < 0.5 * first


def test_infogan_checks_the_latent_size():
    from genrt.errors import ArgumentError

    with pytest.raises(ArgumentError, match="latent_dim"):
        infogan.build(infogan.InfoGANConfig(latent_dim=100), (1, 16, 16), "cpu")


def test_infogan_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    flags = dict(base_width=4, max_steps=5, ckpt_every=2)
    whole = train(tiny(infogan.InfoGANConfig, tmp_path / "whole", **flags), infogan.build)

    def crash(step, parts, losses):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(infogan.InfoGANConfig, tmp_path / "killed", **flags), infogan.build, on_step=crash)
    resumed = train(tiny(infogan.InfoGANConfig, tmp_path / "killed", resume=True, **flags), infogan.build)
    for name in ("Q",):
        for a, b in zip(
            whole.extra[name].state_dict().values(), resumed.extra[name].state_dict().values(), strict=True
        ):
            torch.testing.assert_close(a, b)
    for a, b in zip(whole.G.state_dict().values(), resumed.G.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
