"""Super-resolution with a feed-forward network (Johnson et al. 2016): the Upscaler kind.

An upscaler maps images (N, 3, h, w) in ``metadata["input_range"]`` to (N, 3, h * s, w * s) in
``metadata["output_range"]`` (default [0, 1] both), s = ``metadata["scale"]``. Around the network: any image size,
grey (run as RGB, the luma kept), alpha (resized with Lanczos, never dropped), 16-bit kept 16-bit, any output scale
(``outscale``: the network, then a Lanczos resize), and seamless tiles.

Tiles: the image is cut into tiles of ``tile`` pixels, each widened by ``tile_pad`` pixels of its neighbours (default:
the network's receptive field, :func:`genrt.tiles.receptive_field`); each tile's centre is written straight into the
final pixels, so with ``tile_pad`` at least the receptive field the result equals the untiled one (to float
rounding), and memory follows the tile plus the output image itself. The default tile fits TILE_MEMORY
(:meth:`Upscaler.default_tile`).

GPU: ``device="cuda"`` (onnxruntime-gpu, the ``genrt[gpu]`` extra) runs a float16 copy of the graph by default
(onnxconverter-common; inputs and outputs stay float32) with its device buffers bound once per tile shape and reused
(ONNX Runtime's I/O binding); a tile whose float16 output is not finite is run again in float32, so overflow can
never give black or NaN tiles. ``precision="float32"`` (``--fp32``) turns float16 off.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from genrt import image as gimage
from genrt import tiles
from genrt.errors import ArgumentError, MissingDependencyError, ModelKindError, ShapeError
from genrt.runtime import _images
from genrt.runtime.models import Model, register_kind

# Inputs over 256x256 run in tiles of at most 256 by default: at 600x600 that took 3.1 s and 302 MB against the
# whole image's 4.4 s and 2.42 GB (BENCHMARKS.md): a tile's activations stay in cache, and memory follows the tile.
# Smaller tiles where a tile's activations would pass TILE_MEMORY (an x8 network's, 64 channels at 64 output pixels
# per input pixel, are 4x an x4 network's): see Upscaler.default_tile.
_UNTILED_PIXELS = 256 * 256
_TILE = 256
TILE_MEMORY = 1 << 30  # bytes of activations a default tile may take
_LUMA = np.array([65.481, 128.553, 24.966]) / 255.0  # ITU-R BT.601 Y (16-235) from RGB in 0-255


class Upscaler(Model):
    """A super-resolution network: ``upscale(image)`` returns the image ``scale`` times larger. Thread-safe."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._engines: dict[tuple[str, str], BoundEngine] = {}  # (device, precision) -> engine, made on first use
        self._engines_lock = threading.Lock()

    @property
    def scale(self) -> int:
        """The network's factor (``metadata["scale"]``)."""
        if "scale" not in self.metadata:
            raise ModelKindError(f"{self.path}: an upscaler needs metadata 'scale' (its factor)")
        return int(self.metadata["scale"])

    @functools.cached_property
    def receptive_field(self) -> int | None:
        """How many input pixels around a pixel can change its output (None: not known; see genrt.tiles)."""
        graph = getattr(self._runner, "graph", None)
        return None if graph is None else tiles.receptive_field(graph)

    def upscale(self, image, *, outscale=None, tile=None, tile_pad=None, device=None, precision=None):
        """Upscales one image.

        Args:
            image: numpy (H, W) or (H, W, C) uint8/uint16 (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), a PIL image,
                or a genrt.image.Picture.
            outscale: the output's size over the input's, any number > 0 (default: the network's scale); other
                factors resize the network's output with Lanczos.
            tile: tile size in input pixels (default None: whole up to 256x256, else tiles of up to 256 whose
                activations fit TILE_MEMORY, see default_tile; 0: always whole).
            tile_pad: pixels each tile sees beyond its cell (default: the receptive field, which makes tiles
                seamless).
            device: None (the device the model was loaded on), "cpu" or "cuda[:N]".
            precision: "float32" or "float16" (default: float16 on a GPU, float32 on the CPU; a model loaded with
                ``genrt.load(..., device="cuda")`` also computes in float16 unless asked for float32).

        Returns:
            The same kind of image as ``image`` (numpy of the same layout and dtype, or PIL), upscaled.

        Example:
            >>> sr = genrt.load("sr-x4")
            >>> big = sr.upscale(np.asarray(PIL.Image.open("photo.png")), tile=256)
        """
        picture = image if isinstance(image, gimage.Picture) else gimage.to_picture(image)
        result = self.upscale_picture(
            picture, outscale=outscale, tile=tile, tile_pad=tile_pad, device=device, precision=precision
        )
        return result if isinstance(image, gimage.Picture) else gimage.from_picture(result, like=image)

    def upscale_picture(self, picture, *, outscale=None, tile=None, tile_pad=None, device=None, precision=None):
        """:meth:`upscale` on a genrt.image.Picture (alpha resized; ICC profile and EXIF carried to the result)."""
        self._require("upscaler", "upscale")
        s = self.scale
        h, w = picture.pixels.shape[:2]
        if outscale is not None and (not isinstance(outscale, int | float) or not 0 < outscale <= 64):
            raise ArgumentError(f"outscale: expected a number in (0, 64], got {outscale!r}")
        size = (h * s, w * s) if outscale is None else (max(1, round(h * outscale)), max(1, round(w * outscale)))
        run = self._engine(device, precision)
        pixels = self._pixels(gimage.picture_to_float(picture), picture.pixels.dtype, run, tile, tile_pad)
        if pixels.shape[:2] != size:
            pixels = gimage.resize(pixels, size)
        alpha = None if picture.alpha is None else gimage.resize(picture.alpha, size)
        return gimage.Picture(pixels=pixels, alpha=alpha, icc=picture.icc, exif=picture.exif)

    @functools.cached_property
    def min_side(self) -> int:
        """The smallest height and width the network takes (its reflection pads'; genrt.tiles.min_side): smaller
        images are padded to it by replicating their edges, and the output cropped back."""
        graph = getattr(self._runner, "graph", None)
        return 1 if graph is None else tiles.min_side(graph)

    def _pixels(self, photo: np.ndarray, dtype, run, tile, tile_pad) -> np.ndarray:
        """The network on (C, H, W) in [0, 1] (C = 1 or 3) -> (H s, W s, C) pixels of dtype, whole or in tiles."""
        _, h, w = photo.shape
        if min(h, w) >= self.min_side:
            return self._pixels_at(photo, dtype, run, tile, tile_pad)
        grown = tiles.pad_to(photo, max(h, self.min_side), max(w, self.min_side))
        out = self._pixels_at(grown, dtype, run, tile, tile_pad)
        return np.ascontiguousarray(out[: h * self.scale, : w * self.scale])

    def _pixels_at(self, photo: np.ndarray, dtype, run, tile, tile_pad) -> np.ndarray:
        c, h, w = photo.shape
        s = self.scale
        x = _images.to_model((np.repeat(photo, 3, axis=0) if c == 1 else photo.copy())[None], self.metadata)
        out = np.empty((h * s, w * s, c), dtype)

        def put(y: np.ndarray, box) -> None:  # (1, 3, h', w') network output -> pixels, in place
            y = _images.from_model(y, self.metadata)[0]
            if c == 1:
                y = np.tensordot(gimage.LUMA, y, axes=1)[None]
            y0, y1, x0, x1 = box
            out[y0:y1, x0:x1] = gimage.float_to_pixels(y, dtype)

        self.check_tile(tile, tile_pad)
        if tile is None:
            tile = self.default_tile(h, w)
        if tile == 0 or (h <= tile and w <= tile):
            y = run(x)
            if y.shape != (1, 3, h * s, w * s):
                raise ShapeError(f"{self.path}: expected output (1, 3, {h * s}, {w * s}) for scale {s}, got {y.shape}")
            put(y, (0, h * s, 0, w * s))
            return out
        pad = self._tile_pad(tile_pad)
        if tiles.instance_norm_nodes(self._runner.graph):  # whole-image statistics: genrt.tiles' part runner
            put(
                self._tiler({self.inputs[0].name: x}, self.inputs[0].name, tile=tile, margin=pad, feather=0),
                (0, h * s, 0, w * s),
            )
            return out
        tiles.stitch(run, x, tile=tile, margin=pad, put=put)
        return out

    @functools.cached_property
    def activation_bytes(self) -> float | None:
        """Bytes of the two largest intermediate tensors per input pixel (ONNX shape inference at 32x32): what a
        tile's peak memory grows with. None where the graph's shapes cannot be inferred."""
        graph = getattr(self._runner, "graph", None)
        return None if graph is None else tiles.activation_bytes(graph, 32)

    def default_tile(self, h: int, w: int) -> int:
        """The tile size ``tile=None`` picks for an h x w input: 0 (whole) up to 256x256 when the whole image's
        activations fit TILE_MEMORY, else the largest multiple of 8 up to 256 whose padded tile fits it (at least
        32)."""
        per_pixel = self.activation_bytes
        if per_pixel is None:
            return _TILE if h * w > _UNTILED_PIXELS else 0
        if h * w <= _UNTILED_PIXELS and h * w * per_pixel <= TILE_MEMORY:
            return 0
        pad = self.receptive_field or 0
        side = int((TILE_MEMORY / per_pixel) ** 0.5) - 2 * pad
        return max(32, min(_TILE, side - side % 8), 2 * pad + 8)

    def check_tile(self, tile, tile_pad=None) -> None:
        """ArgumentError unless ``tile`` is None (the default), 0 (whole image) or a size that leaves room inside
        ``tile_pad`` (default: the receptive field) on each side, and ``tile_pad`` is None or pixels >= 0."""
        if tile is not None and (not isinstance(tile, int) or isinstance(tile, bool) or tile < 0):
            raise ArgumentError(f"tile: expected 0 (whole image) or a tile size in pixels, got {tile!r}")
        if tile_pad is not None or tile:
            pad = self._tile_pad(tile_pad)
            if tile and tile <= 2 * pad:
                raise ArgumentError(
                    f"tile: {tile} leaves no room inside a tile_pad of {pad} on each side; use more than {2 * pad}"
                )

    def _tile_pad(self, tile_pad) -> int:
        if tile_pad is None:
            if self.receptive_field is None:
                raise ArgumentError(
                    f"tile_pad: the receptive field of {self.path} is not known; give tile_pad (pixels) or tile=0"
                )
            return self.receptive_field
        if not isinstance(tile_pad, int) or isinstance(tile_pad, bool) or tile_pad < 0:
            raise ArgumentError(f"tile_pad: expected pixels >= 0, got {tile_pad!r}")
        return tile_pad

    def _engine(self, device, precision):
        """A callable (1, 3, h, w) float32 -> (1, 3, h s, w s) float32 on the device and precision asked for:
        the model's own session for float32 on the device it was loaded on, else a BoundEngine."""
        loaded = getattr(self._runner, "_settings", {}).get("device", "cpu")
        device = loaded if device is None else device
        if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
            raise ArgumentError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")
        if precision is None:
            precision = "float16" if device.startswith("cuda") else "float32"
        if precision not in ("float32", "float16"):
            raise ArgumentError(f"precision: expected float32 or float16, got {precision!r}")
        if device == loaded and precision == "float32":
            return self._call
        return self._bound(device, precision)

    def _call(self, x: np.ndarray) -> np.ndarray:
        y = self(x)
        return y[0] if isinstance(y, tuple) else y

    def _bound(self, device: str, precision: str):
        """The BoundEngine for (device, precision), made once (float16 ones with a float32 one to fall back on)."""
        with self._engines_lock:
            wanted = [(device, "float32")] + ([(device, precision)] if precision != "float32" else [])
            for key in wanted:
                if key not in self._engines:
                    graph = getattr(self._runner, "graph", None)
                    if graph is None:
                        raise ArgumentError(
                            f"device, precision: {self.path} is not ONNX; load it with device= instead"
                        )
                    fallback = None if key[1] == "float32" else self._engines[(device, "float32")]
                    self._engines[key] = BoundEngine(graph, *key, self._runner._threads, fallback=fallback)
            return self._engines[(device, precision)]

    @functools.cached_property
    def _tiler(self) -> tiles.Tiler:
        return tiles.Tiler(self)


def to_float16(model):
    """The ONNX model computing in float16 with float32 inputs and outputs (onnxconverter-common's converter)."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise MissingDependencyError(
            "precision='float16' needs onnxconverter-common: pip install 'genrt[gpu]' (or --fp32)"
        ) from None
    return float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)


class BoundEngine:
    """One ONNX Runtime session on a device, run through I/O binding: the input and output device buffers of each
    tile shape are made once per thread and reused, so a tiled run copies each tile in and out and allocates
    nothing else on the device. Thread-safe (ORT sessions are; the buffers are per thread)."""

    def __init__(self, graph, device: str, precision: str, threads: int, *, fallback=None):
        import onnxruntime as ort

        from genrt.runtime.onnx_session import base_model, new_session

        model, native, _ = base_model(graph)
        if precision == "float16":
            model = to_float16(model)
        self.device, self.precision, self.fallback = device, precision, fallback
        self._ort = ort
        kind, _, index = device.partition(":")
        self._where = ("cuda" if kind == "cuda" else "cpu", int(index or 0))
        self._session = new_session(model, f"upscaler ({device}, {precision})", device=device, threads=threads,
                                    providers=None, native=native)  # fmt: skip
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        buffers = self._local.__dict__.setdefault("buffers", {})
        entry = buffers.get(x.shape)
        if entry is None:
            ort = self._ort
            binding = self._session.io_binding()
            source = ort.OrtValue.ortvalue_from_numpy(x, *self._where)
            binding.bind_ortvalue_input(self._input, source)
            binding.bind_output(self._output, self._where[0], self._where[1])
            entry = buffers[x.shape] = (binding, source)
            if len(buffers) > 8:  # tiles come in a few shapes; odd sizes must not pile up device memory
                buffers.pop(next(iter(buffers)))
        else:
            entry[1].update_inplace(x)
        binding, _ = entry
        try:
            self._session.run_with_iobinding(binding)
        except Exception as exc:
            from genrt.runtime.onnx_session import run_error

            raise run_error(exc, f"upscaler ({self.device}, {self.precision})") from exc
        y = binding.copy_outputs_to_cpu()[0]
        if self.fallback is not None and not np.isfinite(y).all():
            return self.fallback(x)  # float16 overflowed somewhere in this tile: float32 for it
        return y


# --- measures -------------------------------------------------------------------------------------------------


def luma(image) -> np.ndarray:
    """BT.601 luma Y in [16, 235] (float64 (H, W)) of an RGB uint8 image (H, W, 3), or the grey plane itself."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        return a
    return 16.0 + a[..., :3] @ _LUMA


def psnr_y(image, truth, *, shave: int = 0) -> float:
    """PSNR in dB of the luma of two uint8 images (H, W[, 3]), leaving out a border of `shave` pixels."""
    a, b = luma(image), luma(truth)
    if a.shape != b.shape:
        raise ShapeError(f"psnr_y: images of shapes {np.shape(image)} and {np.shape(truth)}")
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def sharpness(image, truth, shave: int = 0) -> float:
    """Detail of `image` relative to `truth`: the mean squared luma gradient (differences of neighbouring pixels) of
    one over that of the other. 1 means edges and texture as strong as the truth's; blurry upscales (bicubic,
    PSNR-trained networks) score below 1, over-sharpened or noisy ones above."""

    def energy(x):
        y = luma(x)
        if shave:
            y = y[shave:-shave, shave:-shave]
        return float(np.mean(np.diff(y, axis=0) ** 2) + np.mean(np.diff(y, axis=1) ** 2))

    return energy(image) / energy(truth)


register_kind("upscaler", Upscaler)

__all__ = ["Upscaler", "BoundEngine", "to_float16", "luma", "psnr_y", "sharpness"]
