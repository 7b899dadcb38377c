"""Test clips made with PyAV from scikit-image photos (never downloaded): frames, a tone for audio, and the
container details the video path must keep (variable frame rate, rotation, colour range, 10-bit).

make_clip("clip.mp4")                                  # 24 frames 64x48 at 24 fps, a pan, with a 440 Hz tone
make_clip("vfr.mkv", frames=pan(30), vfr=True, rotation=90, full_range=True)
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def pan(count: int = 24, size: tuple[int, int] = (48, 64), step: tuple[int, int] = (1, 2)) -> list[np.ndarray]:
    """``count`` frames (H, W, 3) uint8: a window of ``size`` moving ``step`` pixels a frame over the astronaut
    (tests.clips.pan, small and in whole pixels: video tests want many short clips)."""
    from tests import clips

    return clips.pan(clips.photo("astronaut"), count, size=size, step=step, start=(60, 100))


def tone(seconds: float, rate: int = 48000) -> np.ndarray:
    """A 440 Hz stereo tone, (2, samples) float32."""
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([wave, wave])


def make_clip(
    path,
    frames: list[np.ndarray] | None = None,
    *,
    rate: int = 24,
    vfr: bool = False,
    rotation: int = 0,
    full_range: bool = False,
    audio: bool = True,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Writes a clip and returns its path. ``vfr``: frames alternate 1.5 and 1 frame periods apart (timestamps the
    output must keep); ``rotation``: a display matrix; ``audio``: a tone as long as the video, AAC (Opus in
    .webm)."""
    import av

    path = Path(path)
    frames = pan() if frames is None else frames
    h, w = frames[0].shape[:2]
    time_base = Fraction(1, 90000)
    period = 90000 // rate
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if full_range:
            stream.codec_context.color_range = 2
        if rotation:
            stream.set_display_rotation(rotation)
        if audio:  # every stream before the first packet
            sound = out.add_stream("libopus" if path.suffix == ".webm" else "aac", rate=48000)
            sound.layout = "stereo"
        pts = 0
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, "rgb48le" if pixels.dtype == np.uint16 else "rgb24")
            frame = frame.reformat(format=pix_fmt, dst_color_range=2 if full_range else 1)
            frame.pts, frame.time_base = pts, time_base
            pts += period * 3 // 2 if vfr and i % 2 == 0 else period
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio:
            samples = tone(pts / 90000)
            for k in range(0, samples.shape[1], 960):
                chunk = np.ascontiguousarray(samples[:, k : k + 960])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                af.sample_rate, af.pts = 48000, k
                for packet in sound.encode(af):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path
