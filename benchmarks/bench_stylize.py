"""python benchmarks/bench_stylize.py [--threads 2] [--photos 100] [--skip-untiled]

Questions: (1) what does a 12-megapixel photo (4000x3000) cost through Stylizer.stylize in tiles (genrt.tiles,
whole-image instance-norm statistics), in time and peak memory, against the whole image in one run? (2) how many
photos per second does `genrt stylize` take through a folder, and does a rerun after kill -9 finish the job
without redoing or leaving partial files?

The network: Johnson et al. 2016's image transformation network (tests/reference_nets.py, width 32, random
weights: time and memory do not depend on the weights), exported by genrt with dynamic height and width. Each
measurement runs in its own child process, so peak memory (Linux VmHWM, above the process after loading the
model) is that run's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _photo(h: int, w: int):
    import numpy as np
    from skimage import data, transform

    image = transform.resize(data.astronaut(), (h, w), anti_aliasing=False, order=1)
    return np.rint(image * 255).astype(np.uint8)


def child_tiles(model_path: str, tile: int, threads: int) -> None:
    from _util import _status_kb

    import genrt

    model = genrt.load(model_path, threads=threads)
    photo = _photo(3000, 4000)
    # One-time work outside the measurement: genrt's kernel choices for the size class the run will use (measured
    # once per machine and cached), for the whole photo or for one tile with its margins.
    model.stylize(_photo(256, 256), tile=0)
    if tile == 0:
        model.prepare((1, 3, 3000, 4000))
    else:
        model.stylize(_photo(tile + 128, tile + 128), tile=0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out = model.stylize(photo, tile=tile)
    seconds = time.perf_counter() - t0
    peak = (_status_kb("VmHWM") - before) * 1024
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "shape": list(out.shape)}))


def _run_child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _folder(model_path: Path, folder: Path, photos: int, threads: int) -> dict:
    from PIL import Image

    src = folder / "photos"
    (src / "sub").mkdir(parents=True)
    base = _photo(960, 1280)
    for i in range(photos):  # 640x480 crops, JPEG, a fifth of them in a sub-folder
        y, x = (i * 37) % 480, (i * 53) % 640
        target = (src / "sub" if i % 5 == 0 else src) / f"p{i:03d}.jpg"
        Image.fromarray(base[y : y + 480, x : x + 640]).save(target, quality=90)

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "genrt.cli", "stylize", str(model_path), str(src), "-r", "-o", str(out),
                "--threads", str(threads)]  # fmt: skip

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    subprocess.run(command(folder / "styled"), check=True, capture_output=True, env=env)
    whole = time.perf_counter() - t0
    # kill -9 half-way through a fresh run, then rerun
    out2 = folder / "styled2"
    cmd2 = command(out2)
    proc = subprocess.Popen(cmd2, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.perf_counter() + whole * 3
    while time.perf_counter() < deadline:
        done_now = len(list(out2.rglob("*.jpg"))) if out2.exists() else 0
        if done_now >= photos // 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = len(list(out2.rglob("*.jpg")))
    partial = len(list(out2.rglob("*.genrt-partial")))
    t0 = time.perf_counter()
    rerun = subprocess.run(cmd2, capture_output=True, text=True, env=env, check=False)
    rerun_s = time.perf_counter() - t0
    return {
        "photos": photos,
        "seconds": whole,
        "per_second": photos / whole,
        "done_at_kill": at_kill,
        "partial_files_after_kill": partial,
        "rerun_summary": rerun.stderr.strip().splitlines()[-1] if rerun.stderr.strip() else "",
        "rerun_seconds": rerun_s,
        "after_rerun": len(list(out2.rglob("*.jpg"))),
        "partial_files_after_rerun": len(list(out2.rglob("*.genrt-partial"))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--skip-untiled", action="store_true", help="the whole 12 MP image needs several GB")
    ap.add_argument("--child-tiles", nargs=2, metavar=("MODEL", "TILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_tiles:
        child_tiles(args.child_tiles[0], int(args.child_tiles[1]), args.threads)
        return

    import torch
    from _util import fmt_bytes, machine

    import genrt
    from tests.reference_nets import JohnsonTransformer, johnson_init

    print(f"machine: {machine()}; threads: {args.threads}; genrt {genrt.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "johnson.onnx"
        meta = {"input_range": [-1.0, 1.0], "output_range": [-1.0, 1.0], "multiple": 4}
        genrt.export(
            johnson_init(JohnsonTransformer()), path, torch.randn(1, 3, 64, 64), kind="stylizer", metadata=meta
        )
        os.environ["GENRT_CACHE_DIR"] = str(folder / "cache")
        print("\n12-megapixel photo (4000x3000), Stylizer.stylize")
        print(f"{'how':<22} {'seconds':>8} {'peak extra memory':>18}")
        runs = [(f"tiles of {args.tile}", args.tile)] + ([] if args.skip_untiled else [("whole image", 0)])
        for label, tile in runs:
            r = _run_child(["--threads", str(args.threads), "--child-tiles", str(path), str(tile)])
            print(f"{label:<22} {r['seconds']:8.1f} {fmt_bytes(r['peak_bytes']):>18}", flush=True)
        print(f"\nfolder of {args.photos} photos (640x480 JPEG, a fifth in a sub-folder) through `genrt stylize -r`")
        r = _folder(path, folder, args.photos, args.threads)
        print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
