"""python benchmarks/bench_inpaint_fill.py OLD.onnx NEW.onnx [--threads 2] [--repeats 15] [--sweeps ort,genrt]

Question: what does an inpainter's in-graph smooth fill cost a user? inpaint-photos starts from a fill computed
inside its graph: the harmonic push-pull (about 250 small nodes) before, with biharmonic sweeps (about 5,700) since
issue 27. Each model fills the centre hole of one 128x128 window (`Inpainter.inpaint(image, hole, blend="none")`,
what `genrt inpaint` runs per window) and a 640x427 photo with three holes (windows, Poisson blending: the whole
app). Both are ONNX Runtime sessions in one process, timed in turn (benchmarks/_util.interleaved_medians): medians.
--sweeps ort,genrt loads each model twice, with the fill's sweeps as the graph's nodes (GENRT_FILL_SWEEPS=ort) and
as genrt.FillSweeps nodes (the default since; genrt/runtime/fuse_sweeps.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import cpu, interleaved_medians  # noqa: E402

import genrt  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("models", nargs="+", help="inpainter files or bundled names")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--sweeps", default="", help="comma-separated GENRT_FILL_SWEEPS values to load each model with")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    window = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    hole = np.zeros((128, 128), bool)
    hole[32:96, 32:96] = True
    photo = rng.integers(0, 256, (427, 640, 3), dtype=np.uint8)
    holes = np.zeros((427, 640), bool)
    holes[100:160, 200:270] = holes[300:306, 40:600] = holes[:40, 610:] = True
    models = {}
    for m in args.models:
        for sweeps in args.sweeps.split(",") if args.sweeps else [""]:
            if sweeps:
                os.environ["GENRT_FILL_SWEEPS"] = sweeps  # read when the model is loaded
            models[f"{m} ({sweeps} sweeps)" if sweeps else m] = genrt.load(m, threads=args.threads)
    calls = {}
    for name, model in models.items():
        calls[f"{name}: one window"] = lambda m=model: m.inpaint(window, hole, blend="none")
        calls[f"{name}: photo, 3 holes"] = lambda m=model: m.inpaint(photo, holes)
    times = interleaved_medians(calls, repeats=args.repeats)
    print(f"{cpu()}, {args.threads} threads, medians of {args.repeats}")
    print("| model | task | ms |\n|---|---|--:|")
    for key, t in times.items():
        name, _, task = key.partition(": ")
        print(f"| {name} | {task} | {t * 1e3:.1f} |")


if __name__ == "__main__":
    main()
