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
from genrt.errors import ArgumentError, ShapeError
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
            style: on a multi-style model, a style name or {name: weight} to mix, e.g. {"hubble": 0.7, "retina":
                0.3} (weights are normalised); default: an equal mix of all.
            tile: tile size in pixels (default None: whole up to 2048x2048, else tiles of 1024; 0: always whole).

        Returns:
            The same kind of image as ``image`` (numpy of the same layout and dtype, or PIL), same size.

        Example:
            >>> s = genrt.load("style-hubble")
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
