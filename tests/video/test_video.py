"""Video in and out (genrt.video): clips made here with PyAV from scikit-image photos go through `genrt stylize` and
`genrt upscale`; the reference for what must be kept is the source file itself, read back with PyAV."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

import genrt  # noqa: E402
from genrt import video  # noqa: E402
from genrt.cli import main  # noqa: E402
from tests.video.clips import make_clip, pan  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _packets(path, kind: str):
    with av.open(str(path)) as c:
        stream = getattr(c.streams, kind)[0]
        return [(p.pts, p.duration, bytes(p)) for p in c.demux(stream) if p.size]


def _seconds(path) -> list[float]:
    """Each video frame's presentation time, in order."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(float(p.pts * s.time_base) for p in c.demux(s) if p.size)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.mark.parametrize("name,kw", [
    ("clip.mp4", {}),
    ("vfr.mkv", {"vfr": True, "rotation": 90, "full_range": True}),
    ("clip.mov", {"rotation": 270}),
    ("clip.webm", {"codec": "libvpx-vp9"}),
])  # fmt: skip
def test_stylize_keeps_frames_timing_audio_rotation_range(tmp_path, name, kw):
    src = make_clip(tmp_path / name, **kw)
    out = tmp_path / "out" / name
    assert main(["stylize", "style-gravel", str(src), "-o", str(out)]) == 0
    a, b = video.probe(src), video.probe(out)
    assert (b.width, b.height) == (a.width, a.height)
    assert b.rotation == a.rotation == kw.get("rotation", 0)
    assert b.color_range == (2 if kw.get("full_range") else 1)
    assert _seconds(out) == pytest.approx(_seconds(src), abs=1e-6)  # every timestamp, variable rate too
    assert abs(b.duration - a.duration) < 1 / 24
    assert [p[2] for p in _packets(out, "audio")] == [p[2] for p in _packets(src, "audio")]  # copied, bit for bit
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no work folder or partial file left


def test_frames_are_the_photo_path(tmp_path):
    """--no-temporal: each frame is what `stylize` makes of the decoded source frame (up to the encoder's loss)."""
    src = make_clip(tmp_path / "c.mp4", pan(12, (64, 96)))
    out = tmp_path / "o.mp4"
    assert main(["stylize", "style-gravel", str(src), "-o", str(out), "--no-temporal", "--crf", "10"]) == 0
    model = genrt.load("style-gravel")
    made = [f.pixels for f in video.frames(out)]
    assert len(made) == 12
    for frame, got in zip(video.frames(src), made, strict=True):
        assert _psnr(model.stylize(frame.pixels), got) > 30


def test_upscale_clip(tmp_path):
    src = make_clip(tmp_path / "c.mp4", pan(6, (24, 32)))
    out = tmp_path / "up.mp4"
    assert main(["upscale", "sr-x4", str(src), "-o", str(out)]) == 0
    info = video.probe(out)
    assert (info.width, info.height, info.frames) == (128, 96, 6)
    model = genrt.load("sr-x4")
    first = next(video.frames(src)).pixels
    assert _psnr(model.upscale(first), next(video.frames(out)).pixels) > 30


def test_ten_bit_source_stays_ten_bit(tmp_path):
    frames = [(f.astype(np.uint16) * 257) for f in pan(4)]
    src = make_clip(tmp_path / "deep.mkv", frames, pix_fmt="yuv420p10le", audio=False)
    assert video.probe(src).deep
    out = tmp_path / "o.mkv"
    assert main(["stylize", "style-gravel", str(src), "-o", str(out)]) == 0
    info = video.probe(out)
    assert info.deep and info.pix_fmt.startswith("yuv420p10")
    assert next(video.frames(out)).pixels.dtype == np.uint16


def test_folder_of_photos_and_clips(tmp_path):
    from genrt.image import save_png

    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4", pan(5))
    save_png(src / "b.png", pan(1)[0])
    (src / "c.mp4").write_bytes(b"not a video at all" * 10)
    code = subprocess.run(
        [sys.executable, "-m", "genrt.cli", "stylize", "style-gravel", str(src), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert code.returncode == 1, code.stderr
    lines = code.stderr.strip().splitlines()
    assert lines[-1] == "2 done, 0 skipped (already there), 1 failed"
    assert len(lines) == 2 and lines[0].startswith("failed ") and "c.mp4" in lines[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-styled.mp4", "b-styled.png"]


def test_never_over_the_input(tmp_path):
    src = make_clip(tmp_path / "c.mp4", pan(3))
    before = src.read_bytes()
    assert main(["stylize", "style-gravel", str(src), "-o", str(src)]) == 2
    assert main(["stylize", "style-gravel", str(tmp_path), "-o", str(tmp_path), "--suffix", ""]) == 2
    assert src.read_bytes() == before


def _bad_clips(folder: Path) -> dict[str, Path]:
    good = make_clip(folder / "good.mp4", pan(8)).read_bytes()
    clips = {}
    (folder / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    clips["corrupt"] = folder / "junk.mp4"
    (folder / "half.mp4").write_bytes(good[: len(good) // 2])
    clips["truncated"] = folder / "half.mp4"
    (folder / "empty.mp4").write_bytes(b"")
    clips["zero-length"] = folder / "empty.mp4"
    (folder / "unknown.mp4").write_bytes(good.replace(b"avc1", b"zzzz"))
    clips["unknown codec"] = folder / "unknown.mp4"
    with av.open(str(folder / "sound.mp4"), "w") as out:
        a = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for p in [*a.encode(frame), *a.encode()]:
            out.mux(p)
    clips["no video stream"] = folder / "sound.mp4"
    with av.open(str(folder / "tiny.mkv"), "w") as out:  # 100,000 frames of 1x1
        s = out.add_stream("ffv1", rate=1000)
        s.width = s.height = 1
        s.pix_fmt = "yuv444p"
        f = av.VideoFrame.from_ndarray(np.zeros((1, 1, 3), np.uint8), "rgb24").reformat(format="yuv444p")
        for i in range(100_000):
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    clips["1x1"] = folder / "tiny.mkv"
    return clips


def test_bad_clips_one_line_each_and_nothing_left(tmp_path, capsys):
    clips = _bad_clips(tmp_path)
    for what, path in clips.items():
        out = tmp_path / "out" / what.replace(" ", "-")
        capsys.readouterr()
        assert main(["stylize", "style-gravel", str(path), "-o", str(out) + path.suffix]) == 1, what
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and err[0].startswith(f"failed {path}: "), (what, err)
        assert "Traceback" not in err[0] and "internal error" not in err[0], (what, err)
        left = list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
        assert left == [], (what, left)


def test_truncated_stream_with_index_first_names_the_frames(tmp_path):
    """An MP4 whose index comes first (faststart) but whose data stops early: decoding runs out partway."""
    src = tmp_path / "fast.mp4"
    frames = pan(40, (48, 64), (3, 5))
    with av.open(str(src), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for pixels in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(pixels, "rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(genrt.InvalidVideoError, match="truncated|corrupt"):
        video.process(cut, tmp_path / "o.mp4", lambda x: x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4", "fast.mp4"]


_KILLER = textwrap.dedent(
    """
    import os, signal, sys, time
    import numpy as np
    from genrt import video

    calls = []
    def transform(x):
        calls.append(1)
        if len(calls) == int(sys.argv[3]):  # once the second segment is on disk, frames in flight behind it
            seg = video.work_folder(sys.argv[2]) / "seg-000001.mp4"
            deadline = time.time() + 30
            while not seg.exists() and time.time() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
        return (255 - x).astype(np.uint8)
    transform.restore = lambda a, b: print("restored", a.shape, b.shape, flush=True)
    video.process(sys.argv[1], sys.argv[2], transform, options=video.EncodeOptions(segment_frames=8), key="k")
    print("calls", len(calls), flush=True)
    """
)


def test_kill_then_rerun_resumes_from_the_last_segment(tmp_path):
    src = make_clip(tmp_path / "c.mp4", pan(30))
    out = tmp_path / "o.mp4"
    run = [sys.executable, "-c", _KILLER, str(src), str(out)]
    first = subprocess.run([*run, "21"], capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == -9, first.stderr
    assert not out.exists()
    assert sorted(p.name for p in video.work_folder(out).glob("seg-*.mp4")) == ["seg-000000.mp4", "seg-000001.mp4"]
    second = subprocess.run([*run, "0"], capture_output=True, text=True, cwd=ROOT)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["restored", "(48,", "64,", "3)", "(48,", "64,", "3)", "calls", "14"]
    # the same file as a run never killed
    whole = tmp_path / "whole.mp4"
    assert subprocess.run([*run[:3], str(src), str(whole), "0"], cwd=ROOT).returncode == 0
    assert _packets(out, "video") == _packets(whole, "video")
    assert _packets(out, "audio") == _packets(src, "audio")
    assert not video.work_folder(out).exists()


def test_changed_options_start_afresh(tmp_path):
    src = make_clip(tmp_path / "c.mp4", pan(10))
    out = tmp_path / "o.mp4"
    work = video.work_folder(out)
    work.mkdir()
    (work / "manifest.json").write_text("{}")  # an earlier job's, of other options
    (work / "seg-000000.mp4").write_bytes(b"stale")
    assert video.process(src, out, lambda x: x, options=video.EncodeOptions(segment_frames=4)) == 10
    assert video.probe(out).frames == 10 and not work.exists()


@pytest.mark.parametrize("flags,message", [
    (["--codec", "nope"], "--codec"),
    (["--pix-fmt", "rgb0"], "--pix-fmt"),
    (["--crf", "99"], "--crf"),
    (["--preset", "warp9"], "--preset"),
])  # fmt: skip
def test_bad_video_flags_fail_before_work(tmp_path, capsys, flags, message):
    src = make_clip(tmp_path / "c.mp4", pan(3))
    assert main(["stylize", "style-gravel", str(src), "-o", str(tmp_path / "o.mp4"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


def test_odd_size_is_kept(tmp_path):
    src = make_clip(tmp_path / "odd.mkv", [f[:33, :45] for f in pan(3)], pix_fmt="yuv444p", audio=False)
    out = tmp_path / "o.mkv"
    assert video.process(src, out, lambda x: x) == 3
    info = video.probe(out)
    assert (info.width, info.height) == (45, 33) and info.pix_fmt == "yuv444p"


def test_memory_is_flat(tmp_path):
    """Frames stream through bounded queues: a transform never sees more than a few frames in flight."""
    src = make_clip(tmp_path / "c.mp4", pan(60))
    alive = []

    class Probe:
        def __call__(self, x):
            import gc

            gc.collect()
            alive.append(sum(isinstance(o, np.ndarray) and o.shape == x.shape for o in gc.get_objects()))
            return x

    video.process(src, tmp_path / "o.mp4", Probe())
    assert max(alive) <= 16, alive


def test_no_partial_output_on_a_transform_error(tmp_path):
    src = make_clip(tmp_path / "c.mp4", pan(12))

    seen = []

    def boom(x):
        seen.append(1)
        if len(seen) == 10:
            raise genrt.ArgumentError("stop")
        return x

    with pytest.raises(genrt.ArgumentError):
        video.process(src, tmp_path / "o.mp4", boom, options=video.EncodeOptions(segment_frames=4))
    assert not (tmp_path / "o.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".genrt-partial")]
    assert os.path.isdir(video.work_folder(tmp_path / "o.mp4"))  # finished segments wait for a rerun


def test_audio_the_container_cannot_hold_fails_before_work(tmp_path):
    """PCM audio copied into WebM is refused up front (nothing encoded, nothing left); into MP4 it goes."""
    src = tmp_path / "pcm.mkv"
    with av.open(str(src), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("pcm_s16le", rate=48000)
        a.layout = "mono"
        for f in pan(6):
            for p in s.encode(av.VideoFrame.from_ndarray(f, "rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for p in [*a.encode(frame), *a.encode()]:
            out.mux(p)
    calls = []
    with pytest.raises(genrt.InvalidVideoError, match="pcm_s16le audio cannot go into .webm"):
        video.process(src, tmp_path / "o.webm", lambda x: calls.append(1) or x)
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["pcm.mkv"]
    assert video.process(src, tmp_path / "o.mkv", lambda x: x) == 6
    assert [p[2] for p in _packets(tmp_path / "o.mkv", "audio")] == [p[2] for p in _packets(src, "audio")]
