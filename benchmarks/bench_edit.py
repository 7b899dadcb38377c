"""python benchmarks/bench_edit.py [--models igan-digits igan-faces] [--repeats 20] [--threads 2]

Question: is one edit round interactive (the issue's target: under 200 ms on the 2-core machine)? For each bundled
manipulator: the median wall time of ``edit(z0, strokes, k=4)`` (the editor's Generate button: 8 starts, 30 Adam
steps on the ONNX gradient graph) for a colour stroke plus a sketch line, of ``morph(z0, z1, 8)`` (the strip the
page shows next), and of ``project(image)`` (once per photo); plus, as the baseline the round is made of, one
evaluation of the edit graph and of the projection graph on a batch of 8. Everything runs through genrt.load, in
this one process (no ONNX Runtime on the other side to disturb it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import genrt

STROKES = [
    {"tool": "color", "points": [[0.2, 0.3], [0.5, 0.5], [0.8, 0.3]], "width": 0.1, "color": [255, 255, 255]},
    {"tool": "sketch", "points": [[0.5, 0.1], [0.5, 0.9]], "width": 0.03},
]


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm: sessions, kernel choices
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _measure(name: str, repeats: int, threads) -> dict:
    m = genrt.load(name, threads=threads)
    z0 = m.sample_latents(1, seed=0)[0]
    z1 = m.edit(z0, STROKES, k=1, seed=0)[0].z
    target = m.generate(m.sample_latents(1, seed=1))[0]
    z8 = m.sample_latents(8, seed=2)
    feeds = m._feeds(target=m.prepare_image(target))
    return {
        "model": name,
        "edit_round_ms": _median_ms(lambda: m.edit(z0, STROKES, k=4, seed=0), repeats),
        "morph_8_ms": _median_ms(lambda: m.morph(z0, z1, 8), repeats),
        "project_ms": _median_ms(lambda: m.project(target), max(3, repeats // 4)),
        "edit_graph_batch8_ms": _median_ms(lambda: m({"z": z8, **feeds}), repeats * 5),
        "projection_graph_batch8_ms": _median_ms(lambda: m.projection({"z": z8, **feeds}), repeats * 5),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--models", nargs="+", default=["igan-digits", "igan-faces"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    rows = [_measure(name, args.repeats, args.threads) for name in args.models]
    print(f"CPU: {_cpu()}; threads: {args.threads or genrt.kernels.get_num_threads()}")
    print("| model | edit round (k=4) | morph (8) | project | edit graph, batch 8 | projection graph, batch 8 |")
    print("|---|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['edit_round_ms']:.0f} ms | {r['morph_8_ms']:.1f} ms | {r['project_ms']:.0f} ms | "
            f"{r['edit_graph_batch8_ms']:.2f} ms | {r['projection_graph_batch8_ms']:.2f} ms |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
