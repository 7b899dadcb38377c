"""Inpainting with a context encoder (Pathak et al. 2016): the Inpainter kind.

An inpainter maps (image (N, 3, S, S) in [0, 1], mask (N, 1, S, S), 1 = hole) to its prediction (N, 3, S, S) at
every pixel, S = ``metadata["size"]`` (training/context_encoder.py). Around the network: any image size and any
mask. Each connected hole region (8-connected) gets a square context window around it, twice its larger side (the
paper's centre hole is half its window) and at least S, reflected past the image's edges where it must be; the
windows are resized to S (Lanczos; the mask by area, so no hole pixel is lost), run in one batch, and the
predictions resized back. Only the region's own pixels are taken from its window; with ``blend="none"`` every
other pixel is the input's, bit for bit.

Blending (``blend``): ``"poisson"`` (the default) keeps the fill's gradients and takes its values at the hole's
border from the context: Poisson's equation over the hole pixels with the context as the boundary (Perez et al.
2003), solved with SciPy's sparse LU, one factorization per region and all channels at once. Only hole pixels
change. SciPy rather than OpenCV's seamlessClone: seamlessClone takes 8-bit 3-channel images only, crops by the
mask's bounding box (refusing masks at the image's edge) and changes pixels outside the mask; the sparse system
is exact on hole pixels in any bit depth. ``"feather"`` mixes the fill into a band of context ``feather`` pixels
wide (default: 4 window pixels, the paper's overlap, in image pixels), linearly with the distance to the hole.

Masks (``mask``): a boolean or 0/1 (H, W) array (True, 1 = hole); a float (H, W) array (>= 0.5 = hole); a mask
image (uint8/uint16 numpy, PIL, a genrt.image.Picture or a path; white = hole, thresholded at half scale, any mode;
transparent pixels of a mask image are not holes); a rectangle (x, y, w, h); or None: the image's transparent
pixels (alpha below half), which the result makes opaque.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genrt import image as gimage
from genrt.errors import ArgumentError, MissingDependencyError, ModelKindError, ShapeError
from genrt.runtime import _images
from genrt.runtime.models import Model, register_kind

BLENDS = ("poisson", "feather", "none")
_BATCH = 16  # windows per network call
_OVERLAP = 4  # the paper's overlap in window pixels: the default feather band


class Inpainter(Model):
    """A hole-filling network: ``inpaint(image, mask)`` returns the image with the holes filled. Thread-safe."""

    @property
    def size(self) -> int:
        """The network's window in pixels (``metadata["size"]``)."""
        if "size" not in self.metadata:
            raise ModelKindError(f"{self.path}: an inpainter needs metadata 'size' (its window in pixels)")
        return int(self.metadata["size"])

    def inpaint(self, image, mask=None, *, blend: str = "poisson", feather: int | None = None):
        """Fills the holes of one image.

        Args:
            image: numpy (H, W) or (H, W, C) uint8/uint16 (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), a PIL image,
                or a genrt.image.Picture.
            mask: where the holes are (see the module's docstring): a boolean or numeric (H, W) array, a mask image
                or its path (white = hole), a rectangle (x, y, w, h), or None for the image's transparent pixels.
            blend: "poisson" (the fill's gradients, the context's values at its border), "feather" (mixed into a
                band of context) or "none" (the hole replaced, nothing else changed).
            feather: the band's width in pixels for blend="feather" (default: 4 pixels of the network's window).

        Returns:
            The same kind of image as ``image``, filled. An empty mask returns it unchanged without running the
            network; a mask of another size than the image, or one that covers all of it, is an ArgumentError.

        Example:
            >>> inp = genrt.load("inpaint-photos")
            >>> filled = inp.inpaint(np.asarray(PIL.Image.open("photo.png")), (120, 80, 64, 64))
        """
        picture = image if isinstance(image, gimage.Picture) else gimage.to_picture(image)
        result = self.inpaint_picture(picture, mask, blend=blend, feather=feather)
        return result if isinstance(image, gimage.Picture) else gimage.from_picture(result, like=image)

    def inpaint_picture(self, picture, mask=None, *, blend: str = "poisson", feather: int | None = None):
        """:meth:`inpaint` on a genrt.image.Picture (ICC profile and EXIF carried to the result)."""
        self._require("inpainter", "inpaint")
        if blend not in BLENDS:
            raise ArgumentError(f"blend: expected one of {', '.join(BLENDS)}, got {blend!r}")
        if feather is not None and (not isinstance(feather, int) or isinstance(feather, bool) or feather < 1):
            raise ArgumentError(f"feather: expected a band width in pixels >= 1, got {feather!r}")
        from_alpha = mask is None
        hole = read_mask(mask, picture)
        if not hole.any():
            return picture
        if hole.all():
            raise ArgumentError("mask: it covers the whole image; there is no context to fill it from")
        from scipy import ndimage

        labels, _ = ndimage.label(hole, structure=np.ones((3, 3), bool))
        photo = gimage.picture_to_float(picture)  # (C, H, W)
        regions = [(i, box, _windows(labels[box] == i, box, hole.shape, self.size))
                   for i, box in enumerate(ndimage.find_objects(labels), start=1)]  # fmt: skip
        preds = iter(self._predict(photo, hole, [w for _, _, windows in regions for w in windows]))
        out = photo.copy()
        change = np.zeros(hole.shape, bool)
        for index, box, windows in regions:
            side = windows[0][2]
            band = 1 if blend != "feather" else feather or max(1, round(_OVERLAP * side / self.size))
            rows, cols = (
                slice(max(a.start - band, 0), min(a.stop + band, n)) for a, n in zip(box, hole.shape, strict=True)
            )
            fill = _accumulate([next(preds) for _ in windows], windows, rows, cols)
            region = labels[rows, cols] == index
            if blend == "feather":
                weight = _feather_weight(region, band)
            elif blend == "poisson":
                weight = region.astype(np.float32)
                fill[:, region] = _poisson(photo[:, rows, cols], fill, region, (rows.start, cols.start), hole.shape)
            else:
                weight = region.astype(np.float32)
            view = out[:, rows, cols]
            view[:] = weight * fill + (1.0 - weight) * view
            change[rows, cols] |= weight > 0
        pixels = picture.pixels.copy()
        pixels[change] = gimage.float_to_pixels(out[:, change][:, :, None], pixels.dtype)[:, 0]
        alpha = picture.alpha
        if from_alpha:
            alpha = alpha.copy()
            alpha[hole] = np.iinfo(alpha.dtype).max
        return gimage.Picture(pixels=pixels, alpha=alpha, icc=picture.icc, exif=picture.exif)

    def _predict(self, photo: np.ndarray, hole: np.ndarray, windows: list) -> list[np.ndarray]:
        """The network's prediction for each window (of every region: batched together), resized back to the
        window, (C, side, side) float32 in [0, 1] (grey photos: the luma)."""
        s, c = self.size, photo.shape[0]
        holes = hole[None].astype(np.float32)  # once, not per window: on a large photo each copy is the photo's size
        out = []
        for i in range(0, len(windows), _BATCH):
            images, masks = [], []
            for top, left, side, _, _ in windows[i : i + _BATCH]:
                win = _crop(photo, top, left, side)  # (C, side, side), the image reflected past its edges
                m = _crop(holes, top, left, side)
                images.append(gimage.resize_float(np.repeat(win, 3, 0) if c == 1 else win, (s, s)))
                masks.append((gimage.resize_float(m, (s, s), method="box") > 1e-3).astype(np.float32))
            image_name = self.metadata.get("image_input", self.inputs[0].name)
            mask_name = self.metadata.get("mask_input", next(s.name for s in self.inputs if s.name != image_name))
            y = self({image_name: _images.to_model(np.stack(images), self.metadata), mask_name: np.stack(masks)})
            y = _images.from_model(y[0] if isinstance(y, tuple) else y, self.metadata)
            for (_, _, side, _, _), pred in zip(windows[i : i + _BATCH], y, strict=True):
                pred = np.clip(gimage.resize_float(pred, (side, side)), 0.0, 1.0)
                out.append(np.tensordot(gimage.LUMA, pred, axes=1)[None] if c == 1 else pred)
        return out


def _accumulate(preds: list[np.ndarray], windows: list, rows: slice, cols: slice) -> np.ndarray:
    """One region's fill on the crop (rows, cols), (C, h, w): its windows' predictions averaged with their tents'
    weights (a tent of half a side around each window's centre)."""
    acc = np.zeros((preds[0].shape[0], rows.stop - rows.start, cols.stop - cols.start), np.float32)
    total = np.zeros(acc.shape[1:], np.float32)
    ys = np.arange(rows.start, rows.stop, dtype=np.float32)
    xs = np.arange(cols.start, cols.stop, dtype=np.float32)
    for (top, left, side, cy, cx), pred in zip(windows, preds, strict=True):
        half = side / 2
        r = slice(max(rows.start, top), min(rows.stop, top + side))  # the tent's support is in the window
        k = slice(max(cols.start, left), min(cols.stop, left + side))
        ar, ak = slice(r.start - rows.start, r.stop - rows.start), slice(k.start - cols.start, k.stop - cols.start)
        w = np.outer(np.clip(1.0 - np.abs(ys[ar] - cy) / half, 0, 1), np.clip(1.0 - np.abs(xs[ak] - cx) / half, 0, 1))
        acc[:, ar, ak] += w * pred[:, r.start - top : r.stop - top, k.start - left : k.stop - left]
        total[ar, ak] += w
    return acc / np.maximum(total, 1e-12)


# --- masks ---------------------------------------------------------------------------------------------------


def read_mask(mask, picture: gimage.Picture) -> np.ndarray:
    """The hole of ``picture`` as a boolean (H, W) array from any of the mask forms :meth:`Inpainter.inpaint`
    takes; ArgumentError (ShapeError for a size mismatch) naming what was wrong."""
    h, w = picture.pixels.shape[:2]
    if mask is None:
        if picture.alpha is None:
            raise ArgumentError("mask: none given and the image has no transparent pixels to fill; give a mask")
        return picture.alpha < (np.iinfo(picture.alpha.dtype).max + 1) // 2
    if isinstance(mask, tuple | list):
        return _rect(mask, h, w)
    if isinstance(mask, str | Path):
        mask = gimage.read_image(mask)
    if isinstance(mask, np.ndarray) and mask.dtype == bool:
        hole = mask
    elif isinstance(mask, np.ndarray) and mask.ndim == 2 and np.issubdtype(mask.dtype, np.integer) and mask.max() <= 1:
        hole = mask != 0  # a 0/1 integer array is a boolean mask, not a nearly black image
    elif isinstance(mask, np.ndarray) and np.issubdtype(mask.dtype, np.floating):
        if mask.ndim != 2:
            raise ShapeError(f"mask: expected a 2-D (H, W) float mask, got shape {mask.shape}")
        hole = mask >= 0.5
    else:
        if isinstance(mask, np.ndarray) and mask.ndim == 2:
            mask = mask[:, :, None]
        pic = mask if isinstance(mask, gimage.Picture) else gimage.to_picture(mask, name="mask")
        top = np.iinfo(pic.pixels.dtype).max
        grey = pic.pixels[..., 0] if pic.pixels.shape[2] == 1 else pic.pixels.astype(np.float32) @ gimage.LUMA
        hole = grey >= (top + 1) / 2
        if pic.alpha is not None:
            hole &= pic.alpha >= (top + 1) // 2
    if hole.shape != (h, w):
        raise ShapeError(f"mask: its size is {hole.shape[1]}x{hole.shape[0]} but the image's is {w}x{h}")
    return hole


def _rect(rect, h: int, w: int) -> np.ndarray:
    try:
        x, y, rw, rh = (int(v) for v in rect)
        ok = len(rect) == 4 and all(float(v) == int(v) for v in rect)
    except (TypeError, ValueError):
        ok = False
    if not ok or rw < 1 or rh < 1:
        raise ArgumentError(f"mask: expected a rectangle (x, y, width, height) of whole numbers, got {rect!r}")
    if x < 0 or y < 0 or x + rw > w or y + rh > h:
        raise ArgumentError(f"mask: the rectangle {x},{y},{rw},{rh} leaves the {w}x{h} image")
    hole = np.zeros((h, w), bool)
    hole[y : y + rh, x : x + rw] = True
    return hole


# --- windows -------------------------------------------------------------------------------------------------


def _windows(region: np.ndarray, box: tuple[slice, slice], shape: tuple[int, int], size: int) -> list:
    """Context windows covering one hole region (``region``: its pixels in its bounding box ``box``), as (top,
    left, side, centre y, centre x). The side is twice the region's thickness (its widest inscribed disc: the
    paper's centre hole is half its window), at least the network's size; a thin long stroke thus gets windows at
    its own resolution along it, not one huge window, and a region within half a side gets one window centred on
    it. Window centres are spaced evenly over the box, at most half a side apart, each weighted by a tent of half
    a side (the weights are normalized where tents overlap); a window leaving the image is moved inside it (its
    tent's part in the image stays inside the window) or, where the image is smaller, reflected past its edges."""
    from scipy import ndimage

    thickness = 2.0 * float(ndimage.distance_transform_edt(np.pad(region, 1)).max())
    side = max(size, 2 * int(np.ceil(thickness)))
    side += side % 2
    half = side // 2

    def centres(s: slice) -> list[int]:  # evenly spaced, at most half a side apart: the tents overlap
        n = -(-(s.stop - s.start) // half)
        return [s.start + round((s.stop - s.start) * (k + 0.5) / n) for k in range(n)]

    def start(centre: int, extent: int) -> int:
        return min(max(centre - half, 0), extent - side) if extent >= side else (extent - side) // 2

    out = []
    for cy in centres(box[0]):
        for cx in centres(box[1]):
            near = region[max(cy - half - box[0].start, 0) : cy + half - box[0].start,
                          max(cx - half - box[1].start, 0) : cx + half - box[1].start]  # fmt: skip
            if near.any():  # a window whose tent covers none of the region adds nothing
                out.append((start(cy, shape[0]), start(cx, shape[1]), side, cy, cx))
    return out


def _crop(a: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """a[..., top:top + side, left:left + side], the array reflected past its edges where the window leaves it."""
    h, w = a.shape[-2:]
    pads = [(max(0, -top), max(0, top + side - h)), (max(0, -left), max(0, left + side - w))]
    inside = a[..., max(top, 0) : top + side, max(left, 0) : left + side]
    if not any(p for pair in pads for p in pair):
        return inside
    return np.pad(inside, [(0, 0)] * (a.ndim - 2) + pads, mode="reflect")


def _feather_weight(region: np.ndarray, band: int) -> np.ndarray:
    """1 on the region, falling linearly to 0 over ``band`` pixels of context around it."""
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(~region)
    return np.clip(1.0 - distance / (band + 1), 0.0, 1.0).astype(np.float32)


def _poisson(context: np.ndarray, guide: np.ndarray, region: np.ndarray, origin, shape) -> np.ndarray:
    """The region's pixels (C, n) solving Poisson's equation on a crop of the image at ``origin`` (its top left):
    the Laplacian of ``guide`` (the fill, which covers the region and a pixel around it) inside, ``context``'s
    values at the border (4-neighbours; the image's edge, ``shape``, is a free boundary). One sparse LU
    factorization, all channels solved with it."""
    try:
        from scipy.sparse import csc_matrix
        from scipy.sparse.linalg import splu
    except ImportError:  # scipy is a dependency; a broken install still gets a clear error
        raise MissingDependencyError("blend='poisson' needs SciPy: pip install scipy (or blend='feather')") from None
    g, ctx = guide.astype(np.float64), context.astype(np.float64)
    ys, xs = np.nonzero(region)
    n = len(ys)
    idx = np.full(region.shape, -1, np.int64)
    idx[ys, xs] = np.arange(n)
    diag, b = np.zeros(n), np.zeros((n, g.shape[0]))
    off_rows, off_cols = [], []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        inside = (ny + origin[0] >= 0) & (ny + origin[0] < shape[0]) & (nx + origin[1] >= 0)
        inside &= nx + origin[1] < shape[1]  # a neighbour off the image is no constraint (a free edge)
        p, ny, nx = np.nonzero(inside)[0], ny[inside], nx[inside]
        diag[p] += 1.0
        b[p] += (g[:, ys[p], xs[p]] - g[:, ny, nx]).T  # the fill's gradient
        q = idx[ny, nx]
        unknown = q >= 0
        off_rows.append(p[unknown])
        off_cols.append(q[unknown])
        b[p[~unknown]] += ctx[:, ny[~unknown], nx[~unknown]].T  # the context at the border
    rr, cc = np.concatenate(off_rows), np.concatenate(off_cols)
    at = np.arange(n)
    a = csc_matrix((np.concatenate([diag, -np.ones(len(rr))]), (np.concatenate([at, rr]), np.concatenate([at, cc]))),
                   shape=(n, n))  # fmt: skip
    return splu(a).solve(b).T.astype(np.float32)


register_kind("inpainter", Inpainter)

__all__ = ["Inpainter", "read_mask", "BLENDS"]
