"""python -m training.ssgan --dataset digits --labels-per-class 10 --label-seed 0 --out runs/ssgan-digits
python -m training.ssgan --compare-seeds 0,1,2,3,4 --out runs/ssgan-compare   (vs supervised and LabelSpreading)

Semi-supervised learning with GANs (Salimans et al. 2016, section 5): the discriminator is a K+1-class classifier.

D outputs K class logits l_1..l_K; the "fake" class has its logit fixed at 0, so p(real | x) = Z / (Z + 1) with
Z = sum_k exp(l_k), and p(y = k | x, real) = softmax(l)_k: the exported classifier is D's K logits alone.
D's loss: cross-entropy on the few labelled images, plus the unsupervised GAN loss
-log(Z(x) / (Z(x) + 1)) on unlabelled real images and -log(1 / (Z(G(z)) + 1)) on generated ones (both written
with logsumexp and softplus). G is trained by feature matching on D's last hidden layer (pooled features), which
the paper found best for classification. The paper's weight normalisation and Gaussian noise layers in D are
``--weight-norm`` and ``--noise``.

Beyond the paper (the defaults; ``--consistency 0 --ema 0 --no-align`` is the paper's game), modern
semi-supervised practice on the same unlabelled digits:

- pseudo-label consistency (FixMatch, Sohn et al. 2020): where the teacher is confident (``--confidence``) about
  a weakly changed view of an unlabelled digit (small shifts, turns, scalings), D's cross-entropy against that label
  on a strongly changed view (larger turns, scalings, shears, shifts and a cut-out square), weight
  ``--consistency``; the labelled digits get the weak view;
- distribution alignment (ReMixMatch, Berthelot et al. 2020, ``--align``): the pseudo-label probabilities are
  divided by their running mean, so that no class takes over another's unlabelled digits;
- an exponential moving average of D's weights (``--ema``): it is the teacher, and it is what is exported.

``--supervised-only`` trains the same D with the same views and average on the labelled images alone (no G, no
unlabelled digits), the baseline of the comparison; scikit-learn's LabelSpreading on the same labels is the other.

Protocol: the first ``--train-images`` digits (1347) are the training set, of which ``--labels-per-class`` per class
(chosen by ``--label-seed``) keep their labels; the rest of the dataset (the last 450 digits) is the test set, never
seen in training. Test accuracy is measured at the end through ``genrt.load(...).predict`` on uint8 images.
"""

from __future__ import annotations

import copy
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
from training import dcgan, diffaugment, improved
from training.compare import seed_table
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
    epochs: int = 100  # passes over the 1347 training digits (2100 steps at batch 64)
    lr: float = 1e-3  # Adam learning rate (the paper's 0.0003 learnt too slowly in 2100 steps here)
    lr_decay: float = 0.3  # the learning rates fall linearly to 0 over this last fraction of the steps
    width: int = 32  # D's first stage channels (doubled once); G's base width
    dropout: float = 0.1  # dropout between D's stages (0.2 on its input; the paper 0.5, which cost accuracy here)
    unsupervised_weight: float = 1.0  # weight of the unsupervised GAN loss in D's loss
    noise: float = 0.0  # std of D's Gaussian noise layers (input and each stage), in training only
    weight_norm: bool = False  # weight-normalised convolutions and head in D (the paper's)
    consistency: float = 1.0  # weight of the pseudo-label consistency loss (FixMatch) on unlabelled digits (0: off)
    confidence: float = 0.9  # pseudo-labels count only where the weak view's top probability exceeds this
    align: bool = True  # distribution alignment: pseudo-label probabilities rescaled towards balanced classes
    ema: float = 0.99  # decay of an exponential moving average of D: the teacher and the export (0: off)
    supervised_only: bool = False  # the baseline: same D, cross-entropy on the labelled images only, no G
    compare_seeds: str = ""  # e.g. 0,1,2,3,4: train SSGAN and the baseline per label seed into out/, print a table
    sample_every: int = 500  # steps between sample grids (and at the end)


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training (the paper's noise layers in D); the identity in eval mode and in export."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x) if self.training and self.std > 0 else x


class Classifier(nn.Module):
    """images (N, C, S, S) in [-1, 1] -> (class logits (N, K), features (N, F)) (the fake logit is 0).

    ``noise``: std of the Gaussian noise added to the input and to each stage's output in training;
    ``weight_norm``: every convolution and the head weight-normalised (Salimans and Kingma 2016), as in the paper.
    """

    def __init__(
        self, channels: int, classes: int, width: int, dropout: float, *, noise: float = 0.0, weight_norm: bool = False
    ):
        super().__init__()
        w2 = width * 2
        wn = nn.utils.parametrizations.weight_norm if weight_norm else (lambda m: m)

        def block(cin, cout, stride):
            return [wn(nn.Conv2d(cin, cout, 3, stride, 1)), nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(
            nn.Dropout(0.2),
            GaussianNoise(noise),
            *block(channels, width, 1),
            *block(width, width, 2),  # S/2
            nn.Dropout(dropout),
            GaussianNoise(noise),
            *block(width, w2, 1),
            *block(w2, w2, 2),  # S/4
            nn.Dropout(dropout),
            GaussianNoise(noise),
            *block(w2, w2, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # (N, 2 * width): the features of feature matching
        )
        self.head = wn(nn.Linear(w2, classes))

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


def weak_view(x: torch.Tensor) -> torch.Tensor:
    """Small random shifts, turns and scalings: a digit's class survives them."""
    return diffaugment.affine(x, degrees=8.0, scale=0.08, shift=1 / 16)


def strong_view(x: torch.Tensor) -> torch.Tensor:
    """Larger turns, scalings, shears and shifts, then a cut-out square: what the classifier must see through."""
    return diffaugment.cutout_square(diffaugment.affine(x, degrees=12.0, scale=0.12, shift=1.5 / 16, shear=0.15), 0.3)


class ClassBalance(nn.Module):
    """Distribution alignment (Berthelot et al. 2020, ReMixMatch): a running mean of the teacher's class
    probabilities on unlabelled digits; pseudo-label probabilities are multiplied by uniform / that mean and
    renormalised, so no class can swallow another's unlabelled digits (the digits' classes are balanced)."""

    def __init__(self, classes: int, momentum: float = 0.99):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.full((classes,), 1.0 / classes))

    @torch.no_grad()
    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        self.mean.lerp_(probs.mean(0), 1.0 - self.momentum)
        aligned = probs / (self.mean * len(self.mean))
        return aligned / aligned.sum(1, keepdim=True)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)


def build(cfg: SSGANConfig, image_shape: tuple[int, int, int], device) -> Parts:
    channels, size, _ = image_shape
    full = data_mod.load(cfg.dataset, cfg.image_size)
    if full.labels is None:
        raise ArgumentError(f"dataset: {cfg.dataset} has no labels; the semi-supervised classifier needs digits")
    if not 0 < cfg.train_images < len(full):
        raise ArgumentError(f"train_images: expected 1..{len(full) - 1} (the rest is the test set)")
    if not 0.0 <= cfg.ema < 1.0:
        raise ArgumentError(f"ema: expected a decay in [0, 1), got {cfg.ema}")
    idx = labelled_subset(full.labels, cfg.train_images, cfg.labels_per_class, cfg.classes, cfg.label_seed)
    lab_x, lab_y = full.images[idx].to(device), full.labels[idx].to(device)
    G = dcgan.Generator(cfg.latent_dim, channels, size, cfg.width).to(device)
    D = Classifier(channels, cfg.classes, cfg.width, cfg.dropout, noise=cfg.noise, weight_norm=cfg.weight_norm)
    D = D.to(device)
    extra = {}
    if cfg.ema > 0:
        extra["EMA"] = teacher = copy.deepcopy(D).eval().requires_grad_(False)
    else:
        teacher = D
    if cfg.align:
        extra["balance"] = balance = ClassBalance(cfg.classes).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    augment = cfg.consistency > 0

    def step(real: torch.Tensor, step: int) -> dict[str, float]:
        n = real.shape[0]
        pick = torch.randint(0, len(lab_y), (n,), device=device)
        lab = weak_view(lab_x[pick]) if augment else lab_x[pick]
        if cfg.supervised_only:
            loss_sup = F.cross_entropy(D(lab)[0], lab_y[pick])
            opt_d.zero_grad(set_to_none=True)
            loss_sup.backward()
            average_gradients(D)
            opt_d.step()
            if cfg.ema > 0:
                update_ema(teacher, D, cfg.ema)
            return {"loss_sup": loss_sup.item()}
        losses = {}
        views = [lab, real]
        if augment:
            with torch.no_grad():  # pseudo-labels from the weak view (the teacher's, when there is one)
                was = teacher.training
                probs = torch.softmax(teacher.eval()(weak_view(real))[0], 1)
                teacher.train(was)
                if cfg.align:
                    probs = balance(probs)
            confidence, pseudo = probs.max(1)
            mask = (confidence > cfg.confidence).float()
            views.append(strong_view(real))
        logits, feats = D(torch.cat(views))  # D has no batch statistics: one pass is the same as three
        logits_lab, real_logits, real_feats = logits[:n], logits[n : 2 * n], feats[n : 2 * n]
        loss_sup = F.cross_entropy(logits_lab, lab_y[pick])
        fake = G(torch.randn(n, cfg.latent_dim, device=device))
        fake_logits, _ = D(fake.detach())
        lse_real, lse_fake = torch.logsumexp(real_logits, 1), torch.logsumexp(fake_logits, 1)  # log Z, (N,)
        # -log(Z / (Z + 1)) on real, -log(1 / (Z + 1)) on fake
        loss_unsup = (F.softplus(lse_real) - lse_real).mean() + F.softplus(lse_fake).mean()
        loss_d = loss_sup + cfg.unsupervised_weight * loss_unsup
        if augment:
            loss_cons = (F.cross_entropy(logits[2 * n :], pseudo, reduction="none") * mask).mean()
            loss_d = loss_d + cfg.consistency * loss_cons
            losses.update({"loss_cons": loss_cons.item(), "mask": mask.mean().item()})
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        average_gradients(D)
        opt_d.step()
        if cfg.ema > 0:
            update_ema(teacher, D, cfg.ema)

        _, fake_feats = D(fake)
        loss_g = improved.feature_matching_loss(real_feats, fake_feats)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        average_gradients(G)
        opt_g.step()
        losses.update({"loss_sup": loss_sup.item(), "loss_unsup": loss_unsup.item(), "loss_g": loss_g.item()})
        return losses

    return Parts(G, D, {"G": opt_g, "D": opt_d}, step, extra)


def _uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), as users hold images."""
    x = np.clip(np.rint((images.numpy() + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return x.transpose(0, 2, 3, 1)


def test_accuracy(path: Path, cfg: SSGANConfig) -> float:
    """Accuracy on the images after the first train_images, through genrt.load(path).predict."""
    full = data_mod.load(cfg.dataset, cfg.image_size)
    test_x, test_y = full.images[cfg.train_images :], full.labels[cfg.train_images :].numpy()
    return float((genrt.load(path).predict(_uint8(test_x)) == test_y).mean())


@torch.no_grad()
def plain_copy(D: Classifier) -> Classifier:
    """An eval-mode copy of D on the CPU with plain weights (weight norm's weight = g v / ||v|| computed once).

    (torch's remove_parametrizations would also strip the property from the class a deep copy shares with D.)
    """
    layers = [m for m in D.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    plain = Classifier(layers[0].in_channels, D.head.out_features, layers[0].out_channels, 0.0).eval()
    for dst, src in zip([m for m in plain.modules() if isinstance(m, nn.Conv2d | nn.Linear)], layers, strict=True):
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)
    return plain


def label_spreading_accuracy(cfg: SSGANConfig) -> float:
    """scikit-learn's LabelSpreading (k-NN graph, its defaults) on the same split and labels: the graph baseline.

    It sees the 8x8 digits as 64 raw features in [0, 1], all train_images of them with only the labelled subset's
    labels, and predicts the test digits; the same protocol as the GAN's.
    """
    from sklearn.datasets import load_digits
    from sklearn.semi_supervised import LabelSpreading

    bunch = load_digits()
    x, y = bunch.data / 16.0, bunch.target
    idx = labelled_subset(torch.from_numpy(y), cfg.train_images, cfg.labels_per_class, cfg.classes, cfg.label_seed)
    targets = np.full(cfg.train_images, -1)
    targets[idx.numpy()] = y[idx.numpy()]
    model = LabelSpreading(kernel="knn", max_iter=200).fit(x[: cfg.train_images], targets)
    return float((model.predict(x[cfg.train_images :]) == y[cfg.train_images :]).mean())


def export(parts: Parts, cfg: SSGANConfig, dataset: str, path: Path, *, metrics: dict | None = None) -> Path:
    D = plain_copy(parts.extra.get("EMA", parts.D))  # the moving average, when there is one
    channels = D.net[2].in_channels
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
    if saved.dataset == "digits":  # the graph baseline on the same labels, for the card
        metrics["label_spreading_accuracy"] = label_spreading_accuracy(saved)
    metrics["train_seconds"] = round(time.time() - started, 1)
    export(parts, saved, saved.dataset, path, metrics=metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{out}: test accuracy {metrics['test_accuracy']:.4f}", file=sys.stderr)
    return metrics


def compare(cfg: SSGANConfig) -> dict:
    """For each label seed in cfg.compare_seeds: the SSGAN, the supervised baseline (same D, same labels, no G) and
    scikit-learn's LabelSpreading; test accuracy per seed, mean and std."""
    seeds = [int(s) for s in cfg.compare_seeds.split(",") if s.strip()]
    table: dict = {"ssgan": {}, "supervised": {}, "label_spreading": {}}
    for seed in seeds:
        for name, sup in (("ssgan", False), ("supervised", True)):
            one = replace(cfg, compare_seeds="", label_seed=seed, supervised_only=sup, out=f"{cfg.out}/{name}-{seed}")
            one._given = getattr(cfg, "_given", set())
            table[name][seed] = run(one)["test_accuracy"]
        table["label_spreading"][seed] = label_spreading_accuracy(replace(cfg, label_seed=seed))
    return seed_table(Path(cfg.out), table, labels=cfg.labels_per_class * cfg.classes)


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
