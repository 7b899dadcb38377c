"""python -m training.rbm --dataset digits --train-images 1347 --epochs 50 --out runs/rbm-digits [--persistent]

Bernoulli-Bernoulli restricted Boltzmann machine trained with contrastive divergence (Hinton 2002) or persistent
contrastive divergence (Tieleman 2008, ``--persistent``), following Hinton's practical guide (2010).

Energy E(v, h) = -b.v - c.h - v'Wh, v in {0, 1}^V (pixels), h in {0, 1}^F (F = ``--latent-dim`` hidden units).
The grey levels in [0, 1] are used as the visible probabilities of the data (the guide's advice for grey images);
CD-k starts k Gibbs steps at the data, PCD keeps ``batch_size`` fantasy chains across updates. The statistics
use probabilities, not samples, except for the hidden states that drive the next visible step. Plain SGD with
momentum (0.5 for the first 5 epochs, then 0.9) and L2 weight decay on W.

At the end the run writes ``rbm.onnx`` (``genrt.kind = "rbm"``): input images (N, C, S, S) in [0, 1], outputs
p(h=1|v) (N, F) and the parameters W (V, F), b (V,), c (F,), so the runtime can run Gibbs chains in numpy
(:class:`genrt.runtime.rbm.RBM`). With ``--train-images`` it also measures the held-out log-likelihood with
annealed importance sampling (Salakhutdinov and Murray 2008) and logistic regression on p(h|v) vs raw pixels.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import genrt
from genrt.errors import ArgumentError
from training import data as data_mod
from training.loop import Parts, TrainConfig, average_gradients, parse_config, train


@dataclass
class RBMConfig(TrainConfig):
    """Bernoulli-Bernoulli RBM training run (CD-k, or persistent CD with --persistent)."""

    out: str = "runs/rbm"  # run folder: checkpoints, samples, config.json, rbm.onnx
    image_size: int = 8  # digits are 8x8: the RBM sees their 64 pixels as they are
    latent_dim: int = 100  # hidden units F (the loop's sample grids start Gibbs chains at h = [z > 0])
    batch_size: int = 20  # minibatch size (the practical guide: 10-100)
    lr: float = 0.05  # SGD learning rate
    weight_decay: float = 1e-4  # L2 penalty on W
    cd_k: int = 1  # Gibbs steps per update (CD-k; PCD: steps the fantasy chains advance per update)
    persistent: bool = False  # persistent CD: negative statistics from chains kept across updates
    sample_gibbs_steps: int = 200  # Gibbs steps behind each sample grid the loop writes
    sample_every: int = 1000  # steps between sample grids (and at the end)
    ckpt_every: int = 500  # steps between checkpoints (and at each epoch end)
    ais_steps: int = 15000  # AIS intermediate distributions for the held-out log-likelihood (0: skip AIS)
    ais_runs: int = 100  # AIS runs (importance weights) per estimate


class RBM(nn.Module):
    """The parameters, and ``forward(z)``: images (N, C, S, S) in [-1, 1] after Gibbs steps from h = [z > 0]."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: int, gibbs_steps: int = 200):
        super().__init__()
        self.image_shape = tuple(image_shape)
        visible = math.prod(image_shape)
        self.W = nn.Parameter(torch.randn(visible, hidden) * 0.01)  # the guide: N(0, 0.01)
        self.b = nn.Parameter(torch.zeros(visible))  # visible biases (set from the data in build)
        self.c = nn.Parameter(torch.zeros(hidden))  # hidden biases
        self.gibbs_steps = gibbs_steps

    def p_h(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(v @ self.W + self.c)  # (N, F)

    def p_v(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(h @ self.W.T + self.b)  # (N, V)

    def gibbs(self, v: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """k steps v -> h -> v from visible states v; returns (p(v|h) of the last step, its sampled v)."""
        pv = v
        for _ in range(k):
            h = torch.bernoulli(self.p_h(v))
            pv = self.p_v(h)
            v = torch.bernoulli(pv)
        return pv, v

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -b.v - sum_j softplus(c_j + v.W_j), so p(v) = exp(-F(v)) / Z. (N,)"""
        return -(v @ self.b) - torch.nn.functional.softplus(v @ self.W + self.c).sum(1)

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = (z[:, : self.c.shape[0]] > 0).to(self.W.dtype)
        v = torch.bernoulli(self.p_v(h))
        pv, _ = self.gibbs(v, self.gibbs_steps)
        return (pv * 2.0 - 1.0).view(-1, *self.image_shape)


class Chains(nn.Module):
    """Persistent CD's fantasy particles, a buffer so checkpoints keep them."""

    def __init__(self, n: int, visible: int):
        super().__init__()
        self.register_buffer("v", torch.zeros(n, visible))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))


class ExportedRBM(nn.Module):
    """images (N, C, S, S) in [0, 1] -> (p(h=1|v) (N, F), W (V, F), b (V,), c (F,))."""

    def __init__(self, rbm: RBM):
        super().__init__()
        self.rbm = rbm

    def forward(self, images: torch.Tensor):
        r = self.rbm
        return r.p_h(images.flatten(1)), r.W * 1.0, r.b * 1.0, r.c * 1.0


def build(cfg: RBMConfig, image_shape: tuple[int, int, int], device) -> Parts:
    if cfg.cd_k < 1:
        raise ArgumentError(f"cd_k: expected a positive integer, got {cfg.cd_k}")
    rbm = RBM(image_shape, cfg.latent_dim, cfg.sample_gibbs_steps).to(device)
    full = data_mod.load(cfg.dataset, cfg.image_size).images  # the visible biases start at log(p / (1 - p))
    limit = cfg.train_images if cfg.train_images > 0 else len(full)
    p = ((full[:limit].flatten(1) + 1.0) / 2.0).mean(0).clamp(1e-3, 1 - 1e-3)
    with torch.no_grad():
        rbm.b.copy_(torch.log(p / (1 - p)))
    opt = torch.optim.SGD(rbm.parameters(), lr=cfg.lr, momentum=0.5)
    chains = Chains(cfg.batch_size, rbm.W.shape[0]).to(device)
    per_epoch = max(1, limit // cfg.batch_size)

    def step(real: torch.Tensor, step: int) -> dict[str, float]:
        with torch.no_grad():  # the CD update is the gradient estimate itself: no autograd
            v0 = ((real + 1.0) / 2.0).flatten(1)  # (N, V) grey levels as probabilities
            ph0 = rbm.p_h(v0)  # (N, F)
            if cfg.persistent:
                if not chains.started:
                    chains.v.copy_(torch.bernoulli(v0))
                    chains.started.fill_(True)
                pvk, vk = rbm.gibbs(chains.v, cfg.cd_k)
                chains.v.copy_(vk)
                neg_v = pvk
            else:
                neg_v, _ = rbm.gibbs(torch.bernoulli(v0), cfg.cd_k)
            phk = rbm.p_h(neg_v)
            n, m = v0.shape[0], neg_v.shape[0]
            # gradient of the negative log-likelihood: negative phase minus positive phase
            rbm.W.grad = (neg_v.T @ phk) / m - (v0.T @ ph0) / n + cfg.weight_decay * rbm.W
            rbm.b.grad = neg_v.mean(0) - v0.mean(0)
            rbm.c.grad = phk.mean(0) - ph0.mean(0)
            recon = ((rbm.p_v(torch.bernoulli(ph0)) - v0) ** 2).sum(1).mean()  # one-step reconstruction error
            gap = rbm.free_energy(v0).mean() - rbm.free_energy(neg_v).mean()
        average_gradients(rbm)
        for group in opt.param_groups:
            group["momentum"] = 0.5 if step < 5 * per_epoch else 0.9
        opt.step()
        return {"recon": recon.item(), "free_energy_gap": gap.item()}

    return Parts(rbm, nn.Module(), {"rbm": opt}, step, {"chains": chains})


# --- evaluation: AIS log-likelihood and logistic regression on the features ---------------------------------------


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def unnormalised_log_prob(W: np.ndarray, b: np.ndarray, c: np.ndarray, v: np.ndarray) -> np.ndarray:
    """log p*(v) = -F(v) = b.v + sum_j softplus(c_j + v.W_j), (N,)."""
    return v @ b + _softplus(v @ W + c).sum(1)


def exact_log_partition(W: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """log Z by enumerating the hidden states (2^F of them): for tests of AIS on small RBMs."""
    F = W.shape[1]
    if F > 20:
        raise ArgumentError(f"exact_log_partition: 2^{F} hidden states is too many")
    h = ((np.arange(2**F)[:, None] >> np.arange(F)) & 1).astype(np.float64)  # (2^F, F)
    terms = h @ c + _softplus(h @ W.T + b).sum(1)
    return float(np.logaddexp.reduce(terms))


def _default_betas() -> np.ndarray:
    """The paper's schedule: 1,000 steps of 1/2000 to 0.5, 4,000 of 1e-4 to 0.9, 10,000 of 1e-5 to 1 (15,000)."""
    return np.concatenate(
        [
            np.linspace(0, 0.5, 1000, endpoint=False),
            np.linspace(0.5, 0.9, 4000, endpoint=False),
            np.linspace(0.9, 1, 10001),
        ]
    )


def ais_log_partition(
    W: np.ndarray, b: np.ndarray, c: np.ndarray, base_b: np.ndarray, *, runs: int = 100, betas=None, seed: int = 0
) -> tuple[float, float]:
    """Annealed importance sampling estimate of log Z (Salakhutdinov and Murray 2008).

    Base model: W = 0, visible biases ``base_b`` (the data's marginals), hidden biases 0, whose log Z_A is exact.
    Intermediate p_k(v) is proportional to exp((1 - beta_k) base_b.v) * exp(beta_k b.v)
    * prod_j (1 + exp(beta_k (c_j + v.W_j))), each with its Gibbs transition. Returns (log Z, its standard
    error from the spread of the importance weights, delta method).
    """
    W, b, c, base_b = (np.asarray(a, np.float64) for a in (W, b, c, base_b))
    betas = _default_betas() if betas is None else np.asarray(betas, np.float64)
    rng = np.random.default_rng(seed)
    F = W.shape[1]
    log_za = _softplus(base_b).sum() + F * math.log(2.0)

    def log_pk(v, beta):
        return (1 - beta) * (v @ base_b) + beta * (v @ b) + _softplus(beta * (v @ W + c)).sum(1)

    v = (rng.random((runs, len(b))) < 1 / (1 + np.exp(-base_b))).astype(np.float64)  # exact samples of p_0
    log_w = np.zeros(runs)
    for prev, beta in zip(betas[:-1], betas[1:], strict=True):
        log_w += log_pk(v, beta) - log_pk(v, prev)
        h = (rng.random((runs, F)) < 1 / (1 + np.exp(-beta * (v @ W + c)))).astype(np.float64)
        pv = 1 / (1 + np.exp(-((1 - beta) * base_b + beta * (h @ W.T + b))))
        v = (rng.random(pv.shape) < pv).astype(np.float64)
    log_mean_w = np.logaddexp.reduce(log_w) - math.log(runs)
    w = np.exp(log_w - log_w.max())
    stderr = float(w.std(ddof=1) / math.sqrt(runs) / w.mean())  # relative error of mean w = error of its log
    return float(log_za + log_mean_w), stderr


def rbm_arrays(rbm: RBM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(t.detach().cpu().double().numpy() for t in (rbm.W, rbm.b, rbm.c))


def evaluate(
    onnx_path: Path, dataset: str, image_size: int, train_images: int, *, ais_runs: int = 100, ais_steps: int = 15000
) -> dict:
    """Held-out numbers of an exported RBM, through genrt.load: AIS log-likelihood and logistic regression."""
    from sklearn.linear_model import LogisticRegression

    model = genrt.load(onnx_path)
    W, b, c = model.weights
    full = data_mod.load(dataset, image_size)
    x = ((full.images.flatten(1) + 1.0) / 2.0).double().numpy()  # (N, V) in [0, 1]
    images = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8).reshape(-1, image_size, image_size)
    train, test = slice(0, train_images), slice(train_images, None)
    p = x[train].mean(0).clip(1e-3, 1 - 1e-3)
    base_b = np.log(p / (1 - p))
    out: dict = {"hidden": int(W.shape[1]), "visible": int(W.shape[0])}
    if ais_steps > 0:
        betas = _default_betas() if ais_steps == 15000 else np.linspace(0.0, 1.0, ais_steps + 1)
        logz, err = ais_log_partition(W, b, c, base_b, runs=ais_runs, betas=betas, seed=0)
        logz2, _ = ais_log_partition(W, b, c, base_b, runs=ais_runs, betas=betas, seed=1)
        binary = (x > 0.5).astype(np.float64)  # log-likelihood of binary digits (grey levels thresholded at 0.5)
        out["ais"] = {
            "log_z": logz,
            "log_z_stderr": err,
            "log_z_second_seed": logz2,
            "runs": ais_runs,
            "steps": len(betas) - 1,
            "test_loglik_binarised": float(unnormalised_log_prob(W, b, c, binary[test]).mean() - logz),
            "train_loglik_binarised": float(unnormalised_log_prob(W, b, c, binary[train]).mean() - logz),
        }
    labels = full.labels.numpy()
    feats = model.features(images)
    out["logistic_regression"] = {}
    for C in (1.0, 100.0):
        acc = {}
        for name, f in (("rbm_features", feats), ("raw_pixels", x.astype(np.float32))):
            clf = LogisticRegression(C=C, max_iter=5000).fit(f[train], labels[train])
            acc[name] = float((clf.predict(f[test]) == labels[test]).mean())
        out["logistic_regression"][f"C={C:g}"] = acc
    return out


def export(parts: Parts, cfg: RBMConfig, dataset: str, path: Path, *, metrics: dict | None = None) -> Path:
    rbm = parts.G.cpu().eval()
    C, S, _ = rbm.image_shape
    meta = {
        "config": asdict(cfg),
        "dataset": dataset,
        "hidden": int(rbm.c.shape[0]),
        "image_size": [S, S],
        "channels": C,
        "input_range": [0.0, 1.0],
        "output_range": [0.0, 1.0],
        "training": f"{'persistent CD' if cfg.persistent else 'CD'}-{cfg.cd_k}",
        "description": cfg.description or f"Bernoulli RBM ({rbm.c.shape[0]} hidden units) on {dataset}",
    }
    if metrics:
        meta["metrics"] = metrics
    return genrt.export(
        ExportedRBM(rbm),
        path,
        torch.rand(2, C, S, S),
        kind="rbm",
        metadata=meta,
        input_names=["images"],
        output_names=["p_h", "W", "b", "c"],
    )


def main(argv=None) -> None:
    cfg = parse_config(
        RBMConfig,
        argv,
        prog="python -m training.rbm",
        example="python -m training.rbm --dataset digits --train-images 1347 --epochs 50 --out runs/rbm-digits",
    )
    do_export, cfg.export = cfg.export, False  # the loop would export a plain generator; the RBM exports itself
    parts = train(cfg, build)
    out = Path(cfg.out)
    saved = RBMConfig(**json.loads((out / "config.json").read_text()))
    saved.export = do_export
    if not do_export:
        return
    path = export(parts, saved, data_mod.load(saved.dataset, saved.image_size).name, out / "rbm.onnx")
    if saved.train_images > 0:
        metrics = evaluate(
            path,
            saved.dataset,
            saved.image_size,
            saved.train_images,
            ais_runs=saved.ais_runs,
            ais_steps=saved.ais_steps,
        )
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(json.dumps(metrics), file=sys.stderr)
        export(parts, saved, data_mod.load(saved.dataset, saved.image_size).name, path, metrics=metrics)
    print(path)


if __name__ == "__main__":
    main()
