"""python -m training.ssgan --dataset digits --labels-per-class 10 --label-seed 0 --epochs 100 --out runs/ssgan-digits
python -m training.ssgan --compare-seeds 0,1,2,3,4 --epochs 100 --out runs/ssgan-compare   (vs supervised, 5 seeds)

Semi-supervised learning with GANs (Salimans et al. 2016, section 5): the discriminator is a K+1-class classifier.

D outputs K class logits l_1..l_K; the "fake" class has its logit fixed at 0, so p(real | x) = Z / (Z + 1) with
Z = sum_k exp(l_k), and p(y = k | x, real) = softmax(l)_k: the exported classifier is D's K logits alone.
D's loss: cross-entropy on the few labelled images, plus the unsupervised GAN loss
-log(Z(x) / (Z(x) + 1)) on unlabelled real images and -log(1 / (Z(G(z)) + 1)) on generated ones (both written
with logsumexp and softplus). G is trained by feature matching on D's last hidden layer (pooled features), which
the paper found best for classification. ``--supervised-only`` trains the same D on the labelled images alone
(no G), the baseline of the comparison.

Protocol: the first ``--train-images`` digits (1347) are the training set, of which ``--labels-per-class`` per class
(chosen by ``--label-seed``) keep their labels; the rest of the dataset (the last 450 digits) is the test set, never
seen in training. Test accuracy is measured at the end through ``genrt.load(...).predict`` on uint8 images.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import genrt
from genrt.errors import ArgumentError
from training import data as data_mod
from training import dcgan, improved
from training.loop import Parts, TrainConfig, average_gradients, parse_config, train


@dataclass
class SSGANConfig(TrainConfig):
    """Semi-supervised GAN classifier run (K+1 classes, feature matching)."""

    out: str = "runs/ssgan"  # run folder: checkpoints, samples, config.json, classifier.onnx
    image_size: int = 16  # digits are 8x8: 16x16 keeps their detail at a quarter of 32x32's cost
    train_images: int = 1347  # the first N digits train (labelled or not); the rest is the test set
    labels_per_class: int = 10  # labelled training images per class (the rest are used without labels)
    label_seed: int = 0  # picks which training images keep their labels
    classes: int = 10  # K
    lr: float = 3e-4  # Adam learning rate (the paper's 0.0003)
    width: int = 32  # D's first stage channels (doubled once); G's base width
    dropout: float = 0.5  # dropout between D's stages (0.2 on its input)
    unsupervised_weight: float = 1.0  # weight of the unsupervised GAN loss in D's loss
    supervised_only: bool = False  # the baseline: same D, cross-entropy on the labelled images only, no G
    compare_seeds: str = ""  # e.g. 0,1,2,3,4: train SSGAN and the baseline per label seed into out/, print a table
    sample_every: int = 500  # steps between sample grids (and at the end)


class Classifier(nn.Module):
    """images (N, C, S, S) in [-1, 1] -> (class logits (N, K), features (N, F)) (the fake logit is 0)."""

    def __init__(self, channels: int, classes: int, width: int, dropout: float):
        super().__init__()
        w2 = width * 2

        def block(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(
            nn.Dropout(0.2),
            *block(channels, width, 1),
            *block(width, width, 2),  # S/2
            nn.Dropout(dropout),
            *block(width, w2, 1),
            *block(w2, w2, 2),  # S/4
            nn.Dropout(dropout),
            *block(w2, w2, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (N, 2 * width): the features of feature matching
        )
        self.head = nn.Linear(w2, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net(x)
        return self.head(f), f


class ExportedClassifier(nn.Module):
    def __init__(self, D: Classifier):
        super().__init__()
        self.D = D

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.D(images)[0]  # (N, K)


def labelled_subset(labels: torch.Tensor, train_images: int, per_class: int, classes: int, seed: int) -> torch.Tensor:
    """Indices (classes * per_class,) of the training images that keep their labels: per_class of each class."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for k in range(classes):
        pool = torch.nonzero(labels[:train_images] == k).flatten()
        if len(pool) < per_class:
            raise ArgumentError(f"labels_per_class: class {k} has only {len(pool)} training images")
        picked.append(pool[torch.randperm(len(pool), generator=gen)[:per_class]])
    return torch.cat(picked)


def build(cfg: SSGANConfig, image_shape: tuple[int, int, int], device) -> Parts:
    channels, size, _ = image_shape
    full = data_mod.load(cfg.dataset, cfg.image_size)
    if full.labels is None:
        raise ArgumentError(f"dataset: {cfg.dataset} has no labels; the semi-supervised classifier needs digits")
    if not 0 < cfg.train_images < len(full):
        raise ArgumentError(f"train_images: expected 1..{len(full) - 1} (the rest is the test set)")
    idx = labelled_subset(full.labels, cfg.train_images, cfg.labels_per_class, cfg.classes, cfg.label_seed)
    lab_x, lab_y = full.images[idx].to(device), full.labels[idx].to(device)
    G = dcgan.Generator(cfg.latent_dim, channels, size, cfg.width).to(device)
    D = Classifier(channels, cfg.classes, cfg.width, cfg.dropout).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))

    def step(real: torch.Tensor, step: int) -> dict[str, float]:
        n = real.shape[0]
        pick = torch.randint(0, len(lab_y), (n,), device=device)
        logits_lab, _ = D(lab_x[pick])
        loss_sup = F.cross_entropy(logits_lab, lab_y[pick])
        losses = {"loss_sup": loss_sup.item()}
        if cfg.supervised_only:
            opt_d.zero_grad(set_to_none=True)
            loss_sup.backward()
            average_gradients(D)
            opt_d.step()
            return losses
        fake = G(torch.randn(n, cfg.latent_dim, device=device))
        real_logits, real_feats = D(real)
        fake_logits, _ = D(fake.detach())
        lse_real, lse_fake = torch.logsumexp(real_logits, 1), torch.logsumexp(fake_logits, 1)  # log Z, (N,)
        # -log(Z / (Z + 1)) on real, -log(1 / (Z + 1)) on fake
        loss_unsup = (F.softplus(lse_real) - lse_real).mean() + F.softplus(lse_fake).mean()
        loss_d = loss_sup + cfg.unsupervised_weight * loss_unsup
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        average_gradients(D)
        opt_d.step()

        _, fake_feats = D(fake)
        loss_g = improved.feature_matching_loss(real_feats, fake_feats)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        average_gradients(G)
        opt_g.step()
        losses.update({"loss_unsup": loss_unsup.item(), "loss_g": loss_g.item()})
        return losses

    return Parts(G, D, {"G": opt_g, "D": opt_d}, step)


def _uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), as users hold images."""
    x = np.clip(np.rint((images.numpy() + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return x.transpose(0, 2, 3, 1)


def test_accuracy(path: Path, cfg: SSGANConfig) -> float:
    """Accuracy on the images after the first train_images, through genrt.load(path).predict."""
    full = data_mod.load(cfg.dataset, cfg.image_size)
    test_x, test_y = full.images[cfg.train_images :], full.labels[cfg.train_images :].numpy()
    return float((genrt.load(path).predict(_uint8(test_x)) == test_y).mean())


def export(parts: Parts, cfg: SSGANConfig, dataset: str, path: Path, *, metrics: dict | None = None) -> Path:
    D = parts.D.cpu().eval()
    channels = D.net[1].in_channels
    what = "supervised baseline" if cfg.supervised_only else "semi-supervised GAN (K+1)"
    meta = {
        "config": asdict(cfg),
        "dataset": dataset,
        "classes": [str(k) for k in range(cfg.classes)],
        "image_size": [cfg.image_size, cfg.image_size],
        "channels": channels,
        "input_range": [-1.0, 1.0],
        "output": "class logits (the K+1-th, fake, logit is fixed at 0 and left out)",
        "description": cfg.description
        or f"digit classifier, {what}, {cfg.labels_per_class * cfg.classes} labels, {dataset}",
    }
    if metrics:
        meta["metrics"] = metrics
    x = torch.rand(2, channels, cfg.image_size, cfg.image_size) * 2 - 1
    return genrt.export(
        ExportedClassifier(D),
        path,
        x,
        kind="classifier",
        metadata=meta,
        input_names=["images"],
        output_names=["logits"],
    )


def run(cfg: SSGANConfig) -> dict:
    """Trains one run, exports out/classifier.onnx, measures its test accuracy; returns the metrics."""
    do_export, cfg.export = cfg.export, False  # the classifier, not the generator, is what this run exports
    started = time.time()
    parts = train(cfg, build)
    out = Path(cfg.out)
    saved = SSGANConfig(**json.loads((out / "config.json").read_text()))
    saved.export = do_export
    path = export(parts, saved, saved.dataset, out / "classifier.onnx")
    metrics = {"test_accuracy": test_accuracy(path, saved), "test_images": 1797 - saved.train_images}
    metrics["train_seconds"] = round(time.time() - started, 1)
    export(parts, saved, saved.dataset, path, metrics=metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{out}: test accuracy {metrics['test_accuracy']:.4f}", file=sys.stderr)
    return metrics


def compare(cfg: SSGANConfig) -> dict:
    """SSGAN and the supervised baseline for each label seed in cfg.compare_seeds: mean and std of test accuracy."""
    seeds = [int(s) for s in cfg.compare_seeds.split(",") if s.strip()]
    table: dict = {"ssgan": {}, "supervised": {}}
    for seed in seeds:
        for name, sup in (("ssgan", False), ("supervised", True)):
            one = replace(cfg, compare_seeds="", label_seed=seed, supervised_only=sup, out=f"{cfg.out}/{name}-{seed}")
            one._given = getattr(cfg, "_given", set())
            table[name][seed] = run(one)["test_accuracy"]
    summary = {
        name: {"mean": float(np.mean(list(a.values()))), "std": float(np.std(list(a.values()), ddof=1))}
        if len(a) > 1
        else {"mean": float(np.mean(list(a.values()))), "std": 0.0}
        for name, a in table.items()
    }
    result = {"per_seed": table, "summary": summary, "labels": cfg.labels_per_class * cfg.classes}
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std |")
    print("|---|" + "---|" * (len(seeds) + 1))
    for name in table:
        cells = " | ".join(f"{table[name][s]:.4f}" for s in seeds)
        print(f"| {name} | {cells} | {summary[name]['mean']:.4f} +- {summary[name]['std']:.4f} |")
    return result


def main(argv=None) -> None:
    cfg = parse_config(
        SSGANConfig,
        argv,
        prog="python -m training.ssgan",
        example="python -m training.ssgan --dataset digits --labels-per-class 10 --epochs 100 --out runs/ssgan-digits",
    )
    if cfg.compare_seeds:
        compare(cfg)
    else:
        run(cfg)


if __name__ == "__main__":
    main()
