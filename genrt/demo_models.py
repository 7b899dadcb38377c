"""`genrt demo` sections for the bundled VAE, RBM, classifier and InfoGAN models (see genrt/models/README.md).

Each section has the shape of genrt.demo's: ``section(out, opts) -> (title, [(file, caption), ...])`` with
``opts = {"seed": int, "threads": int | None}``. :func:`sections` returns one per bundled model of these kinds;
``genrt.demo.sections()`` appends them after the generators'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import genrt
from genrt.demo import Section
from genrt.image import make_grid, save_png


def _zoom(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so 8x8 and 16x16 pictures stay visible in the page."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _digits(n: int, start: int = 1347) -> tuple[np.ndarray, np.ndarray] | None:
    """Held-out digits (the last 450, which no bundled model trained on) as uint8 (n, 8, 8), and their labels;
    None without scikit-learn (the `train` extra), which ships them (nothing is downloaded)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    d = load_digits()
    return np.rint(d.images[start : start + n] * (255 / 16)).astype(np.uint8), d.target[start : start + n]


def vae_section(name: str, description: str) -> Section:
    def section(out: Path, opts: dict):
        v = genrt.load(name, threads=opts["threads"])
        items = []
        save_png(out / f"{name}-samples.png", make_grid(v.sample(64, seed=opts["seed"]), nrow=8))
        items.append((f"{name}-samples.png", f"64 samples: decoder means of z ~ N(0, I) (seed {opts['seed']})."))
        if v.metadata.get("dataset") == "digits" and _digits(1) is not None:
            real, _ = _digits(16)
            real32 = v.reconstruct(real)  # also resizes 8x8 -> 32x32
            pairs = np.concatenate([np.repeat(np.repeat(real, 4, 1), 4, 2)[..., None], real32])
            save_png(out / f"{name}-reconstructions.png", make_grid(pairs, nrow=16))
            items.append(
                (f"{name}-reconstructions.png", "Top: 16 held-out digits (never seen in training); bottom: "
                 "decode(encode(x)).")
            )  # fmt: skip
        if v.latent_dim == 2:
            save_png(out / f"{name}-manifold.png", v.manifold(20))
            items.append(
                (f"{name}-manifold.png", "The learned 2-D manifold: decoder means on a 20x20 grid of the latent "
                 "plane, spaced by the prior's inverse CDF (the VAE paper's figure 4).")
            )  # fmt: skip
        return f"{name}: {description}", items

    return section


def rbm_section(name: str, description: str) -> Section:
    def section(out: Path, opts: dict):
        r = genrt.load(name, threads=opts["threads"])
        save_png(out / f"{name}-filters.png", _zoom(r.filters(), 4))
        samples = r.sample(36, seed=opts["seed"], gibbs_steps=1000)
        save_png(out / f"{name}-samples.png", _zoom(make_grid(samples, nrow=6), 4))
        return f"{name}: {description}", [
            (f"{name}-filters.png", f"The weights W: one 8x8 filter per hidden unit ({r.hidden}), each scaled to its "
             "own range."),
            (f"{name}-samples.png", "36 samples: p(v|h) after 1000 steps of block Gibbs sampling from random pixels "
             "(run in numpy from the weights)."),
        ]  # fmt: skip

    return section


def classifier_section(name: str, description: str) -> Section:
    def section(out: Path, opts: dict):
        c = genrt.load(name, threads=opts["threads"])
        if _digits(1) is None:
            return f"{name}: {description}", []
        images, labels = _digits(450)
        pred = c.predict(images)
        wrong = np.flatnonzero(pred != labels)[:32]
        items = []
        acc = float((pred == labels).mean())
        if len(wrong):
            save_png(out / f"{name}-mistakes.png", _zoom(make_grid(images[wrong], nrow=16), 3))
            shown = ", ".join(f"{labels[i]}->{pred[i]}" for i in wrong[:16])
            items.append(
                (f"{name}-mistakes.png", f"Accuracy {acc:.1%} on the 450 held-out digits; the first "
                 f"{len(wrong)} mistakes (true->predicted: {shown}, ...).")
            )  # fmt: skip
        return f"{name}: {description} (held-out accuracy {acc:.1%})", items

    return section


def infogan_section(name: str, description: str) -> Section:
    def section(out: Path, opts: dict):
        m = genrt.load(name, threads=opts["threads"])
        seed = opts["seed"]
        save_png(out / f"{name}-category.png", _zoom(m.traverse("category", rows=10, seed=seed), 2))
        items = [
            (f"{name}-category.png", "Varying the categorical code c1 (columns, 0..9) with noise and continuous codes "
             "fixed per row: c1 picks the digit without ever seeing a label (InfoGAN paper, figure 2a)."),
        ]  # fmt: skip
        for i in range(m.continuous):
            file = f"{name}-continuous{i}.png"
            save_png(out / file, _zoom(m.traverse(f"continuous:{i}", 10, rows=10, seed=seed, span=(-2, 2)), 2))
            items.append((file, f"Varying continuous code c{i + 2} from -2 to 2 (trained on [-1, 1]), rest fixed."))
        return f"{name}: {description}", items

    return section


_BY_KIND = {"vae": vae_section, "rbm": rbm_section, "classifier": classifier_section, "infogan": infogan_section}


def sections() -> list[Section]:
    """One section per bundled model of kind vae, rbm, classifier or infogan, in name order."""
    return [_BY_KIND[m["kind"]](m["name"], m["description"]) for m in genrt.list_models() if m["kind"] in _BY_KIND]
