"""`genrt demo`: a folder of pictures from the bundled models, with an index.html that explains each.

Sections are functions listed by sections(); each returns (title, [(file, caption), ...]). Other model kinds
(genrt/demo_models.py) and applications add their sections the same way.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import genrt
from genrt.errors import ArgumentError
from genrt.image import make_grid, save_png, write_atomic

Section = Callable[[Path, dict], tuple[str, list[tuple[str, str]]]]


def _generators() -> list[dict]:
    return [m for m in genrt.list_models() if m["kind"] == "generator"]


def _strip(rows: list[np.ndarray], nrow: int) -> np.ndarray:
    return make_grid(np.concatenate(rows), nrow=nrow)


def generator_section(name: str, description: str) -> Section:
    def section(out: Path, opts: dict):
        g = genrt.load(name, threads=opts["threads"])
        seed = opts["seed"]
        items = []
        save_png(out / f"{name}-samples.png", make_grid(g.sample(64, seed=seed), nrow=8))
        items.append((f"{name}-samples.png", f"64 random samples (seed {seed})."))
        points = g.latents(4, seed=seed + 1)
        walk = g.walk(points, steps=8, closed=True)  # 4 segments of 7 new frames + the start again
        save_png(out / f"{name}-walk.png", make_grid(walk[:-1], nrow=7))
        items.append(
            (f"{name}-walk.png", "A walk through latent space (slerp, 4 random points, 7 frames each, rows in order): "
             "smooth changes mean the model did not memorise its training images.")
        )  # fmt: skip
        z = g.latents(9, seed=seed + 2)
        a, b, c = z[0:3], z[3:6], z[6:9]
        means = g.generate(np.stack([a.mean(0), b.mean(0), c.mean(0)]))
        result = g.arithmetic(a, b, c, variants=5, noise=0.25, seed=seed)
        save_png(out / f"{name}-arithmetic.png", _strip([means, result], nrow=9))
        items.append(
            (f"{name}-arithmetic.png", "Vector arithmetic: images of concepts A, B, C (each the mean of 3 latents), "
             "then A - B + C and 5 noisy variants of it (DCGAN paper, figure 7).")
        )  # fmt: skip
        return f"{name}: {description}", items

    return section


def sections() -> list[Section]:
    """The demo's sections, in page order: one per bundled generator, the other bundled models', the apps'."""
    from genrt import demo_apps, demo_models

    return (
        [generator_section(m["name"], m["description"]) for m in _generators()]
        + demo_models.sections()
        + demo_apps.sections()
    )


def _page(blocks: list[tuple[str, list[tuple[str, str]]]], seconds: float) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>genrt demo</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "img{image-rendering:pixelated;width:32em;border:1px solid #ccc}figure{margin:1em 0}</style>",
        f"<h1>genrt demo</h1><p>genrt {html.escape(genrt.__version__)}, made in {seconds:.1f} s on this machine "
        "with genrt's runtime (ONNX Runtime and genrt's kernels, no torch).</p>",
    ]
    for title, items in blocks:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        for file, caption in items:
            parts.append(
                f"<figure><img src='{html.escape(file)}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    return "\n".join(parts) + "\n"


def run(out="genrt-demo", *, seed: int = 0, threads: int | None = None, progress=print) -> Path:
    """Writes the demo folder and returns the path of its index.html."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    todo = sections()
    if not todo:
        raise ArgumentError("no bundled models to show (genrt/models/ is empty)")
    start = time.perf_counter()
    blocks = []
    for i, section in enumerate(todo, 1):
        title, items = section(out, {"seed": seed, "threads": threads})
        blocks.append((title, items))
        progress(f"[{i}/{len(todo)}] {title.split(':')[0]}: {', '.join(f for f, _ in items)}")
    index = write_atomic(out / "index.html", _page(blocks, time.perf_counter() - start).encode())
    progress(f"wrote {index}")
    return index
