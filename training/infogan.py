"""python -m training.infogan --dataset digits --epochs 60 --out runs/infogan-digits
python -m training.infogan --compare-seeds 0,1,2,3,4 --epochs 60 --out runs/infogan-compare   (code/class match)

InfoGAN (Chen et al. 2016): a GAN whose latent is split into incompressible noise and structured codes, with a
variational lower bound on the mutual information I(c; G(z, c)) added to the game.

Latent (the paper's MNIST setting): noise z ~ N(0, I) (``--noise-dim`` 62), one categorical code c1 ~ Cat(10) (one-hot)
and ``--continuous`` 2 codes c2, c3 ~ U(-1, 1), concatenated in that order. Q(c | x) is a head on the
discriminator's trunk (shared convolutions): logits for c1 and a factored Gaussian (mean, log-std) for the
continuous codes. L_I = E[log Q(c1 | x)] + E[log Q(c_cont | x)] (up to the codes' constant entropy) is maximised by G
and Q with weights ``--lambda-cat`` (1, the paper's) and ``--lambda-cont`` (0.1, as the paper's MNIST code uses
for the continuous codes), next to the usual non-saturating GAN losses. Architecture: the DCGAN blocks of
training/dcgan.py at 16x16 (digits are 8x8), Adam with lr 2e-4 for D and Q, 1e-3 for G (the paper's).

The paper's game alone makes c1 a 10-way split of the digits that Q can read, and which split a run finds is
luck: on the 1797 digits, c1 matched the class at 0.66 +- 0.13 over 5 seeds. Three additions (the defaults; the
paper's game is ``--lambda-real 0 --q-categorical 1 --overcluster 0``) tie c1 to the class:

- Q's categorical head also clusters *real* digits by Invariant Information Clustering (Ji et al. 2019): the mutual
  information between its codes for a digit and for another view of it (strokes thickened or thinned, turned,
  scaled, sheared, shifted), with the codes' marginal entropy weighted ``--balance`` 2 (``--lambda-real`` 2);
- an over-clustering head (``--overcluster`` 50 groups) on the same trunk, trained by the same term and read by
  nothing, as in IIC: it shapes D's features so that the 10-way clustering finds the classes;
- Q's categorical head learns only from real digits (``--q-categorical 0``): G must make images it reads as c1,
  instead of Q learning cues only G's images have. Q's continuous head still learns from G's images.

The continuous codes stay free to take slant and width: the views vary them, so c1 cannot.

At the end the run writes ``infogan.onnx``: the generator, latent (N, noise + 10 + continuous) -> images (N, C, S, S)
in [-1, 1], ``genrt.kind = "infogan"`` with the code layout in its metadata (:class:`genrt.runtime.infogan.InfoGAN`:
sample with codes, traverse). On digits it then measures how well c1 matches the digit class: samples per
category value, classified by training/evaluate.py's classifier, best one-to-one assignment (Hungarian).
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
from training import data as data_mod
from training import dcgan, diffaugment
from training.compare import seed_table
from training.loop import Parts, TrainConfig, average_gradients, parse_config, train


@dataclass
class InfoGANConfig(TrainConfig):
    """InfoGAN run: noise + Cat(categories) + continuous U(-1, 1) codes."""

    out: str = "runs/infogan"  # run folder: checkpoints, samples, config.json, infogan.onnx
    image_size: int = 16  # digits are 8x8: 16x16 keeps their detail at a quarter of 32x32's cost
    latent_dim: int = 74  # must be noise_dim + categories + continuous (the loop's sample grids use it)
    noise_dim: int = 62  # incompressible noise z ~ N(0, I)
    categories: int = 10  # values of the categorical code c1
    continuous: int = 2  # continuous codes ~ U(-1, 1)
    lambda_cat: float = 1.0  # weight of the categorical mutual-information term
    lambda_cont: float = 0.1  # weight of the continuous codes' term
    lambda_real: float = 2.0  # weight of the invariance term on real images (IIC, Ji et al. 2019; 0: the paper's)
    q_categorical: float = 0.0  # weight of log Q(c1 | G(z, c)) in Q's own update, relative to lambda_cat
    # (0: Q's categorical head learns from real images alone, by the invariance term, and G must make images it
    # reads as c1; it cannot learn to read codes from cues only G's images have)
    overcluster: int = 50  # an extra head on D's trunk clusters real images into this many groups by the same
    # invariance term (IIC's auxiliary over-clustering; it shapes the trunk, nothing reads it; 0: none)
    balance: float = 2.0  # weight of the code marginal's entropy in that term (1: IIC's mutual information)
    lr_g: float = 1e-3  # Adam learning rate of G (lr is D's and Q's)
    base_width: int = 32  # DCGAN width (see training/dcgan.py)
    sample_every: int = 500  # steps between sample grids (and at the end)
    compare_seeds: str = ""  # e.g. 0,1,2,3,4: one run per training seed into out/seed-S, then the match table


class QHead(nn.Module):
    """D's trunk features (N, F) -> (categorical logits (N, K), continuous means (N, M), log-stds (N, M))."""

    def __init__(self, features: int, categories: int, continuous: int):
        super().__init__()
        self.categories, self.continuous = categories, continuous
        self.net = nn.Sequential(
            nn.Linear(features, 128),
            nn.BatchNorm1d(128),
            nn.LeakyReLU(0.2),
            nn.Linear(128, categories + 2 * continuous),
        )

    def forward(self, h: torch.Tensor):
        out = self.net(h)
        k, m = self.categories, self.continuous
        return out[:, :k], out[:, k : k + m], out[:, k + m :].clamp(-5.0, 2.0)


class GridGenerator(nn.Module):
    """For the loop's sample grids: any z (N, latent_dim) made a valid latent (arg-max one-hot, clipped codes)."""

    def __init__(self, G: dcgan.Generator, cfg: InfoGANConfig):
        super().__init__()
        self.G, self.noise_dim, self.categories = G, cfg.noise_dim, cfg.categories

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n, k = self.noise_dim, self.categories
        onehot = F.one_hot(z[:, n : n + k].argmax(1), k).to(z.dtype)
        return self.G(torch.cat([z[:, :n], onehot, z[:, n + k :].clamp(-1, 1)], 1))


def sample_latent(n: int, cfg: InfoGANConfig, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(latent (n, latent_dim), category (n,), continuous codes (n, M)) drawn from the priors."""
    noise = torch.randn(n, cfg.noise_dim, device=device)
    cat = torch.randint(0, cfg.categories, (n,), device=device)
    cont = torch.rand(n, cfg.continuous, device=device) * 2 - 1
    return torch.cat([noise, F.one_hot(cat, cfg.categories).float(), cont], 1), cat, cont


def info_loss(q: QHead, h: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor, cfg: InfoGANConfig, cat_scale=1.0):
    """-(cat_scale lambda_cat log Q(c1|x) + lambda_cont log Q(c_cont|x)), batch means; and Q's categorical
    accuracy."""
    logits, mean, logstd = q(h)
    nll_cat = F.cross_entropy(logits, cat)
    nll_cont = (logstd + 0.5 * ((cont - mean) / logstd.exp()).pow(2)).sum(1).mean()  # Gaussian NLL - const
    acc = (logits.argmax(1) == cat).float().mean()
    return cat_scale * cfg.lambda_cat * nll_cat + cfg.lambda_cont * nll_cont, acc


def invariant_information(logits_a: torch.Tensor, logits_b: torch.Tensor, balance: float = 1.0) -> torch.Tensor:
    """I(c; c') of the joint P = mean_i p(c | x_i) p(c' | x_i')^T (symmetrised) of two views of the same images:
    the Invariant Information Clustering objective (Ji et al. 2019). At most log K, reached when each view's code
    is certain, both views agree, and the codes are used equally often.

    I = 2 H(marginal) - H(P); ``balance`` > 1 weights the marginal's entropy more (2 balance H(marginal) - H(P)),
    so no code can take the images of two classes while another code is left with few.
    """
    joint = torch.softmax(logits_a, 1).T @ torch.softmax(logits_b, 1) / logits_a.shape[0]  # (K, K)
    joint = ((joint + joint.T) / 2).clamp_min(1e-8)
    marginal = joint.sum(1)
    return 2 * balance * -(marginal * marginal.log()).sum() + (joint * joint.log()).sum()


def real_view(x: torch.Tensor) -> torch.Tensor:
    """Another view of real digits: strokes thickened or thinned, then turned, scaled, sheared and shifted a
    little. The class survives it; slant and width do not, so the categorical code is pushed towards the class
    and away from the continuous codes'."""
    return diffaugment.affine(diffaugment.stroke_width(x), degrees=15.0, scale=0.1, shift=1 / 16, shear=0.2)


def build(cfg: InfoGANConfig, image_shape: tuple[int, int, int], device) -> Parts:
    from genrt.errors import ArgumentError

    if cfg.latent_dim != cfg.noise_dim + cfg.categories + cfg.continuous:
        raise ArgumentError(
            f"latent_dim: must be noise_dim + categories + continuous = "
            f"{cfg.noise_dim + cfg.categories + cfg.continuous}, got {cfg.latent_dim}"
        )
    channels, size, _ = image_shape
    G = dcgan.Generator(cfg.latent_dim, channels, size, cfg.base_width).to(device)
    D = dcgan.Discriminator(channels, size, cfg.base_width).to(device)
    features = D.out.in_channels * 16
    Q = QHead(features, cfg.categories, cfg.continuous).to(device)
    extra = {"Q": Q}
    if cfg.overcluster > 0:
        extra["overcluster"] = QHead(features, cfg.overcluster, 0).to(device)
    heads = [p for m in extra.values() for p in m.parameters()]
    opt_d = torch.optim.Adam(list(D.parameters()) + heads, lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, 0.999))
    bce = F.binary_cross_entropy_with_logits

    def step(real: torch.Tensor, step: int) -> dict[str, float]:
        n = real.shape[0]
        latent, cat, cont = sample_latent(n, cfg, device)
        fake = G(latent)
        real_logits, real_h = D(real)
        fake_logits, fake_h = D(fake.detach())
        loss_info_d, _ = info_loss(Q, fake_h, cat, cont, cfg, cfg.q_categorical)
        loss_d = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
        losses = {}
        if cfg.lambda_real > 0:
            view_h = D(real_view(real))[1]
            mi_real = invariant_information(Q(real_h)[0], Q(view_h)[0], cfg.balance)
            loss_info_d = loss_info_d - cfg.lambda_real * mi_real
            losses["invariance"] = mi_real.item()
            if cfg.overcluster > 0:
                over = extra["overcluster"]
                mi_over = invariant_information(over(real_h)[0], over(view_h)[0], cfg.balance)
                loss_info_d = loss_info_d - cfg.lambda_real * mi_over
                losses["invariance_over"] = mi_over.item()
        opt_d.zero_grad(set_to_none=True)
        (loss_d + loss_info_d).backward()
        average_gradients(D)
        for m in extra.values():
            average_gradients(m)
        opt_d.step()

        logits, h = D(fake)
        loss_info, q_acc = info_loss(Q, h, cat, cont, cfg)
        loss_g = bce(logits, torch.ones_like(logits))
        opt_g.zero_grad(set_to_none=True)
        (loss_g + loss_info).backward()
        average_gradients(G)
        opt_g.step()
        losses.update(
            {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "info": loss_info.item(), "q_acc": q_acc.item()}
        )
        return losses

    return Parts(GridGenerator(G, cfg), D, {"G": opt_g, "D": opt_d}, step, extra)


def category_match(path: Path, *, per_category: int = 200, seed: int = 0) -> dict:
    """How well c1 encodes the digit: per_category samples per value of c1 (other codes from their priors),
    classified by training/evaluate.py's digit classifier; accuracy under the best one-to-one map (Hungarian).
    """
    from scipy.optimize import linear_sum_assignment

    from training import evaluate

    model = genrt.load(path)
    K = model.categories
    images = np.concatenate([model.sample(per_category, seed=seed + k, codes={"category": k}) for k in range(K)])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 1, S, S)
    if x.shape[-1] != 32:  # the classifier takes 32x32, which data.py makes from the 8x8 digits the same way
        x = F.interpolate((x + 1) / 2, size=(32, 32), mode="bilinear", align_corners=False, antialias=True) * 2 - 1
    real = data_mod.load("digits", 32)
    net, held_out = evaluate.load_classifier(real.images, real.labels)
    with torch.no_grad():
        pred = torch.cat([net(x[i : i + 500])[0].argmax(1) for i in range(0, len(x), 500)]).numpy()
    cats = np.repeat(np.arange(K), per_category)
    confusion = np.zeros((K, 10), np.int64)
    np.add.at(confusion, (cats, pred), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return {
        "category_digit_match": float(confusion[rows, cols].sum() / len(cats)),
        "assignment": {int(r): int(c) for r, c in zip(rows, cols, strict=True)},
        "confusion": confusion.tolist(),
        "samples": int(len(cats)),
        "classifier_held_out_accuracy": held_out,
    }


def stroke_measures(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image of uint8 (N, H, W[, 1]) (bright strokes): slant (mu11 / mu02 of the ink, horizontal shift per
    row), width (the ink's horizontal standard deviation, pixels; a slanted stroke has some) and ink (its total,
    a stroke-thickness proxy)."""
    x = images.reshape(images.shape[:3]).astype(np.float64)
    _, h, w = x.shape
    yy, xx = np.mgrid[:h, :w]
    ink = x.sum((1, 2)) + 1e-9
    dx = xx[None] - ((x * xx).sum((1, 2)) / ink)[:, None, None]
    dy = yy[None] - ((x * yy).sum((1, 2)) / ink)[:, None, None]
    mu02 = (x * dy * dy).sum((1, 2)) / ink
    return {
        "slant": (x * dx * dy).sum((1, 2)) / ink / mu02,
        "width": np.sqrt((x * dx * dx).sum((1, 2)) / ink),
        "ink": ink / 255.0,
    }


def continuous_code_effects(path: Path, *, per_category: int = 200, seed: int = 0) -> dict:
    """What each continuous code does: its correlation with each stroke measure over samples of one category
    (noise and the continuous codes from their priors), averaged over the categories. {"c2": {"slant": r, ...}}."""
    model = genrt.load(path)
    first = model.noise_dim + model.categories
    sums: dict = {}
    for k in range(model.categories):
        z = model.latents(per_category, seed=seed + k, codes={"category": k})
        measures = stroke_measures(model.generate(z))
        for j in range(model.continuous):
            for name, values in measures.items():
                key = (f"c{j + 2}", name)
                sums[key] = sums.get(key, 0.0) + np.corrcoef(z[:, first + j], values)[0, 1] / model.categories
    out: dict = {}
    for (code, name), r in sums.items():
        out.setdefault(code, {})[name] = round(float(r), 3)
    return out


def export(parts: Parts, cfg: InfoGANConfig, dataset: str, path: Path, *, metrics: dict | None = None) -> Path:
    G = parts.G.G.cpu().eval()
    meta = {
        "config": asdict(cfg),
        "dataset": dataset,
        "latent_dim": cfg.latent_dim,
        "codes": {
            "layout": ["noise", "categorical", "continuous"],
            "noise": cfg.noise_dim,
            "noise_prior": "normal",
            "categorical": [cfg.categories],
            "continuous": cfg.continuous,
            "continuous_prior": "uniform(-1, 1)",
        },
        "output_range": [-1.0, 1.0],
        "description": cfg.description
        or f"InfoGAN on {dataset}: {cfg.noise_dim} noise + Cat({cfg.categories}) + {cfg.continuous} U(-1, 1) codes",
    }
    if metrics:
        meta["metrics"] = metrics
    latent, _, _ = sample_latent(3, cfg, "cpu")
    return genrt.export(G, path, latent, kind="infogan", metadata=meta, input_names=["z"], output_names=["images"])


def run(cfg: InfoGANConfig) -> dict:
    """Trains one run and exports out/infogan.onnx; on digits, measures the code/class match. Returns the metrics."""
    do_export, cfg.export = cfg.export, False  # the loop would export a plain generator; InfoGAN exports its own
    started = time.time()
    parts = train(cfg, build)
    out = Path(cfg.out)
    saved = InfoGANConfig(**json.loads((out / "config.json").read_text()))
    saved.export = do_export
    if not do_export:
        return {}
    dataset = data_mod.load(saved.dataset, saved.image_size).name
    path = export(parts, saved, dataset, out / "infogan.onnx")
    metrics: dict = {}
    if dataset == "digits" and saved.categories == 10:
        metrics = category_match(path)
        metrics["continuous_effects"] = continuous_code_effects(path)
        metrics["train_seconds"] = round(time.time() - started, 1)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"{out}: categorical code / digit match {metrics['category_digit_match']:.4f}", file=sys.stderr)
        export(
            parts,
            saved,
            dataset,
            path,
            metrics={k: metrics[k] for k in ("category_digit_match", "assignment", "continuous_effects")},
        )
    print(path)
    return metrics


def compare(cfg: InfoGANConfig) -> dict:
    """One run per training seed in cfg.compare_seeds (into out/seed-S); the code/class match per seed, mean, std."""
    from genrt.errors import ArgumentError

    if not cfg.export or cfg.dataset != "digits" or cfg.categories != 10:
        raise ArgumentError("compare_seeds: measures the code/class match, so it needs digits, 10 categories, export")
    seeds = [int(s) for s in cfg.compare_seeds.split(",") if s.strip()]
    match = {}
    for seed in seeds:
        one = replace(cfg, compare_seeds="", seed=seed, out=f"{cfg.out}/seed-{seed}")
        one._given = getattr(cfg, "_given", set())
        match[seed] = run(one)["category_digit_match"]
    return seed_table(Path(cfg.out), {"match": match})


def main(argv=None) -> None:
    cfg = parse_config(
        InfoGANConfig,
        argv,
        prog="python -m training.infogan",
        example="python -m training.infogan --dataset digits --epochs 60 --out runs/infogan-digits",
    )
    if cfg.compare_seeds:
        compare(cfg)
    else:
        run(cfg)


if __name__ == "__main__":
    main()
