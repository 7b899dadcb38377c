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


def test_weight_normalised_classifier_exports_plain_weights_and_stays_trainable():
    torch.manual_seed(0)
    D = ssgan.Classifier(1, 10, 8, 0.5, noise=0.3, weight_norm=True).eval()
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    plain = ssgan.plain_copy(D)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], D(x)[0])
    D.train()
    D(x)[0].sum().backward()  # D itself is untouched by the copy (remove_parametrizations would break it)
    assert D.head.parametrizations.weight.original1.grad is not None


def test_class_balance_reweights_towards_uniform():
    balance = ssgan.ClassBalance(3, momentum=0.0)  # momentum 0: the running mean is this batch's mean
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1]])
    out = balance(probs)
    mean = probs.mean(0)
    expected = probs / (3 * mean)
    torch.testing.assert_close(out, expected / expected.sum(1, keepdim=True))
    torch.testing.assert_close(balance.mean, mean)


def test_ssgan_with_consistency_ema_and_alignment_exports_the_moving_average(tmp_path):
    cfg = tiny(
        ssgan.SSGANConfig,
        tmp_path,
        image_size=16,
        width=8,
        max_steps=3,
        consistency=1.0,
        confidence=0.0,
        ema=0.5,
        align=True,
        weight_norm=True,
        noise=0.1,
    )
    seen = []
    parts = train(cfg, ssgan.build, on_step=lambda s, p, losses: seen.append(losses))
    assert all(math.isfinite(v) for losses in seen for v in losses.values()) and seen[-1]["mask"] == 1.0
    state = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["state"]["modules"]
    assert {"EMA", "balance"} <= set(state)
    path = ssgan.export(parts, cfg, "digits", tmp_path / "c.onnx")
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        ema, live = parts.extra["EMA"].eval()(x)[0], parts.D.eval()(x)[0]
    import onnxruntime as ort

    got = ort.InferenceSession(str(path)).run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, ema.numpy(), atol=1e-5)
    assert not np.allclose(got, live.numpy(), atol=1e-5)


def test_label_spreading_baseline_uses_the_protocol():
    cfg = ssgan.SSGANConfig(label_seed=0)
    acc = ssgan.label_spreading_accuracy(cfg)
    assert 0.9 < acc < 1.0  # scikit-learn's k-NN graph on 100 labels (0.938 on seed 0)
    assert acc != ssgan.label_spreading_accuracy(ssgan.SSGANConfig(label_seed=1))


def test_invariant_information_is_the_mutual_information_of_the_joint():
    torch.manual_seed(0)
    a, b = torch.randn(50, 6) * 3, torch.randn(50, 6) * 3
    p, q = torch.softmax(a, 1).numpy(), torch.softmax(b, 1).numpy()
    joint = p.T @ q / 50
    joint = (joint + joint.T) / 2
    m = joint.sum(1)
    mi = (joint * np.log(joint / np.outer(m, m))).sum()
    assert infogan.invariant_information(a, b).item() == pytest.approx(mi, rel=1e-5)
    entropy = -(m * np.log(m)).sum()
    assert infogan.invariant_information(a, b, 2.0).item() == pytest.approx(mi + 2 * entropy, rel=1e-5)
    certain = torch.eye(6).repeat(5, 1) * 50  # every code used equally, both views agree: log K
    assert infogan.invariant_information(certain, certain).item() == pytest.approx(math.log(6), rel=1e-4)


def test_infogan_with_the_invariance_term_trains(tmp_path):
    seen = []
    cfg = tiny(
        infogan.InfoGANConfig,
        tmp_path,
        base_width=8,
        max_steps=3,
        lambda_real=2.0,
        balance=2.0,
        q_categorical=0,
        overcluster=20,
    )
    train(cfg, infogan.build, on_step=lambda s, p, losses: seen.append(losses))
    assert all(math.isfinite(v) for losses in seen for v in losses.values())
    assert all(losses["invariance"] > 0 and losses["invariance_over"] > 0 for losses in seen)


def test_infogan_compare_table(tmp_path, capsys):
    cfg = tiny(infogan.InfoGANConfig, tmp_path, base_width=4, max_steps=2, compare_seeds="0,1", export=True)
    result = infogan.compare(cfg)
    assert set(result["per_seed"]["match"]) == {0, 1}
    assert result["summary"]["match"]["min"] <= result["summary"]["match"]["mean"]
    assert "| match |" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "seed-1" / "metrics.json").read_text())["samples"] == 2000
    from genrt.errors import ArgumentError

    with pytest.raises(ArgumentError, match="compare_seeds"):
        infogan.compare(tiny(infogan.InfoGANConfig, tmp_path, compare_seeds="0"))  # no export: nothing to measure


def test_stroke_measures_of_known_strokes():
    images = np.zeros((3, 9, 9, 1), np.uint8)
    images[0, :, 4] = 255  # upright stroke: no slant, no width
    images[1, np.arange(9), np.arange(9)] = 255  # one column right per row down: slant 1
    images[2, :, 3:6] = 255  # three columns wide: width sqrt(2 / 3)
    m = infogan.stroke_measures(images)
    np.testing.assert_allclose(m["slant"], [0.0, 1.0, 0.0], atol=1e-9)
    # width is the ink's horizontal spread, so a slanted stroke has some: the std of columns 0..8
    np.testing.assert_allclose(m["width"], [0.0, np.arange(9).std(), np.sqrt(2 / 3)], atol=1e-6)
    np.testing.assert_allclose(m["ink"], [9, 9, 27], rtol=1e-9)
