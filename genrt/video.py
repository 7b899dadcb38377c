"""Video as a source and a sink (PyAV, whose wheel ships FFmpeg): frames in, frames out, the clip kept whole.

An application that makes images (stylize, upscale) takes a clip exactly as it takes photos: :func:`process` decodes
the frames, hands each to a transform (the same app path photos take: tiles, 16-bit, adopted models), and encodes
what comes back. Kept from the source: every audio stream (its packets copied, not re-encoded), each frame's
timestamp (variable frame rate too), the rotation the player applies, the colour range, matrix, primaries and
transfer tags. The output has the source's frames, one for one.

The work is pipelined (a decoding thread, the transform on the caller's thread, an encoding thread, bounded queues
between them), so memory stays flat however long the clip is, and decoding and encoding overlap with the network.

Long jobs survive a kill: frames are encoded in segments of ``segment_frames`` (each written atomically into a
hidden folder beside the target, ``.NAME.genrt-video``, with the last output frame kept losslessly for a transform
that carries state from frame to frame), and a rerun with the same source and options resumes after the last
finished segment. At the end the segments' packets and the source's audio are muxed into the target, atomically;
the folder is then removed. Nothing is ever written over the source.

Example::

    from genrt import video
    info = video.probe("clip.mp4")                      # frames, size, rate, rotation, audio, ...
    video.process("clip.mp4", "out.mp4", lambda rgb: 255 - rgb)
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from genrt.errors import ArgumentError, InvalidVideoError, MissingDependencyError, printable
from genrt.image import PARTIAL_SUFFIX, umask_mode

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
MIN_SIDE = 16  # smaller frames are refused: no encoder stores them well, and no one watches them
MAX_SIDE = 16384
SEGMENT_FRAMES = 48  # frames per resumable segment: at most this much work is lost to a kill
_QUEUE = 4  # frames waiting between two stages (decoded, or made and not yet encoded)
_DEFAULT_CODEC = {".webm": "libvpx-vp9"}  # else libx264
_DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28}
# libx264 "faster": 9 ms a 720p frame on 2 EPYC cores against medium's 23, files within 4 % at crf 18 (a pan): the
# encoder shares the cores with the network
_PRESET = {"libx264": "faster", "libx265": "faster", "libsvtav1": "8"}
_WORK_SUFFIX = ".genrt-video"
_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _av():
    try:
        import av
    except ImportError:
        raise MissingDependencyError("video needs PyAV: pip install 'genrt[video]'") from None
    # PyAV's default keeps FFmpeg's log quiet. Never av.logging.set_level: its Python callback, called from FFmpeg's
    # decoder threads, deadlocks against a close on the main thread.
    return av


def is_video(path) -> bool:
    """Whether the path has a video file's suffix (genrt.video.VIDEO_SUFFIXES)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


# ---------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class VideoInfo:
    """What genrt needs to know about a clip's first video stream.

    ``frames``: the count the container states (0 where it does not say: counted while decoding). ``duration`` in
    seconds. ``rotation``: degrees counter-clockwise the player turns the picture (display matrix). ``deep``: more
    than 8 bits per sample (frames are then decoded to 16 bits). ``audio``: the number of audio streams.
    """

    path: str
    width: int
    height: int
    frames: int
    duration: float
    rate: Fraction
    time_base: Fraction
    codec: str
    pix_fmt: str
    deep: bool
    rotation: int
    color_range: int
    colorspace: int
    color_primaries: int
    color_trc: int
    audio: int


def probe(path) -> VideoInfo:
    """The clip's :class:`VideoInfo`, read from its headers and first frame; InvalidVideoError for anything genrt
    cannot process (not a video, no video stream, no frame, a codec PyAV cannot decode, frames below MIN_SIDE)."""
    av = _av()
    name = printable(path)
    _check_regular(path)
    try:
        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise InvalidVideoError(f"{name}: no video stream")
            stream = container.streams.video[0]
            if stream.codec_context is None or not stream.codec_context.name:
                raise InvalidVideoError(f"{name}: a video codec PyAV cannot decode")
            stream.thread_type = "AUTO"
            first = next(container.decode(stream), None)
            if first is None:
                raise InvalidVideoError(f"{name}: no video frames (an empty or truncated clip)")
            rate = stream.average_rate or stream.guessed_rate or Fraction(0)
            duration = (
                float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1_000_000
            )
            fmt = first.format
            deep = any(c.bits > 8 for c in fmt.components)
            info = VideoInfo(
                path=os.fspath(path),
                width=first.width,
                height=first.height,
                frames=int(stream.frames or 0),
                duration=duration,
                rate=Fraction(rate),
                time_base=Fraction(stream.time_base),
                codec=stream.codec_context.name,
                pix_fmt=fmt.name,
                deep=deep,
                rotation=int(round(first.rotation or 0)) % 360,
                color_range=int(first.color_range or 0),
                colorspace=int(first.colorspace or 2),
                color_primaries=int(getattr(first, "color_primaries", 2) or 2),
                color_trc=int(getattr(first, "color_trc", 2) or 2),
                audio=len(container.streams.audio),
            )
    except InvalidVideoError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise InvalidVideoError(f"{name}: not a video genrt can read ({_reason(exc)})") from None
    if min(info.width, info.height) < MIN_SIDE or max(info.width, info.height) > MAX_SIDE:
        raise InvalidVideoError(
            f"{name}: frames of {info.width}x{info.height}; genrt takes {MIN_SIDE} to {MAX_SIDE} pixels a side"
        )
    return info


def _check_regular(path) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidVideoError(f"{printable(path)}: {exc.strerror or exc}") from None
    import stat

    if not stat.S_ISREG(st.st_mode):
        raise InvalidVideoError(f"{printable(path)}: not a regular file")
    if st.st_size == 0:
        raise InvalidVideoError(f"{printable(path)}: an empty file")


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index from 0, its timestamp and duration in the stream's time base (None where the
    clip does not say), and its pixels, (H, W, 3) uint8 RGB (uint16 for a deep source)."""

    index: int
    pts: int | None
    duration: int | None
    pixels: np.ndarray


# FFmpeg's AVColorSpace -> swscale's matrix (genrt converts with the clip's own matrix, both ways)
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


def _matrix(info: VideoInfo) -> int:
    """The YCbCr matrix (swscale's numbering): the clip's, or for an untagged clip BT.709 from 720 lines up (HD)
    and BT.601 below, as players guess."""
    return _SWS_MATRIX.get(info.colorspace, 1 if info.height >= 720 else 5)


def _range(info: VideoInfo) -> int:
    return 2 if info.color_range == 2 else 1  # JPEG (full) where tagged so, else MPEG (limited): the usual


def frames(path, info: VideoInfo | None = None, *, start: int = 0) -> Iterator[Frame]:
    """The clip's frames from index ``start`` (earlier ones are decoded and dropped: exact for any codec), as RGB.

    InvalidVideoError where decoding fails, or where fewer frames come than the container states (a truncated
    file), naming the frame.
    """
    av = _av()
    info = info or probe(path)
    fmt = "rgb48le" if info.deep else "rgb24"
    matrix, colour_range = _matrix(info), _range(info)
    index = 0
    try:
        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if index >= start:
                    if (frame.width, frame.height) != (info.width, info.height):
                        raise InvalidVideoError(
                            f"{printable(path)}: frame {index} is {frame.width}x{frame.height}, the clip "
                            f"{info.width}x{info.height} (a size change mid-clip is not supported)"
                        )
                    rgb = frame.reformat(
                        format=fmt,
                        src_colorspace=matrix,
                        dst_colorspace=matrix,
                        src_color_range=colour_range,
                        dst_color_range=2,
                    ).to_ndarray()
                    yield Frame(index, frame.pts, frame.duration or None, rgb)
                index += 1
    except InvalidVideoError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise InvalidVideoError(f"{printable(path)}: corrupt at frame {index} ({_reason(exc)})") from None
    if info.frames and index < info.frames:
        raise InvalidVideoError(f"{printable(path)}: truncated: {index} of its {info.frames} frames could be decoded")


# ---------------------------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class EncodeOptions:
    """How the output is encoded. ``codec``: an FFmpeg encoder (default libx264; libvpx-vp9 for .webm); ``crf``:
    constant quality, lower is better (default 18 for libx264); ``pix_fmt``: default yuv420p (yuv420p10le for a
    deep source where the codec has it; yuv444p where the size is odd); ``preset``: the encoder's speed preset
    (default "faster" for libx264 and libx265)."""

    codec: str | None = None
    crf: int | None = None
    pix_fmt: str | None = None
    preset: str | None = None
    segment_frames: int = SEGMENT_FRAMES


def check_options(options: EncodeOptions, target) -> EncodeOptions:
    """The options with defaults filled in for this target; ArgumentError for an encoder or pixel format this build
    of FFmpeg lacks, before any work."""
    av = _av()
    codec = options.codec or _DEFAULT_CODEC.get(Path(target).suffix.lower(), "libx264")
    try:
        encoder = av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        raise ArgumentError(f"--codec: no encoder {codec!r} in this FFmpeg (PyAV's)") from None
    if encoder.type != "video":
        raise ArgumentError(f"--codec: {codec!r} is not a video encoder")
    formats = [f.name for f in encoder.video_formats or []]
    if options.pix_fmt is not None and formats and options.pix_fmt not in formats:
        raise ArgumentError(f"--pix-fmt: {codec} takes {', '.join(formats)}; not {options.pix_fmt!r}")
    if options.preset is not None and codec in ("libx264", "libx265") and options.preset not in _X26X_PRESETS:
        raise ArgumentError(f"--preset: {codec} takes {', '.join(_X26X_PRESETS)}; not {options.preset!r}")
    if options.crf is not None and not 0 <= options.crf <= 63:
        raise ArgumentError(f"--crf: expected 0 to 63, got {options.crf}")
    if options.segment_frames < 1:
        raise ArgumentError(f"segment_frames: expected at least 1, got {options.segment_frames}")
    crf = options.crf if options.crf is not None else _DEFAULT_CRF.get(codec)
    return EncodeOptions(codec, crf, options.pix_fmt, options.preset or _PRESET.get(codec), options.segment_frames)


def _pix_fmt(options: EncodeOptions, info: VideoInfo, width: int, height: int) -> str:
    av = _av()
    formats = [f.name for f in av.codec.Codec(options.codec, "w").video_formats or []]
    if options.pix_fmt:
        return options.pix_fmt
    wanted = "yuv420p10le" if info.deep and "yuv420p10le" in formats else "yuv420p"
    if width % 2 or height % 2:  # 4:2:0 needs even sizes
        wanted = wanted.replace("420", "444")
    return wanted if not formats or wanted in formats else formats[0]


class _SegmentWriter:
    """Encodes frames into numbered segment files in the work folder, each made under a temporary name and renamed
    when whole. Beside each, ``.state.npz``: its first timestamp (a segment's own timestamps start at 0, since MP4
    stores a later start only to the millisecond) and its last output frame (a stateful transform's resume point)."""

    def __init__(self, work: Path, info: VideoInfo, options: EncodeOptions, suffix: str):
        self.work, self.info, self.options, self.suffix = work, info, options, suffix
        self.container = self.stream = None
        self.segment = -1
        self.last: np.ndarray | None = None

    def path(self, segment: int) -> Path:
        return self.work / f"seg-{segment:06d}{self.suffix}"

    def write(self, index: int, pts: int | None, duration: int | None, pixels: np.ndarray) -> None:
        segment = index // self.options.segment_frames
        pts = index if pts is None else pts
        if segment != self.segment:
            self.close()
            self._open(segment, pixels)
            self.origin = pts
        av = _av()
        frame = av.VideoFrame.from_ndarray(pixels, "rgb48le" if pixels.dtype == np.uint16 else "rgb24")
        frame = frame.reformat(
            format=self.stream.pix_fmt,
            src_colorspace=self.matrix,
            dst_colorspace=self.matrix,
            src_color_range=2,
            dst_color_range=_range(self.info),
        )
        frame.pts = pts - self.origin
        frame.time_base = self.stream.codec_context.time_base
        if duration:
            frame.duration = duration  # the last frame's too, so the clip keeps its length
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.last = pixels
        if (index + 1) % self.options.segment_frames == 0:
            self.close()  # now, not at the next frame: a kill in between loses nothing of it

    def _open(self, segment: int, pixels: np.ndarray) -> None:
        av = _av()
        self.segment = segment
        self.tmp = self.work / f".seg-{segment:06d}{PARTIAL_SUFFIX}{self.suffix}"
        self.container = av.open(os.fspath(self.tmp), "w")
        height, width = pixels.shape[:2]
        rate = self.info.rate if self.info.rate > 0 else Fraction(25)
        stream = self.container.add_stream(self.options.codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = _pix_fmt(self.options, self.info, width, height)
        stream.time_base = self.info.time_base
        stream.codec_context.time_base = self.info.time_base
        cc = stream.codec_context
        cc.color_range = _range(self.info)
        self.matrix = _matrix(self.info)
        cc.colorspace = self.info.colorspace if self.info.colorspace != 2 else (1 if self.matrix == 1 else 6)
        cc.color_primaries = self.info.color_primaries
        cc.color_trc = self.info.color_trc
        opts = {}
        if self.options.crf is not None:
            opts["crf"] = str(self.options.crf)
        if self.options.preset is not None:
            opts["preset"] = str(self.options.preset)
        if self.options.codec in ("libx264", "libx265"):
            opts["bf"] = "0"  # no B-frames: each segment's decode order then starts at its first frame, and
            # segments join without timestamps going back (the cost: a few per cent more bits at one quality)
        if self.options.codec == "libvpx-vp9" and self.options.crf is not None:
            opts["b"] = "0"  # constant quality
        stream.options = opts
        self.stream = stream

    def close(self) -> None:
        """Flushes and finishes the open segment: its last frame, then the segment itself, each renamed into place."""
        if self.container is None:
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        _fsync(self.tmp)
        fd, tmp_state = tempfile.mkstemp(dir=self.work, prefix=".state", suffix=PARTIAL_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, last=self.last, origin=np.int64(self.origin))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_state, _state_path(self.work, self.segment))
        os.replace(self.tmp, self.path(self.segment))
        self.container = self.stream = None

    def abort(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:
                pass
            Path(self.tmp).unlink(missing_ok=True)
            self.container = self.stream = None


def _state_path(work: Path, segment: int) -> Path:
    return work / f"seg-{segment:06d}.state.npz"


def _state(work: Path, segment: int) -> tuple[np.ndarray, int]:
    """(last output frame, first timestamp) of a finished segment."""
    with np.load(_state_path(work, segment), allow_pickle=False) as z:
        return z["last"], int(z["origin"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def work_folder(target) -> Path:
    """Where the segments of ``target`` wait until the clip is whole: a hidden folder beside it."""
    target = Path(target)
    return target.parent / f".{target.name}{_WORK_SUFFIX}"


def _manifest(source: Path, info: VideoInfo, options: EncodeOptions, key: str) -> dict:
    st = os.stat(source)
    return {
        "source": {"size": st.st_size, "mtime_ns": st.st_mtime_ns},
        "frames": info.frames,
        "options": asdict(options),
        "key": hashlib.sha256(key.encode()).hexdigest(),
        "version": 1,
    }


def _done_segments(work: Path, manifest: dict, suffix: str) -> int:
    """How many segments of an earlier run of this same job are whole (0 where there was none or it differs:
    then the folder is emptied)."""
    try:
        old = json.loads((work / "manifest.json").read_text())
    except (OSError, ValueError):
        old = None
    if old != manifest:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=work, prefix=".manifest", suffix=PARTIAL_SUFFIX)
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f)
        os.replace(tmp, work / "manifest.json")
        return 0
    count = 0
    while (work / f"seg-{count:06d}{suffix}").is_file() and _state_path(work, count).is_file():
        count += 1
    return count


class _Pipeline:
    """Runs a producer and a consumer in threads around the caller's work, through bounded queues; the first error
    of any stage stops the others and is raised on the caller's thread."""

    _END = object()

    def __init__(self):
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def put(self, q: queue.Queue, item) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue):
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return self._END

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()


def process(
    source,
    target,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    options: EncodeOptions | None = None,
    key: str = "",
    progress: bool = True,
    log=None,
) -> int:
    """Writes ``target``: the clip ``source`` with every frame through ``transform``, audio and timing kept.

    Args:
        source: a video file (genrt.video.VIDEO_SUFFIXES).
        target: the video file to write (its suffix picks the container); never the source.
        transform: (H, W, 3) uint8 RGB (uint16 for a deep source) -> an RGB frame of one size for the whole clip.
            Called in frame order on this thread. If it has ``restore(previous_input, previous_output)``, a resumed
            run calls it first with the frames before the first one it redoes (a transform carrying state).
        options: how to encode (EncodeOptions; defaults for the target's container).
        key: what else decides the output (the model and its options): a rerun with another key starts afresh.
        progress: a bar with frames, frames per second and the time left, on ``log`` (default stderr) if a terminal.

    Returns:
        The number of frames written.

    Raises:
        InvalidVideoError for a source genrt cannot process (before anything is written), or one that turns out
        corrupt while decoding (then the work folder is removed: a rerun would fail the same way);
        ArgumentError for bad options or a target that is the source. A kill leaves the finished segments, which a
        rerun with the same source, options and key resumes from.
    """
    av = _av()
    source, target = Path(source), Path(target)
    if target.suffix.lower() not in VIDEO_SUFFIXES:
        raise ArgumentError(f"{printable(target)}: a video is written as {' '.join(VIDEO_SUFFIXES)}")
    if target.exists() and os.path.samefile(source, target):
        raise ArgumentError(f"refusing to write over input {printable(source)}")
    options = check_options(options or EncodeOptions(), target)
    info = probe(source)
    _check_audio(source, target.suffix.lower())
    work = work_folder(target)
    suffix = target.suffix.lower()
    start_segment = _done_segments(work, _manifest(source, info, options, key), suffix)
    start = start_segment * options.segment_frames
    writer = _SegmentWriter(work, info, options, suffix)
    pipe = _Pipeline()
    decoded: queue.Queue = queue.Queue(_QUEUE)
    made: queue.Queue = queue.Queue(_QUEUE)
    count = [start]

    def decode():
        try:
            for frame in frames(source, info, start=max(0, start - 1)):
                if not pipe.put(decoded, frame):
                    return
            pipe.put(decoded, pipe._END)
        except BaseException as exc:
            pipe.fail(exc)

    def encode():
        try:
            while True:
                item = pipe.get(made)
                if item is pipe._END:
                    break
                writer.write(*item)
                count[0] = item[0] + 1
            if pipe.error is None:
                writer.close()
        except BaseException as exc:
            pipe.fail(exc)
        finally:
            writer.abort()

    log = sys.stderr if log is None else log
    tty = getattr(log, "isatty", None)
    from tqdm import tqdm

    bar = tqdm(
        total=info.frames or None, initial=start, unit="frame", file=log, dynamic_ncols=True, leave=False,
        desc=source.name[:40], disable=not (progress and tty and tty()),
    )  # fmt: skip
    threads = [threading.Thread(target=decode, daemon=True), threading.Thread(target=encode, daemon=True)]
    for t in threads:
        t.start()
    size = None
    try:
        while True:
            frame = pipe.get(decoded)
            if frame is pipe._END:
                break
            if frame.index < start:  # the frame before a resumed segment: the transform's state
                restore = getattr(transform, "restore", None)
                if restore is not None:
                    restore(frame.pixels, _state(work, start_segment - 1)[0])
                continue
            out = np.ascontiguousarray(transform(frame.pixels))
            if out.ndim != 3 or out.shape[2] != 3 or out.dtype not in (np.uint8, np.uint16):
                raise ArgumentError(
                    f"transform: expected (H, W, 3) uint8 or uint16 frames, got {out.shape} {out.dtype}"
                )
            if size is None:
                size = out.shape
            elif out.shape != size:
                raise ArgumentError(f"transform: frame {frame.index} came out {out.shape}, earlier ones {size}")
            if not pipe.put(made, (frame.index, frame.pts, frame.duration, out)):
                break
            bar.update(1)
        pipe.put(made, pipe._END)
    except BaseException as exc:
        pipe.fail(exc)
    finally:
        for t in threads:
            t.join()
        bar.close()
    if pipe.error is not None:
        if isinstance(pipe.error, InvalidVideoError):
            shutil.rmtree(work, ignore_errors=True)  # corrupt: a rerun would fail alike; leave nothing behind
        if isinstance(pipe.error, av.error.FFmpegError):
            raise InvalidVideoError(f"{printable(target)}: encoding failed ({_reason(pipe.error)})") from None
        raise pipe.error
    total = count[0]
    if total == 0:
        shutil.rmtree(work, ignore_errors=True)
        raise InvalidVideoError(f"{printable(source)}: no video frames")
    try:
        _mux(source, target, work, info, total, options, suffix)
    except InvalidVideoError:  # the container refuses a stream: a rerun would fail alike
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return total


def _mux(source: Path, target: Path, work: Path, info: VideoInfo, total: int, options: EncodeOptions, suffix: str):
    """The target from the segments' video packets and the source's audio packets, in time order, atomically."""
    av = _av()
    segments = [work / f"seg-{i:06d}{suffix}" for i in range((total - 1) // options.segment_frames + 1)]
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX, dir=target.parent)
    os.close(fd)
    try:
        with av.open(segments[0].as_posix()) as first, av.open(source.as_posix(), metadata_errors="ignore") as src:
            with av.open(tmp, "w", format=_format(suffix)) as out:
                vstream = out.add_stream_from_template(first.streams.video[0])
                vstream.time_base = info.time_base
                if info.rate > 0:
                    vstream.codec_context.framerate = info.rate  # Matroska states it (else guessed from the time base)
                if info.rotation:
                    vstream.set_display_rotation(info.rotation)
                audio = _add_audio(out, src, source, suffix)
                # the source's frame durations (the encoder gives its last frame one of the average rate)
                durations = _durations(source)
                video = _segment_packets(work, segments, vstream, info.time_base, durations)
                sound = _audio_packets(src, audio)
                written = 0
                for _, _, packet in heapq.merge(video, sound, key=lambda item: (item[0], item[1])):
                    if packet.stream is vstream:
                        written += 1
                    out.mux(packet)
        if written != total:
            raise InvalidVideoError(f"{printable(target)}: {written} frames muxed, {total} made")
        _fsync(Path(tmp))
        os.chmod(tmp, umask_mode())
        os.replace(tmp, target)
    except av.error.FFmpegError as exc:  # e.g. a stream this container cannot hold
        Path(tmp).unlink(missing_ok=True)
        raise InvalidVideoError(f"{printable(target)}: cannot write ({_reason(exc)}); .mkv takes any codec") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _format(suffix: str) -> str:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov"}.get(suffix, "mp4")


def _add_audio(out, src, source: Path, suffix: str) -> dict:
    """{source stream index: output stream} for every audio stream, copied as it is; InvalidVideoError where the
    target's container cannot hold its codec."""
    av = _av()
    audio = {}
    for s in src.streams.audio:
        try:
            audio[s.index] = out.add_stream_from_template(s)
        except (av.error.FFmpegError, ValueError) as exc:
            raise InvalidVideoError(
                f"{printable(source)}: its {s.codec_context.name} audio cannot go into {suffix} ({_reason(exc)}); "
                "write .mkv instead"
            ) from None
    return audio


def _check_audio(source: Path, suffix: str) -> None:
    """Before any work: the target's container takes the source's audio as it is (else InvalidVideoError)."""
    import io

    av = _av()
    with (
        av.open(source.as_posix(), metadata_errors="ignore") as src,
        av.open(io.BytesIO(), "w", format=_format(suffix)) as out,
    ):
        _add_audio(out, src, source, suffix)


def _durations(source: Path) -> dict[int, int]:
    """{timestamp: duration} of the source's video packets (demuxed only, not decoded)."""
    av = _av()
    with av.open(source.as_posix(), metadata_errors="ignore") as src:
        return {p.pts: p.duration for p in src.demux(src.streams.video[0]) if p.pts is not None}


def _seconds(packet) -> float:
    t = packet.dts if packet.dts is not None else packet.pts
    return float((t or 0) * packet.time_base)


def _segment_packets(work: Path, segments: list[Path], stream, time_base: Fraction, durations: dict):
    """The segments' packets with their timestamps moved back to the source's."""
    av = _av()
    for i, path in enumerate(segments):
        origin = _state(work, i)[1]
        with av.open(path.as_posix()) as seg:
            for packet in seg.demux(seg.streams.video[0]):
                if packet.size == 0:
                    continue
                shift = round(origin * time_base / packet.time_base)
                packet.pts = None if packet.pts is None else packet.pts + shift
                packet.dts = None if packet.dts is None else packet.dts + shift
                if packet.time_base == time_base and durations.get(packet.pts):
                    packet.duration = durations[packet.pts]
                packet.stream = stream
                yield _seconds(packet), 0, packet


def _audio_packets(src, audio: dict):
    if not audio:
        return
    for packet in src.demux(*[src.streams[i] for i in audio]):
        if packet.size == 0:
            continue
        packet.stream = audio[packet.stream_index]
        yield _seconds(packet), 1, packet
