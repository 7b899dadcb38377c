"""Synthetic video clips made from scikit-image's photos: pans, zooms and cuts between scenes, as frame lists.

No file, no encoder, no download: each clip is a list of (H, W, 3) uint8 frames that video tests and benchmarks
feed straight to an engine. Sub-pixel motion is resampled with cv2 (bicubic), so consecutive frames differ the
way a camera's do, not only by whole-pixel shifts. A pan's true motion is known exactly (:func:`pan_motion`).

    >>> frames = clip("pan+cut", 24, size=(240, 320))  # a pan over the astronaut, then one over the cat
    >>> frames, flow, valid = pan(photo("coffee"), 8, size=(64, 64), step=(0, 3)), *pan_motion((64, 64), (0, 3))
"""

from __future__ import annotations

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # scikit-image's colour photos (never scikit-learn's)


def photo(name: str) -> np.ndarray:
    """A scikit-image colour photo by name (one of PHOTOS) as (H, W, 3) uint8."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"photo: expected one of {PHOTOS}, got {name!r}")
    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


def _resample(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The (h, w) frame whose pixel (x, y) shows image at matrix @ (x, y, 1) (bicubic, edges replicated)."""
    import cv2

    h, w = size
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(image, matrix.astype(np.float64), (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _add_noise(frames: list[np.ndarray], noise: float, seed: int) -> list[np.ndarray]:
    """Independent Gaussian noise of ``noise`` levels on each frame (a camera's sensor noise); none if noise <= 0."""
    if noise <= 0:
        return frames
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0.0, noise, f.shape), 0, 255).round().astype(np.uint8) for f in frames]


def pan(
    image: np.ndarray,
    frames: int,
    *,
    size: tuple[int, int] = (240, 320),
    step: tuple[float, float] = (0.5, 2.5),
    start: tuple[float, float] | None = None,
    noise: float = 0.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """A camera panning over ``image``: frame t is the (h, w) window at ``start + t * step`` (rows, columns).

    Args:
        image: (H, W, 3) uint8 photo.
        frames: how many frames.
        size: (h, w) of each frame.
        step: (dy, dx) pixels the window moves per frame; fractions are resampled (bicubic).
        start: (y, x) of the first window's top-left corner; default: the path centred in the photo.
        noise: standard deviation of Gaussian noise added to each frame, in levels (0: none).
        seed: the noise's seed.

    Returns:
        ``frames`` (h, w, 3) uint8 frames. ValueError if the path leaves the photo.
    """
    h, w = size
    (dy, dx), (H, W) = step, image.shape[:2]
    span_y, span_x = (frames - 1) * dy, (frames - 1) * dx
    if start is None:
        start = ((H - h - span_y) / 2, (W - w - span_x) / 2)
    y0, x0 = start
    corners_y, corners_x = (y0, y0 + span_y), (x0, x0 + span_x)
    if min(corners_y + corners_x) < 0 or max(corners_y) + h > H or max(corners_x) + w > W:
        raise ValueError(f"pan: a {h}x{w} window from {start} by {step} x {frames} leaves the {H}x{W} photo")
    out = []
    for t in range(frames):
        y, x = y0 + t * dy, x0 + t * dx
        if float(y).is_integer() and float(x).is_integer():  # whole pixels: an exact crop, no resampling blur
            out.append(np.ascontiguousarray(image[int(y) : int(y) + h, int(x) : int(x) + w]))
        else:
            out.append(_resample(image, np.array([[1, 0, x], [0, 1, y]]), size))
    return _add_noise(out, noise, seed)


def pan_motion(size: tuple[int, int], step: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A pan's true backward motion between consecutive frames: (flow, valid).

    ``flow``: (h, w, 2) float32 (dx, dy) per pixel of frame t pointing at where it is in frame t - 1 (the window moved
    by ``step``, so the content moved by -step: frame_t[y, x] == frame_{t-1}[y + dy, x + dx]); ``valid``: (h, w) bool,
    False where that point lies outside frame t - 1 (content that entered at the border).
    """
    h, w = size
    dy, dx = step
    flow = np.empty((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    ys, xs = np.mgrid[0:h, 0:w]
    valid = (xs + dx >= 0) & (xs + dx <= w - 1) & (ys + dy >= 0) & (ys + dy <= h - 1)
    return flow, valid


def zoom(
    image: np.ndarray,
    frames: int,
    *,
    size: tuple[int, int] = (240, 320),
    rate: float = 1.02,
    center: tuple[float, float] | None = None,
    noise: float = 0.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """A camera zooming into ``image`` around ``center`` (y, x; default the photo's centre) by ``rate`` per frame.

    The first frame shows the largest window of the frame's shape that fits the photo around the centre; each later
    one magnifies by ``rate`` (< 1 zooms out, and then the photo's edge pixels repeat once it no longer fills the
    frame). Returns ``frames`` (h, w, 3) uint8 frames (bicubic resampling).
    """
    h, w = size
    H, W = image.shape[:2]
    cy, cx = ((H - 1) / 2, (W - 1) / 2) if center is None else center
    reach = min(cy + 0.5, H - 0.5 - cy, cx + 0.5, W - 0.5 - cx)  # half the largest window around the centre
    if reach <= 0:
        raise ValueError(f"zoom: centre {center} is outside the {H}x{W} photo")
    scale0 = max(h / (2 * min(cy + 0.5, H - 0.5 - cy)), w / (2 * min(cx + 0.5, W - 0.5 - cx)))  # frame px per photo px
    out = []
    for t in range(frames):
        inv = 1.0 / (scale0 * rate**t)  # photo pixels per frame pixel
        # frame (x, y) -> photo (cx + (x - (w - 1) / 2) * inv, cy + (y - (h - 1) / 2) * inv)
        matrix = np.array([[inv, 0, cx - (w - 1) / 2 * inv], [0, inv, cy - (h - 1) / 2 * inv]])
        out.append(_resample(image, matrix, size))
    return _add_noise(out, noise, seed)


def cut(a_frames: list[np.ndarray], b_frames: list[np.ndarray]) -> list[np.ndarray]:
    """A scene change: the frames of one shot, then those of another (the cut is before ``b_frames[0]``)."""
    if a_frames and b_frames and a_frames[0].shape != b_frames[0].shape:
        raise ValueError(f"cut: both shots need one frame shape, got {a_frames[0].shape} and {b_frames[0].shape}")
    return list(a_frames) + list(b_frames)


def clip(kind: str, frames: int = 24, size: tuple[int, int] = (240, 320), *, noise: float = 0.0) -> list[np.ndarray]:
    """A ready-made clip: ``"pan"`` (over the astronaut), ``"zoom"`` (into the coffee cup), ``"pan+cut"`` or
    ``"zoom+cut"`` (the first half as before, then the same motion over the cat, or the rocket: the cut falls at
    frame ``frames // 2``). ``noise``: Gaussian noise per frame, in levels."""
    motion, plus, tail = kind.partition("+")
    if motion not in ("pan", "zoom") or (plus and tail != "cut"):
        raise ValueError(f"clip: expected pan, zoom, pan+cut or zoom+cut, got {kind!r}")
    first = frames // 2 if plus else frames
    scenes = {"pan": ("astronaut", "chelsea"), "zoom": ("coffee", "rocket")}[motion]

    def shot(name: str, n: int, seed: int) -> list[np.ndarray]:
        image = photo(name)
        if motion == "zoom":
            return zoom(image, n, size=size, noise=noise, seed=seed)
        step = (0.5, 2.5) if name == "astronaut" else (0.25, -2.5)  # the cat's shot pans back, more slowly down
        return pan(image, n, size=size, step=step, noise=noise, seed=seed)

    out = shot(scenes[0], first, 0)
    return cut(out, shot(scenes[1], frames - first, 1)) if plus else out
