"""python benchmarks/bench_upscale.py [--model genrt/models/sr-x4.onnx] [--threads 2] [--rounds 3] [--photos 24]

Questions, for a x4 super-resolution network (Johnson et al. 2016; the bundled sr-x4 by default):
(1) how much faster does genrt.load run it than a plain onnxruntime session on the same file, at 256x256 -> 1024x1024
    and 512x512 -> 2048x2048, and how close are the outputs (PSNR of genrt's against plain ORT's float32 output)?
(2) what do tiles (Upscaler.upscale with --tile 256) cost against the whole image, in time and peak extra memory,
    on a 2000x2000 photo (8000x8000 out; the whole network would need tens of GB there) and on a 600x600 one, and
    what does the default tile (picked from genrt.apps.upscale.TILE_MEMORY) take? (--tile-cases)
(3) how many megapixels out per second does `genrt upscale` make through a folder?

Each engine runs in its own process (ONNX Runtime's spinning thread pools slow whatever runs next in the same
process): every round starts one child per engine, in turn, each printing the median of its timings; printed are
medians over rounds. Peak memory: Linux VmHWM above the child's resident memory after loading the model and a warm-up
call, so it is that run's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SIZES = (256, 512)


def _photo(h: int, w: int):
    import numpy as np
    from skimage import data, transform

    image = transform.resize(data.astronaut(), (h, w), anti_aliasing=False, order=1)
    return np.rint(image * 255).astype(np.uint8)


def _input(size: int):
    import numpy as np

    return np.ascontiguousarray(_photo(size, size).transpose(2, 0, 1)[None], dtype=np.float32) / 255


def child_speed(engine: str, model_path: str, threads: int) -> None:
    if engine == "genrt":
        import genrt

        model = genrt.load(model_path, threads=threads)
        run = model
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(x):
            return session.run(None, {name: x})[0]

    out = {}
    for size in SIZES:
        x = _input(size)
        run(x)  # first call: genrt decides this size class (from the cache after the first round)
        times = []
        for _ in range(5 if size <= 256 else 3):
            t0 = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t0)
        out[str(size)] = statistics.median(times)
    print(json.dumps(out))


def child_tiles(model_path: str, size: int, tile: int, threads: int) -> None:
    from _util import peak_extra_bytes

    import genrt

    model = genrt.load(model_path, threads=threads)
    photo = _photo(size, size)
    if tile < 0:  # the default: the tile size genrt picks from its memory budget
        tile = model.default_tile(size, size)
    model.upscale(_photo(tile + 64, tile + 64) if tile else _photo(64, 64), tile=0)  # kernel choices, measured once
    if tile == 0:
        model.prepare((1, 3, size, size))
    result = {"tile": tile}

    def run():
        t0 = time.perf_counter()
        result["out"] = model.upscale(photo, tile=tile)
        result["seconds"] = time.perf_counter() - t0

    peak = peak_extra_bytes(run)
    out = result["out"]
    print(json.dumps({"seconds": result["seconds"], "peak_bytes": peak, "output_bytes": out.nbytes,
                      "shape": list(out.shape), "tile": result["tile"]}))  # fmt: skip


def _child(args: list[str], env=None) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _psnr_vs_ort(model_path: str, threads: int) -> dict[int, float]:
    import numpy as np
    import onnxruntime as ort

    import genrt

    model = genrt.load(model_path, threads=threads)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = {}
    for size in SIZES:
        x = _input(size)
        mse = float(np.mean((model(x) - session.run(None, {name: x})[0]) ** 2))  # outputs in [0, 1]
        out[size] = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
    return out


def _folder(model_path: str, folder: Path, photos: int, threads: int) -> dict:
    from PIL import Image

    src = folder / "photos"
    src.mkdir()
    base = _photo(960, 1280)
    for i in range(photos):  # 320x240 crops as JPEG: 1280x960 (1.2 megapixels) out each
        y, x = (i * 37) % 720, (i * 53) % 960
        Image.fromarray(base[y : y + 240, x : x + 320]).save(src / f"p{i:03d}.jpg", quality=90)
    cmd = [sys.executable, "-m", "genrt.cli", "upscale", model_path, str(src), "-o", str(folder / "out"),
           "--ext", "png", "--threads", str(threads)]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"genrt upscale failed:\n{done.stderr[-3000:]}")
    megapixels = photos * 1280 * 960 / 1e6
    return {"photos": photos, "seconds": seconds, "megapixels_out_per_s": megapixels / seconds,
            "summary": done.stderr.strip().splitlines()[-1]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "genrt" / "models" / "sr-x4.onnx"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--photos", type=int, default=24)
    ap.add_argument("--skip", nargs="*", default=[], choices=["speed", "tiles", "folder"])
    ap.add_argument(
        "--tile-cases", default="600:0,600:256,600:default,2000:256,2000:128,2000:default",
        help="SIZE:TILE photos for the tiles table (TILE 0: whole; default: the tile genrt picks)",
    )  # fmt: skip
    ap.add_argument("--child-speed", metavar="ENGINE", help=argparse.SUPPRESS)
    ap.add_argument("--child-tiles", nargs=2, type=int, metavar=("SIZE", "TILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_speed:
        child_speed(args.child_speed, args.model, args.threads)
        return
    if args.child_tiles:
        child_tiles(args.model, *args.child_tiles, args.threads)
        return

    import onnxruntime as ort
    from _util import fmt_bytes, machine

    import genrt

    print(f"machine: {machine()}; threads: {args.threads}; genrt {genrt.__version__} isa={genrt.kernels.cpu_isa()}; "
          f"onnxruntime {ort.__version__}; model: {args.model}; rounds: {args.rounds}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {"GENRT_CACHE_DIR": str(folder / "cache")}  # kernel choices measured in round 1, reused after
        if "speed" not in args.skip:
            results: dict = {e: {s: [] for s in SIZES} for e in ("genrt", "ort")}
            for _ in range(args.rounds):
                for engine in results:
                    r = _child(["--model", args.model, "--threads", str(args.threads), "--child-speed", engine], env)
                    for size in SIZES:
                        results[engine][size].append(r[str(size)])
            psnr = _psnr_vs_ort(args.model, args.threads)
            print(f"\n{'input -> output':<20} | {'plain ORT s':>11} {'genrt s':>9} | {'speed-up':>8} | {'PSNR dB':>7}")
            for size in SIZES:
                t = {e: statistics.median(results[e][size]) for e in results}
                label = f"{size}x{size} -> {4 * size}"
                print(f"{label:<20} | {t['ort']:11.3f} {t['genrt']:9.3f} | {t['ort'] / t['genrt']:7.2f}x | "
                      f"{psnr[size]:7.1f}")  # fmt: skip
        if "tiles" not in args.skip:
            print(f"\n{'photo, how':<28} {'seconds':>8} {'peak extra memory':>18} {'output itself':>14}")
            for case in args.tile_cases.split(","):
                size, _, tile = case.partition(":")
                tile = -1 if tile == "default" else int(tile)
                r = _child(["--model", args.model, "--threads", str(args.threads), "--child-tiles", size,
                            str(tile)], env)  # fmt: skip
                how = f"tiles of {r['tile']}" if r["tile"] else "whole"
                label = f"{size}x{size}, " + (f"default ({how})" if tile < 0 else how)
                print(f"{label:<28} {r['seconds']:8.1f} {fmt_bytes(r['peak_bytes']):>18} "
                      f"{fmt_bytes(r['output_bytes']):>14}", flush=True)  # fmt: skip
        if "folder" not in args.skip:
            print(f"\nfolder of {args.photos} photos (320x240 JPEG -> 1280x960 PNG) through `genrt upscale`")
            print(json.dumps(_folder(args.model, folder, args.photos, args.threads), indent=1))


if __name__ == "__main__":
    main()
