"""Style transfer with a feed-forward image transformation network (Johnson et al. 2016): the Stylizer kind.

A stylizer maps photos (N, 3, H, W) in ``metadata["input_range"]`` to stylized images of the same size in
``metadata["output_range"]`` (default [0, 1] both). Around the network: any image size (reflection padding to
``metadata["multiple"]``, default 4, cropped back), strength, colour preservation, style mixing on multi-style
models (a second input ``style``: per-style weights, Dumoulin et al. 2017), alpha carried through, grey and
16-bit images kept grey and 16-bit, and tiles for large images (genrt.tiles: whole-image instance-norm
statistics, so tiles change nothing you can see).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from genrt import image as gimage
from genrt import tiles
from genrt.errors import ArgumentError, DTypeError, MissingDependencyError, ShapeError
from genrt.runtime import _images
from genrt.runtime.models import Model, register_kind

# Images up to this many pixels run whole by default (a 2048x2048 photo); larger ones in tiles of _TILE.
_UNTILED_PIXELS = 2048 * 2048
_TILE = 1024
_MARGIN = 64  # least pixels each tile sees beyond its cell; more where the network reaches further (Stylizer.margin)
# BT.601 luma and chroma (JPEG's YCbCr without offsets), for colour preservation.
_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_FROM_YCC = np.linalg.inv(_TO_YCC).astype(np.float32)


class Stylizer(Model):
    """A style-transfer network: ``stylize(image)`` returns the image in the model's style, at the same size."""

    @property
    def multiple(self) -> int:
        """Height and width the network needs a multiple of (its total stride); inputs are padded to it."""
        return int(self.metadata.get("multiple", 4))

    @property
    def styles(self) -> list[str]:
        """Names of the styles a multi-style model holds (empty for a single-style model)."""
        return list(self.metadata.get("styles", []))

    def stylize(self, image, *, strength: float = 1.0, preserve_color: bool = False, style=None, tile=None):
        """Stylizes one image.

        Args:
            image: numpy (H, W) or (H, W, C) uint8/uint16 (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), a PIL image,
                or a genrt.image.Picture.
            strength: 0 returns the photo, 1 the full style; in between, a blend of the two.
            preserve_color: keep the photo's colours, taking only the stylized luminance (Gatys et al. 2016).
            style: on a multi-style model, a style name or {name: weight} to mix, e.g. {"brick": 0.7, "retina":
                0.3} (weights are normalised); default: an equal mix of all.
            tile: tile size in pixels (default None: whole up to 2048x2048, else tiles of 1024; 0: always whole).

        Returns:
            The same kind of image as ``image`` (numpy of the same layout and dtype, or PIL), same size.

        Example:
            >>> s = genrt.load("style-gravel")
            >>> out = s.stylize(np.asarray(PIL.Image.open("photo.jpg")), strength=0.8)
        """
        picture = image if isinstance(image, gimage.Picture) else gimage.to_picture(image)
        result = self.stylize_picture(
            picture, strength=strength, preserve_color=preserve_color, style=style, tile=tile
        )
        return result if isinstance(image, gimage.Picture) else gimage.from_picture(result, like=image)

    def stylize_picture(self, picture, *, strength=1.0, preserve_color=False, style=None, tile=None):
        """:meth:`stylize` on a genrt.image.Picture (alpha, ICC profile and EXIF carried to the result)."""
        self._require("stylizer", "stylize")
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0.0 <= strength <= 1.0:
            raise ArgumentError(f"strength: expected a number in [0, 1], got {strength!r}")
        photo = gimage.picture_to_float(picture)  # (C, H, W) in [0, 1]
        grey = photo.shape[0] == 1
        rgb = np.repeat(photo, 3, axis=0) if grey else photo
        styled = self._run(rgb, style=style, tile=tile) if strength > 0 else rgb
        if preserve_color:
            styled = _with_luminance(rgb, styled)
        out = rgb + np.float32(strength) * (styled - rgb) if strength < 1 else styled
        if grey:
            out = np.tensordot(_TO_YCC[0], out, axes=1)[None]
        pixels = gimage.float_to_pixels(out, picture.pixels.dtype)
        return gimage.Picture(
            pixels=pixels, alpha=picture.alpha, icc=picture.icc, exif=picture.exif, source=None, format=None
        )

    def _run(self, rgb: np.ndarray, *, style, tile) -> np.ndarray:
        """The network on one RGB image (3, H, W) in [0, 1] -> (3, H, W) in [0, 1]."""
        _, h, w = rgb.shape
        m = self.multiple
        least = self.min_side + -self.min_side % m
        padded = tiles.pad_to(rgb, max(h + -h % m, least), max(w + -w % m, least))
        x = _images.to_model(padded[None], self.metadata)  # in place: a 12-megapixel photo is 144 MB a copy
        feeds = {self.image_input: x}
        feeds.update(self._style_feeds(style))
        if tile is None:
            tile = _TILE if h * w > _UNTILED_PIXELS else 0
        self.check_tile(tile)
        if tile == 0:
            y = self(feeds)
            y = y[0] if isinstance(y, tuple) else y
        else:
            y = self._tiler(feeds, self.image_input, tile=tile, margin=self.margin)
        if y.ndim != 4 or y.shape[1] != 3 or y.shape[2:] != padded.shape[1:]:
            raise ShapeError(f"{self.path}: a stylizer must return (1, 3, H, W) like its input, got {y.shape}")
        y = _images.from_model(y[:, :, :h, :w], self.metadata)[0]
        return np.clip(y, 0.0, 1.0, out=y)

    @property
    def image_input(self) -> str:
        """The graph input that takes the image (``metadata["image_input"]``, default the first)."""
        return self.metadata.get("image_input", self.inputs[0].name)

    @functools.cached_property
    def min_side(self) -> int:
        """The smallest height and width the network takes (its reflection pads'; genrt.tiles.min_side): smaller
        images are padded to it by replicating their edges, and the result cropped back."""
        graph = getattr(self._runner, "graph", None)
        return 1 if graph is None else tiles.min_side(graph)

    @functools.cached_property
    def margin(self) -> int:
        """Pixels each tile sees beyond its cell: enough that every pixel, cross-fade band included (a quarter of
        the margin), comes from a tile that saw its whole receptive field (genrt.tiles.receptive_field: 57 for
        Johnson's network, 65 for Magenta's); at least 64."""
        graph = getattr(self._runner, "graph", None)
        reach = None if graph is None else tiles.receptive_field(graph)
        return max(_MARGIN, math.ceil(reach * 4 / 3) if reach else 0)

    def check_tile(self, tile) -> None:
        """ArgumentError unless ``tile`` is None (the default), 0 (whole image) or at least the smallest tile that
        leaves a cell inside the margin every tile sees (2 * margin + the network's multiple)."""
        least = 2 * self.margin + self.multiple
        if tile is not None and (not isinstance(tile, int) or isinstance(tile, bool) or (tile != 0 and tile < least)):
            raise ArgumentError(f"tile: expected 0 (whole image) or a tile size >= {least} pixels, got {tile!r}")

    def style_weights(self, style=None) -> dict[str, float]:
        """The normalised {style name: weight} that `style` (a name, {name: weight} or None) asks for; {} for a
        single-style model. ArgumentError for unknown names or bad weights."""
        if not self.styles:
            if style is not None:
                raise ArgumentError(f"style: {self.path} holds one style; mixing needs a multi-style model")
            return {}
        names = self.styles
        weights = {name: 1.0 for name in names} if style is None else {style: 1.0} if isinstance(style, str) else style
        if not isinstance(weights, dict) or not weights:
            raise ArgumentError(f"style: expected a style name or {{name: weight}}, got {style!r}")
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ArgumentError(f"style: unknown style(s) {unknown}; this model has {names}")
        try:
            vector = np.array([float(weights.get(name, 0.0)) for name in names])
        except (TypeError, ValueError):
            raise ArgumentError(f"style: weights must be numbers, got {weights}") from None
        if not np.isfinite(vector).all() or (vector < 0).any() or vector.max() <= 0:
            raise ArgumentError(f"style: weights must be finite, >= 0 and not all 0, got {weights}")
        vector = vector / vector.max()  # first: the sum of weights near the float maximum would overflow
        return dict(zip(names, (vector / vector.sum()).tolist(), strict=True))

    def _style_feeds(self, style) -> dict:
        weights = self.style_weights(style)
        if not weights:
            return {}
        name = self.metadata.get("style_input") or next(s.name for s in self.inputs if s.name != self.image_input)
        rank = len(next(s.shape for s in self.inputs if s.name == name))
        vector = np.array(list(weights.values()), np.float32)
        return {name: vector if rank == 1 else vector[None]}  # (styles,) or (1, styles)

    @functools.cached_property
    def _tiler(self) -> tiles.Tiler:
        # Built on first use and kept: its sessions (one per part of the graph) serve every later image.
        return tiles.Tiler(self, multiple=self.multiple)


def _with_luminance(photo: np.ndarray, styled: np.ndarray) -> np.ndarray:
    """The photo's chroma with the stylized luminance, both (3, H, W) RGB in [0, 1]."""
    luma = np.tensordot(_TO_YCC[0], styled, axes=1)
    ycc = np.tensordot(_TO_YCC, photo, axes=1)
    ycc[0] = luma
    return np.clip(np.tensordot(_FROM_YCC, ycc, axes=1), 0.0, 1.0)


register_kind("stylizer", Stylizer)


# --- Video: temporal consistency (Ruder et al. 2016, "Artistic style transfer for videos") ---------------------------
#
# A feed-forward stylizer run frame by frame flickers: a shift of a pixel or a little noise changes the texture it
# paints. TemporalStylizer carries the previous stylized frame along the motion instead: optical flow between the
# previous and the current *input* frame, the previous *output* warped along it, and a blend of that with the fresh
# stylization wherever a forward-backward check says the flow holds. The constants were chosen by measurement
# (training/style_eval.py: warping_error, frame_scores) on 24-frame 240x320 pans, zooms and cuts of scikit-image
# photos with style-gravel, style-retina and style-multi; 720p costs on 2 EPYC cores.

_FLOW_SIDE = 480  # flow runs on greys with this longer side at most: 720p then costs 45-49 ms a frame in all
_FLOW_PRESET = "MEDIUM"  # OpenCV's DIS preset: FAST and ULTRAFAST leave 15 % and 40 % more warping error on a zoom
_BLEND = 0.8  # weight of the warped previous output where the flow holds (after _CLAMP): warping error -44 to -61 %
#              (0.75: -42 % on style-multi@brick's zoom, too close to the -40 % asked; Gram errors grow with it)
_ERODE = 1  # flow pixels of confidence taken off around every failed pixel (the flow errs near occlusions)
_SOFTEN = 1.0  # Gaussian sigma (flow pixels) that ramps the weight instead of stepping it: no seam where it changes
_CUT_KEPT = 0.3  # fewer pixels than this fraction pass the flow check: a scene cut (measured: <= 0.04 at a cut,
#                  >= 0.95 within a shot), or motion too fast to follow; either way the frame starts afresh
_CUT_COLOURS = 0.5  # total variation distance between the frames' 8x8x8 RGB histograms beyond this: a scene cut
#                     (measured: 0.86-0.94 at cuts between photos, <= 0.02 within a shot); no flow is computed then
_LEAST_FLOW_SIDE = 16  # frames smaller than this (after scaling) get no flow: each frame is stylized afresh
_WARP_INTERP = "INTER_CUBIC"  # the previous output is resampled every frame: bicubic keeps 5-10 % more detail than
#                               bilinear and 5 % less warping error, for 4 ms at 720p
# Blending two textures that do not line up (the network paints its texture anew each frame) averages them flat:
# sharpness (Laplacian variance) falls to 42 % at blend 0.5, 27 % at 0.7, and VGG Gram errors grow 3-5x. So the
# blend's finest Laplacian bands get their local energy (box _ENERGY_BOX) raised back towards the fresh
# stylization's, by at most _MAX_GAIN: VGG Gram errors then match per-frame stylization's, sharpness is 60-80 % of
# it, for some warping error (at blend 0.7 on the gravel pan, before clamping: -55 % instead of -68 %).
_CLAMP = 3  # the past is clamped to the range of the fresh frame's 3x3 neighbourhood: ghosts of strokes the network
#            moved (style-multi@brick's zoom) go, for ~10 points of warping error; 5x5 leaves ghosts, and clipping to
#            the mean +- 2 standard deviations (Salvi 2016) did no better at twice the cost (8 ms at 720p)
_DETAIL_LEVELS = 2  # bands restored (3 measured the same)
_ENERGY_BOX = (7, 7)
_MAX_GAIN = 2.5  # averaging uncorrelated textures at 0.8 loses 1 / sqrt(0.8^2 + 0.2^2) = 1.21x of amplitude a frame,
#                  and the history's losses compound, so more is allowed; 2 and 3 measured the same
_LUMA = _TO_YCC[0]


class TemporalStylizer:
    """Stylizes a video's frames one at a time, in order, without flicker (Ruder et al. 2016).

    Each frame is stylized as :meth:`Stylizer.stylize_picture` would, then blended with the previous stylized frame
    warped along the motion (OpenCV's DIS optical flow between the previous and the current input frame): where a
    forward-backward check (Sundaram et al. 2010, with Ruder's motion-boundary term) says the flow holds, the result
    is ``blend`` of the warped previous output and ``1 - blend`` of the fresh stylization; elsewhere (occlusions,
    content entering at the border) it is the fresh stylization. Since each output already carries its predecessor,
    the history's weight decays as ``blend ** k``: no drift. The past is first clamped to the range of the fresh
    frame's 3x3 neighbourhood (no ghosts of strokes the network has moved), and where it blended, the local contrast
    of the finest detail is raised back towards the fresh stylization's (averaging textures that do not line up
    would flatten them). A scene cut (most pixels failing the check, or a big change of colour histogram) starts
    afresh.

    One object per video stream: it keeps the previous frame (state), so it is not for sharing across threads; the
    Stylizer it wraps is. Needs OpenCV (``pip install genrt[video]``) unless ``temporal`` is False.

    Args:
        stylizer: a loaded Stylizer (``genrt.load("style-gravel")``).
        strength, preserve_color, style, tile: as for :meth:`Stylizer.stylize`.
        temporal: False: every frame is plain ``stylize_picture`` (the ``--no-temporal`` of ``genrt stylize``).
        blend: weight in [0, 1) of the warped previous output where the flow holds (0: per-frame stylization).

    Example:
        >>> frames = TemporalStylizer(genrt.load("style-gravel"), strength=0.8)
        >>> stylized = [frames(f) for f in video_frames]  # (H, W, 3) uint8 or uint16 each, in order
    """

    def __init__(
        self,
        stylizer: Stylizer,
        *,
        strength: float = 1.0,
        preserve_color: bool = False,
        style=None,
        tile=None,
        temporal: bool = True,
        blend: float = _BLEND,
    ):
        if not isinstance(stylizer, Stylizer):
            raise ArgumentError(f"stylizer: expected a genrt Stylizer, got {type(stylizer).__name__}")
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0.0 <= strength <= 1.0:
            raise ArgumentError(f"strength: expected a number in [0, 1], got {strength!r}")
        if isinstance(blend, bool) or not isinstance(blend, int | float) or not 0.0 <= blend < 1.0:
            raise ArgumentError(f"blend: expected a number in [0, 1), got {blend!r}")
        stylizer.style_weights(style)  # bad options fail here, not at the first frame of a long job
        stylizer.check_tile(tile)
        self.stylizer = stylizer
        self.options = dict(strength=strength, preserve_color=preserve_color, style=style, tile=tile)
        self.temporal = bool(temporal)
        self.blend = float(blend)
        if self.temporal:
            _cv2()  # a missing OpenCV fails here too
        self._previous: _Frame | None = None  # what the next frame is warped from
        self._dis = None  # OpenCV's DIS flow object, made on first use (it is not thread-safe: one per stream)
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # pixel coordinates per frame size

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Stylizes the next frame of the video.

        Args:
            pixels: (H, W, 3) RGB uint8 or uint16, the frame after the one stylized last (or after :meth:`restore`).

        Returns:
            The stylized frame, (H, W, 3) of the same dtype.

        Example:
            >>> out = temporal(frame)  # frame: (720, 1280, 3) uint8
        """
        pixels = _check_frame(pixels, "pixels")
        fresh = self.stylizer.stylize_picture(gimage.to_picture(pixels, name="pixels"), **self.options).pixels
        if not self.temporal:
            return fresh
        frame = _Frame.of(pixels)
        out = self._carry(frame, fresh)
        frame.output = out
        self._previous = frame
        return out

    def restore(self, previous_input: np.ndarray, previous_output: np.ndarray) -> None:
        """Sets the state as if ``previous_input`` had just been stylized into ``previous_output``: the next call
        continues the video exactly as an uninterrupted run would (resuming a job at a segment boundary).

        Args:
            previous_input: (H, W, 3) RGB uint8 or uint16, the last input frame before the resume point.
            previous_output: what this object returned for it (read back losslessly), same shape and dtype.
        """
        previous_input = _check_frame(previous_input, "previous_input")
        previous_output = _check_frame(previous_output, "previous_output")
        if previous_output.shape != previous_input.shape or previous_output.dtype != previous_input.dtype:
            raise ShapeError(
                f"previous_output: expected {previous_input.shape} {previous_input.dtype} like previous_input, got "
                f"{previous_output.shape} {previous_output.dtype}"
            )
        if not self.temporal:
            return
        frame = _Frame.of(previous_input)
        frame.output = previous_output.copy()
        self._previous = frame

    def reset(self) -> None:
        """Forgets the previous frame: the next one is stylized afresh (scene cuts are found without this)."""
        self._previous = None

    def _carry(self, frame: _Frame, fresh: np.ndarray) -> np.ndarray:
        """The fresh stylization blended with the previous output warped to this frame, or fresh after a cut."""
        previous = self._previous
        if (
            previous is None
            or previous.output.shape != fresh.shape
            or previous.output.dtype != fresh.dtype
            or min(frame.grey.shape) < _LEAST_FLOW_SIDE
            or 0.5 * np.abs(frame.colours - previous.colours).sum() > _CUT_COLOURS
            or self.blend == 0
        ):
            return fresh
        cv2 = _cv2()
        h, w = fresh.shape[:2]
        sh, sw = frame.grey.shape
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{_FLOW_PRESET}"))
        back = self._dis.calc(frame.grey, previous.grey, None)  # (sh, sw, 2): where each pixel was a frame ago
        fwd = self._dis.calc(previous.grey, frame.grey, None)  # (sh, sw, 2): where each pixel went
        kept = _flow_holds(back, fwd, (w / sw, h / sh), self._grid(sh, sw))
        if np.count_nonzero(kept) < _CUT_KEPT * kept.size:
            return fresh
        # Erode, then soften: a failed pixel's neighbours lose weight too (the flow errs near occlusions), and the
        # weight ramps over a few pixels instead of stepping, so no seam shows where the check changes its mind.
        kernel = np.ones((2 * _ERODE + 1, 2 * _ERODE + 1), np.uint8)
        kept = cv2.erode(kept.view(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE)
        weight = cv2.GaussianBlur(kept.astype(np.float32), (0, 0), _SOFTEN) * np.float32(self.blend)  # (sh, sw)
        bx, by = cv2.split(back)  # (sh, sw) each
        if (sh, sw) != (h, w):
            weight = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR)  # (h, w)
            bx = cv2.resize(bx, (w, h), interpolation=cv2.INTER_LINEAR)
            by = cv2.resize(by, (w, h), interpolation=cv2.INTER_LINEAR)
        gx, gy = self._grid(h, w)
        mx, my = cv2.scaleAdd(bx, w / sw, gx), cv2.scaleAdd(by, h / sh, gy)  # (h, w): where it was, in pixels
        warped = cv2.remap(previous.output, mx, my, getattr(cv2, _WARP_INTERP), borderMode=cv2.BORDER_REPLICATE)
        # Content that entered at the border has no past: fresh stylization there, whatever the softened mask says.
        inside = cv2.inRange(mx, 0, w - 1) & cv2.inRange(my, 0, h - 1)  # (h, w) 255 inside, 0 outside
        weight = cv2.multiply(weight, inside, scale=1 / 255, dtype=cv2.CV_32F)
        return _blend(fresh, warped, weight)

    def _grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) float32 pixel coordinates of an (h, w) frame, each (h, w): kept, the video's size does not change."""
        if (h, w) not in self._grids:
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            self._grids[(h, w)] = (xs, ys)
        return self._grids[(h, w)]


class _Frame:
    """What a frame leaves for the next: its grey at flow size, its colour histogram and (once made) its output."""

    __slots__ = ("grey", "colours", "output")

    def __init__(self, grey: np.ndarray, colours: np.ndarray):
        self.grey, self.colours, self.output = grey, colours, None

    @classmethod
    def of(cls, pixels: np.ndarray) -> _Frame:
        cv2 = _cv2()
        h, w = pixels.shape[:2]
        scale = min(1.0, _FLOW_SIDE / max(h, w))
        small = pixels
        if scale < 1:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)  # averages: no aliasing in the flow
        if small.dtype == np.uint16:
            small = np.rint(small / np.float32(257)).astype(np.uint8)  # DIS takes 8-bit greys
        grey = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)
        colours = cv2.calcHist([small], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
        return cls(grey, colours / max(colours.sum(), 1.0))


def _flow_holds(back: np.ndarray, fwd: np.ndarray, scale: tuple[float, float], grid) -> np.ndarray:
    """(sh, sw) bool: where the backward flow ``back`` (this frame -> previous) can be trusted.

    Ruder et al.'s criteria, in the frame's own pixels (``scale``: frame pixels per flow pixel): the forward flow at
    the point ``back`` leads to must lead back, |w + ŵ|^2 <= 0.01 (|w|^2 + |ŵ|^2) + 0.5 (else an occlusion); the
    flow must not change fast, |∇w|^2 <= 0.01 |w|^2 + 0.002 (else a motion boundary, where it is blurred); and the
    point must lie inside the previous frame.
    """
    cv2 = _cv2()
    sh, sw = back.shape[:2]
    gx, gy = grid
    bx, by = cv2.split(back)  # (sh, sw) each; plain 2-D arrays keep numpy off slow strided reductions
    mx, my = gx + bx, gy + by
    fx, fy = cv2.split(cv2.remap(fwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    ux, uy = np.float32(scale[0]), np.float32(scale[1])
    bx, by, fx, fy = bx * ux, by * uy, fx * ux, fy * uy  # in frame pixels
    b2 = bx * bx + by * by
    sx, sy = bx + fx, by + fy
    consistent = sx * sx + sy * sy <= 0.01 * (b2 + fx * fx + fy * fy) + 0.5
    # Central differences of the flow (flow pixels per flow pixel: the same ratio at any scale).
    grad = cv2.Sobel(back, cv2.CV_32F, 1, 0, ksize=1, scale=0.5, borderType=cv2.BORDER_REPLICATE) ** 2
    grad += cv2.Sobel(back, cv2.CV_32F, 0, 1, ksize=1, scale=0.5, borderType=cv2.BORDER_REPLICATE) ** 2
    gx2, gy2 = cv2.split(grad)
    smooth = gx2 + gy2 <= 0.01 * b2 + 0.002
    inside = (mx >= 0) & (mx <= sw - 1) & (my >= 0) & (my <= sh - 1)
    return consistent & smooth & inside


def _blend(fresh: np.ndarray, warped: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """fresh + weight * (warped - fresh) (all (h, w, 3) but weight (h, w)), with the local contrast of its fine
    detail raised back to fresh's: blending two textures that do not line up averages them flat."""
    cv2 = _cv2()
    top = float(np.iinfo(fresh.dtype).max)
    f = fresh.astype(np.float32)
    if _CLAMP:
        # Neighbourhood clamping (Karis 2014, from temporal anti-aliasing): the past may only take values the fresh
        # frame has nearby, so strokes the network has moved leave no ghost, while texture that only flickers stays.
        kernel = np.ones((_CLAMP, _CLAMP), np.uint8)
        warped = cv2.min(cv2.max(warped, cv2.erode(fresh, kernel)), cv2.dilate(fresh, kernel))
    past = warped.astype(np.float32)
    out = cv2.blendLinear(past, f, weight, 1 - weight)  # (h, w, 3)
    if _DETAIL_LEVELS:
        boost = _detail_boost(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), top)
        blended = cv2.compare(weight, 0, cv2.CMP_GT)  # (h, w) 255 where anything was blended in, else 0
        out += cv2.multiply(boost, blended, scale=1 / 255, dtype=cv2.CV_32F)[..., None]  # luminance only
    np.rint(out, out=out)
    return np.clip(out, 0, top, out=out).astype(fresh.dtype)


def _detail_boost(luma: np.ndarray, reference: np.ndarray, top: float) -> np.ndarray:
    """What to add to ``luma`` (h, w) so each of its finest Laplacian bands has, locally, at least the energy of the
    same band of ``reference`` (h, w) (Heitz and Neyret 2018's variance-preserving blending, per band and place)."""
    cv2 = _cv2()
    mine, ref = [luma], [reference]
    for _ in range(_DETAIL_LEVELS):
        mine.append(cv2.pyrDown(mine[-1]))
        ref.append(cv2.pyrDown(ref[-1]))
    eps = np.float32(1e-5 * top * top)  # a third of a level, squared, on 8 bits: flat areas keep gain 1
    boost = None
    for k in range(_DETAIL_LEVELS - 1, -1, -1):
        size = mine[k].shape[1::-1]
        band = mine[k] - cv2.pyrUp(mine[k + 1], dstsize=size)  # (hk, wk)
        ref_band = ref[k] - cv2.pyrUp(ref[k + 1], dstsize=size)
        e_ref = cv2.boxFilter(cv2.multiply(ref_band, ref_band), -1, _ENERGY_BOX) + eps  # local energy (box: fast)
        e_mine = cv2.boxFilter(cv2.multiply(band, band), -1, _ENERGY_BOX) + eps
        gain = cv2.min(cv2.max(cv2.sqrt(cv2.divide(e_ref, e_mine)), 1.0), _MAX_GAIN)
        extra = cv2.multiply(cv2.subtract(gain, 1.0), band)  # (hk, wk)
        boost = extra if boost is None else cv2.pyrUp(boost, dstsize=size) + extra
    return boost


def _check_frame(pixels, name: str) -> np.ndarray:
    """A video frame as (H, W, 3) RGB uint8/uint16, or ShapeError / DTypeError naming the argument."""
    if not isinstance(pixels, np.ndarray):
        raise DTypeError(f"{name}: expected a numpy array (H, W, 3), got {type(pixels).__name__}")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ShapeError(f"{name}: expected an RGB frame (H, W, 3), got shape {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise DTypeError(f"{name}: expected uint8 or uint16 pixels, got {pixels.dtype}")
    return pixels


def _cv2():
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError(
            "temporal consistency for video needs OpenCV: pip install 'genrt[video]' (or pass temporal=False)"
        ) from None
    return cv2
