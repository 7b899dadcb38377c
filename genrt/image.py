"""Images at genrt's edges: numpy HWC arrays, image files, and grids of samples.

The IO layer of genrt's applications: :func:`read_image` and :func:`write_image` (PNG, JPEG, WebP, TIFF, BMP;
GIF read only) move :class:`Picture` objects (pixels, alpha, ICC profile, EXIF) through Pillow, except where
Pillow would lose bits: it keeps only the top 8 bits of each sample of a 16-bit colour or grey+alpha image, so
those PNGs are decoded by pypng and written by :func:`encode_png`, and those TIFFs go through tifffile.
:func:`decode_image` and :func:`encode_image` do the same with bytes in memory (pipes: ``genrt stylize M - -o -``).
:func:`to_picture` / :func:`from_picture` take and give back the kind an app was called with (numpy or PIL), and
:func:`picture_to_float` / :func:`float_to_pixels` convert to and from a model's (C, H, W) floats in [0, 1].
Files are written atomically. Pillow, pypng and tifffile are imported on first use: ``import genrt`` stays light.
"""

from __future__ import annotations

import io
import math
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrt.errors import ArgumentError, DTypeError, GenrtError, ImageTooLargeError, InvalidImageError, ShapeError

_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma weights of R, G, B (PIL's convert("L"))
_EXIF_HEAD = b"Exif\x00\x00"  # starts an EXIF block in JPEG's APP1; PNG's eXIf and WebP's EXIF chunk go without


def to_uint8_images(x: np.ndarray, value_range=(-1.0, 1.0)) -> np.ndarray:
    """A model's (N, C, H, W) float output in value_range -> uint8 (N, H, W, C) images."""
    lo, hi = float(value_range[0]), float(value_range[1])
    y = (np.asarray(x, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _as_hwc(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise DTypeError(f"image: expected uint8 or uint16, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in _COLOR_TYPES:
        raise ShapeError(f"image: expected (H, W) or (H, W, C) with C in 1-4, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ShapeError(f"image: expected a non-empty image, got shape {image.shape}")
    return image


def encode_png(image, *, icc: bytes | None = None, exif: bytes | None = None) -> bytes:
    """PNG bytes of a uint8 or uint16 (H, W) or (H, W, C) image, C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA).

    uint16 is written as 16-bit samples. ``icc`` (an ICC profile) and ``exif`` (an EXIF block, with or without its
    ``Exif\\0\\0`` head) go into iCCP and eXIf chunks.
    """
    image = _as_hwc(image)
    h, w, c = image.shape
    depth = 8 * image.dtype.itemsize
    raw = image.astype(">u2" if depth == 16 else np.uint8).reshape(h, w * c).view(np.uint8)  # PNG is big-endian
    # Filter "Up" (each byte minus the one above; the first row has zeros above, so it is unchanged): vectorised,
    # and it shrinks the flat areas of grids and gradients a lot.
    up = raw.copy()
    up[1:] -= raw[:-1]
    rows = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, depth, _COLOR_TYPES[c], 0, 0, 0)
    extra = b""
    if icc:
        extra += chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))  # name, NUL, method 0 (zlib)
    if exif:
        extra += chunk(b"eXIf", exif.removeprefix(_EXIF_HEAD))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


# Temporary files of atomic writes end with this: a process killed mid-write leaves only such a file, which the
# folder engine (genrt.batch) removes on its next run.
PARTIAL_SUFFIX = ".genrt-partial"


def umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's files are owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path, data: bytes) -> Path:
    """Writes bytes to path through a temporary file in the same folder, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(path, image) -> Path:
    """Writes a uint8 (or uint16) image as PNG, atomically; see :func:`encode_png`."""
    return write_atomic(path, encode_png(image))


def make_grid(images, *, nrow: int | None = None, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tiles images (N, H, W, C) uint8 into one (H', W', C) image, nrow per row (default: about square)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] < 1:
        raise ShapeError(f"images: expected (N, H, W, C) with N >= 1, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DTypeError(f"images: expected uint8, got {images.dtype}")
    n, h, w, c = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    if nrow < 1 or padding < 0:
        raise ArgumentError(f"nrow and padding: expected nrow >= 1 and padding >= 0, got {nrow} and {padding}")
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = np.full((padding + nrows * (h + padding), padding + ncol * (w + padding), c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = images[i]
    return grid


# --- Reading and writing image files ----------------------------------------------------------------------------

DEFAULT_MAX_PIXELS = 100_000_000  # read_image refuses more (a 10000 x 10000 image); GENRT_MAX_PIXELS overrides it
_MAX_PIXELS_ENV = "GENRT_MAX_PIXELS"

# Formats read_image opens, whatever the suffix says. Pillow's JPEG opener also gives MPO, the JPEG of phone
# cameras that carries a second picture after the first; read_image takes the first and calls it JPEG.
_READ_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF, both byte orders
# Suffix -> format write_image writes, and what each format holds; the rest is dropped (alpha, metadata) or
# reduced (16-bit samples to 8-bit).
_WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
# The suffixes (any case) of files read_image reads and of those write_image writes: folder scans use these.
READ_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")
WRITE_SUFFIXES = tuple(_WRITE_FORMATS)
_HOLDS_ALPHA = {"PNG", "WEBP", "TIFF"}
_HOLDS_16BIT = {"PNG", "TIFF"}
_HOLDS_METADATA = {"PNG", "JPEG", "WEBP", "TIFF"}  # an ICC profile and EXIF
_ORIENTATION = 0x0112  # the EXIF (and TIFF) tag
# TIFF field types an orientation is found stored as: SHORT (the standard's), LONG, SSHORT, SLONG.
_INT_TYPES = {3: "H", 4: "I", 8: "h", 9: "i"}
_MAX_SIDE = {"JPEG": 65500, "WEBP": 16383}  # the formats' own limits (libjpeg's JPEG_MAX_DIMENSION, WebP's 14 bits)
_JPEG_MAX_EXIF = 65533  # bytes in one APP1 segment after its length field: a longer EXIF block cannot go in a JPEG
# EXIF orientation -> (transpose, flip rows, flip columns) that makes the pixels upright, applied in that order:
# the table of PIL.ImageOps.exif_transpose (6: ROTATE_270, a quarter turn clockwise; 8: ROTATE_90), on numpy.
_UPRIGHT = {
    2: (False, False, True),
    3: (False, True, True),
    4: (False, True, False),
    5: (True, False, False),
    6: (True, False, True),
    7: (True, True, True),
    8: (True, True, False),
}
# Pillow modes read_image and to_picture take -> the mode whose planes become pixels (+ alpha).
_PIL_TARGETS = {
    "1": "L",
    "L": "L",
    "LA": "LA",
    "La": "LA",
    "PA": "RGBA",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "YCbCr": "RGB",
    "HSV": "RGB",
}
_WHY_NOT_32BIT = ": they have no agreed value range (HDR, depth maps), and guessing one would quietly change them"
# What a decoder raises on bad data (OSError: Pillow's "image file is truncated"; SyntaxError: "broken PNG file";
# TypeError, AttributeError, ArithmeticError: tifffile and Pillow's plugins on tag values of the wrong type or count,
# or a zero where a divisor belongs; RuntimeError: tifffile's and Pillow's internal checks). Found by tests/fuzz.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    ArithmeticError,
    RuntimeError,
    struct.error,
    zlib.error,
)


def _describe(x) -> str:
    return f"a {x.dtype} array" if isinstance(x, np.ndarray) else type(x).__name__


@dataclass(frozen=True, eq=False)  # eq=False: == on numpy fields is ambiguous, so pictures compare by identity
class Picture:
    """An image with what its file carries besides pixels.

    ``pixels``: (H, W, C) uint8 or uint16, C = 1 (grey) or 3 (RGB).
    ``alpha``: (H, W) of the pixels' dtype, straight (not premultiplied; 0 is transparent), or None.
    ``icc``: the ICC colour profile (bytes), or None (untagged; viewers assume sRGB).
    ``exif``: the EXIF block (bytes starting with ``Exif\\0\\0``), or None. read_image turns the pixels upright
    and sets the block's orientation tag to 1 to match; to_picture of a PIL image keeps both as they came.
    ``source``: the path it was read from, or None. ``format``: the file's format ("PNG", "JPEG", ...), or None.
    The arrays are not copied: a Picture may share memory with the array it was made from.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    icc: bytes | None = None
    exif: bytes | None = None
    source: str | None = None
    format: str | None = None

    def __post_init__(self):
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.dtype not in (np.uint8, np.uint16):
            raise DTypeError(f"pixels: expected a uint8 or uint16 array, got {_describe(p)}")
        if p.ndim != 3 or p.shape[2] not in (1, 3) or p.shape[0] < 1 or p.shape[1] < 1:
            raise ShapeError(f"pixels: expected (H, W, C) with C = 1 or 3 and H, W >= 1, got shape {p.shape}")
        a = self.alpha
        if a is not None:
            if not isinstance(a, np.ndarray) or a.dtype != p.dtype:
                raise DTypeError(f"alpha: expected a {p.dtype} array like the pixels, got {_describe(a)}")
            if a.shape != p.shape[:2]:
                raise ShapeError(f"alpha: expected shape {p.shape[:2]} (the pixels' H, W), got {a.shape}")
        for name in ("icc", "exif"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bytes):
                raise DTypeError(f"{name}: expected bytes or None, got {type(value).__name__}")


def _pixel_limit(max_pixels) -> int:
    source = "max_pixels"
    if max_pixels is None:
        text = os.environ.get(_MAX_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        source = _MAX_PIXELS_ENV
        try:
            max_pixels = int(text)
        except ValueError:
            raise ArgumentError(f"{_MAX_PIXELS_ENV}: expected a whole number of pixels, got {text!r}") from None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ArgumentError(f"{source}: expected a whole number of pixels >= 1, got {max_pixels!r}")
    return int(max_pixels)


def _check_size(path, width: int, height: int, limit: int) -> None:
    if width < 1 or height < 1:
        raise InvalidImageError(f"{path}: zero-size image ({width} x {height})")
    if width * height > limit:
        raise ImageTooLargeError(
            f"{path}: {width} x {height} is {width * height:,} pixels, over the limit of {limit:,} "
            f"(max_pixels or {_MAX_PIXELS_ENV} raise it)"
        )


def _upright_exif(exif: bytes | None) -> tuple[int, bytes | None]:
    """(orientation, the EXIF block with its orientation tag set to 1) of an EXIF block, or (1, None) for none.

    The tag is patched in place, so everything else (maker notes included, whose offsets a rewrite breaks)
    stays byte for byte.
    """
    if not exif:
        return 1, None
    if not exif.startswith(_EXIF_HEAD):
        exif = _EXIF_HEAD + exif  # WebP's and PNG's chunks hold the TIFF-structured block alone
    start = len(_EXIF_HEAD)
    order = {b"II": "<", b"MM": ">"}.get(exif[start : start + 2])
    if order is None:
        return 1, exif  # not a TIFF structure: nothing to patch, kept as it came
    try:
        (ifd,) = struct.unpack_from(order + "I", exif, start + 4)
        (count,) = struct.unpack_from(order + "H", exif, start + ifd)
        for i in range(count):
            entry = start + ifd + 2 + 12 * i
            tag, kind, n = struct.unpack_from(order + "HHI", exif, entry)
            if tag == _ORIENTATION and kind in _INT_TYPES and 1 <= n * struct.calcsize(_INT_TYPES[kind]) <= 4:
                code = _INT_TYPES[kind]
                (value,) = struct.unpack_from(order + code, exif, entry + 8)
                end = entry + 8 + struct.calcsize(code)
                return value, exif[: entry + 8] + struct.pack(order + code, 1) + exif[end:]
    except struct.error:
        pass  # a damaged block: kept as it came, the pixels as they are
    return 1, exif


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """a (H, W, ...) made upright for an EXIF orientation (1 or an unknown value: unchanged)."""
    transpose, flip_rows, flip_columns = _UPRIGHT.get(orientation, (False, False, False))
    if transpose:
        a = np.swapaxes(a, 0, 1)
    if flip_rows:
        a = a[::-1]
    if flip_columns:
        a = a[:, ::-1]
    return a


def _cmyk_to_rgb(im, icc: bytes | None):
    """RGB of a CMYK Pillow image: through its ICC profile to sRGB where it has a usable one, else Pillow's plain
    conversion (255 - C - K ...), which is what viewers without colour management show."""
    if icc:
        try:
            from PIL import ImageCms

            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImportError, OSError, ValueError, TypeError):  # ImageCms.PyCMSError is an OSError
            pass
    return im.convert("RGB")


def _from_pil(im, name, error) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """(pixels (H, W, C), alpha or None, ICC profile or None) of a Pillow image; unsupported modes raise error."""
    icc = im.info.get("icc_profile") or None
    mode = im.mode
    # Pillow before 10.1 or so opens a 16-bit grey PNG as "I" (32-bit); PNG has no wider samples than 16 bits.
    if mode.startswith("I;16") or (mode == "I" and im.format == "PNG"):
        grey = np.asarray(im).astype(np.uint16)  # I;16B arrives big-endian
        key = im.info.get("transparency")  # a tRNS grey level: transparent where the pixel has it
        alpha = None if not isinstance(key, int) else np.where(grey == key, 0, 65535).astype(np.uint16)
        return grey[..., None], alpha, icc
    if mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc), None  # a CMYK profile does not describe the RGB pixels
        mode = "RGB"
    if mode == "P":
        mode = "PA" if "transparency" in im.info or im.palette.mode == "RGBA" else "RGB"
    elif mode in ("L", "RGB") and "transparency" in im.info:  # a tRNS colour key: Pillow turns it into alpha
        mode += "A"
    target = _PIL_TARGETS.get(mode)
    if target is None:
        kind = {"I": "32-bit integer", "F": "32-bit floating-point"}.get(mode)
        raise error(
            f"{name}: {kind or f'Pillow mode {mode!r}'} images are not supported (8- and 16-bit grey or RGB are)"
            + (_WHY_NOT_32BIT if kind else "")
        )
    planes = np.asarray(im if im.mode == target else im.convert(target))
    if planes.ndim == 2:
        planes = planes[..., None]
    colour = 1 if target in ("L", "LA") else 3
    alpha = planes[..., colour] if planes.shape[2] > colour else None
    return planes[..., :colour], alpha, icc


def _tiff_is_deep(f) -> bool:
    """Whether a TIFF file has several samples per pixel of more than 8 bits: Pillow would keep 8 of them."""
    import tifffile

    try:
        with tifffile.TiffFile(f) as tif:
            page = tif.pages[0]
            bits = page.bitspersample  # a tuple where a damaged file gives its samples different sizes
            return page.samplesperpixel > 1 and max(bits if isinstance(bits, tuple) else (bits,)) > 8
    except (tifffile.TiffFileError, *_DECODE_ERRORS):
        return False  # Pillow reads it or says what is wrong with it
    finally:
        f.seek(0)


def _read_tifffile(f, path, limit: int) -> tuple:
    """(pixels, alpha, icc, exif, orientation) of a TIFF with 16-bit colour or grey+alpha samples, by tifffile."""
    import tifffile

    with tifffile.TiffFile(f) as tif:
        page = tif.pages[0]
        height, width = page.imagelength, page.imagewidth
        _check_size(path, width, height, limit)
        if page.sampleformat != tifffile.SAMPLEFORMAT.UINT or page.bitspersample != 16:
            kind = {1: "unsigned", 2: "integer", 3: "floating-point"}.get(int(page.sampleformat), "other")
            raise InvalidImageError(
                f"{path}: {page.bitspersample}-bit {kind} images are not supported (8- and 16-bit grey or RGB are)"
                + (_WHY_NOT_32BIT if page.bitspersample == 32 else "")
            )
        colour = {tifffile.PHOTOMETRIC.MINISBLACK: 1, tifffile.PHOTOMETRIC.RGB: 3}.get(page.photometric)
        if colour is None:
            name = tifffile.PHOTOMETRIC(page.photometric).name
            raise InvalidImageError(f"{path}: 16-bit {name} TIFFs are not supported (grey and RGB are)")
        try:
            data = page.asarray()
        except ValueError as exc:
            if "imagecodecs" in str(exc):  # tifffile decodes LZW, JPEG, ... only with imagecodecs installed
                raise InvalidImageError(f"{path}: {exc} (pip install imagecodecs)") from None
            raise
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
            data = np.moveaxis(data, 0, -1)
        data = data.reshape(height, width, page.samplesperpixel).astype(np.uint16, copy=False)
        pixels, alpha = data[..., :colour], None
        extras = tuple(page.extrasamples)
        if data.shape[2] > colour and extras and extras[0] in (1, 2):  # ASSOCALPHA, UNASSALPHA
            alpha = data[..., colour]
            if extras[0] == 1:  # premultiplied: back to straight colour, as Pillow does for 8-bit RGBa
                a = alpha[..., None].astype(np.float64)
                straight = np.where(a > 0, pixels * 65535.0 / np.maximum(a, 1), 0)
                pixels = np.clip(np.rint(straight), 0, 65535).astype(np.uint16)
        icc = page.tags.get(34675)  # InterColorProfile
        orientation = page.tags.get(_ORIENTATION)
        icc = bytes(icc.value) if icc is not None else None
        orientation = int(orientation.value) if orientation is not None else 1
    return pixels, alpha, icc, None, orientation


def _png_is_deep(head: bytes) -> bool:
    """Whether PNG bytes (from the start, 26 or more) are 16-bit colour or grey+alpha: Pillow would keep 8 bits."""
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 26 and head[24] == 16 and head[25] in (2, 4, 6)


def _read_pypng(f, path) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels, alpha) of a 16-bit colour or grey+alpha PNG, by pypng (pure Python: about 0.6 s a megapixel)."""
    import png

    f.seek(0)
    try:
        width, height, rows, info = png.Reader(file=f).read()
        planes = info["planes"]
        data = np.empty((height, width * planes), np.uint16)
        count = 0
        for y, row in enumerate(rows):
            data[y] = row
            count = y + 1
    except png.Error as exc:
        raise InvalidImageError(f"{path}: truncated or corrupt PNG ({exc})") from None
    if count != height:
        raise InvalidImageError(f"{path}: truncated PNG ({count} of {height} rows)")
    data = data.reshape(height, width, planes)
    colour = 1 if info["greyscale"] else 3
    pixels, alpha = data[..., :colour], data[..., colour] if info["alpha"] else None
    key = info.get("transparent")  # a tRNS colour key: transparent where the pixel has exactly that colour
    if alpha is None and key is not None:
        alpha = np.where(np.all(pixels == np.asarray(key, np.uint16), axis=2), 0, 65535).astype(np.uint16)
    return pixels, alpha


def _signature(head: bytes) -> str | None:
    """The format whose signature a file starts with, of those read_image reads; None for none."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in _TIFF_MAGIC:
        return "TIFF"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith(b"BM"):
        return "BMP"
    return None


def _pillow_bomb(path, exc, limit: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{path}: over Pillow's own limit, twice PIL.Image.MAX_IMAGE_PIXELS, which holds whatever max_pixels "
        f"({limit:,}) says: {exc}"
    )


def _read_pillow(f, path, head: bytes, limit: int) -> tuple:
    """(pixels, alpha, icc, exif, orientation, format) of any file Pillow reads (16-bit colour PNGs by pypng)."""
    from PIL import Image

    Image.init()  # registers every plugin Pillow has, once: a Pillow built without WebP has no "WEBP" opener
    try:
        im = Image.open(f, formats=[name for name in _READ_FORMATS if name in Image.OPEN])
    except Image.UnidentifiedImageError:
        fmt = _signature(head)
        if fmt:  # Pillow says only "cannot identify": the start says what the file was meant to be
            raise InvalidImageError(f"{path}: truncated or corrupt {fmt} (Pillow cannot read its header)") from None
        raise InvalidImageError(f"{path}: not an image genrt reads (PNG, JPEG, WebP, TIFF, BMP or GIF)") from None
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb(path, exc, limit) from None
    with im:
        _check_size(path, im.width, im.height, limit)
        fmt = "JPEG" if im.format == "MPO" else im.format
        exif = im.info.get("exif")
        if fmt == "PNG" and _png_is_deep(head):
            # Pillow has read the header chunks, iCCP and eXIf among them (both come before IDAT), not the pixels.
            pixels, alpha = _read_pypng(f, path)
            orientation, exif = _upright_exif(exif)
            return pixels, alpha, im.info.get("icc_profile") or None, exif, orientation, fmt
        try:
            im.load()
        except Image.DecompressionBombError as exc:
            raise _pillow_bomb(path, exc, limit) from None
        pixels, alpha, icc = _from_pil(im, path, InvalidImageError)
        # Pillow's orientation: EXIF, or a TIFF's own tag, or XMP's tiff:Orientation where there is no EXIF.
        orientation = im.getexif().get(_ORIENTATION, 1)
        return pixels, alpha, icc, _upright_exif(exif)[1], orientation, fmt


def read_image(path, *, max_pixels: int | None = None) -> Picture:
    """Reads an image file: PNG, JPEG, WebP, TIFF, BMP, or the first frame of a GIF (the format from the content).

    Returns a Picture: pixels (H, W, C) uint8 or uint16, C = 1 (grey) or 3 (RGB), and alpha (H, W) or None,
    upright: the EXIF orientation is applied (as PIL.ImageOps.exif_transpose does) and the orientation tag of
    ``exif`` set to 1. Palette images become RGB (+ alpha where they have transparency), 1-bit images grey uint8
    (0 and 255), CMYK RGB (through its ICC profile, which is then dropped), "LA"/"PA" grey/RGB + alpha, a tRNS
    colour key alpha; 16-bit samples stay uint16 (16-bit colour PNGs are decoded by pypng, 16-bit colour TIFFs by
    tifffile: Pillow would keep 8 bits). 32-bit integer and floating-point images are refused: they have no agreed
    value range (HDR, depth maps), and guessing one would quietly change them.

    max_pixels: the most pixels accepted (default: GENRT_MAX_PIXELS, else DEFAULT_MAX_PIXELS), checked from the
    header before decoding. Pillow's own guard stays on, as the process set it: it refuses more than twice
    PIL.Image.MAX_IMAGE_PIXELS (179 million pixels by default) whatever max_pixels says, and warns past it.

    Raises ImageTooLargeError over either limit, InvalidImageError for a file that is not a readable image
    (empty, not an image, truncated, corrupt, unsupported; a FIFO, socket or device: refused before it is opened,
    so a FIFO cannot hang the reader), and OSError (FileNotFoundError, IsADirectoryError,
    PermissionError, a symlink loop) where the file cannot be opened.
    """
    import errno
    import stat

    limit = _pixel_limit(max_pixels)
    path = Path(path)

    # Only a regular file (through symlinks) is opened: opening a FIFO waits for a writer, forever, and opening a
    # device can act on it. Checked before opening, and again on the open file (opened non-blocking, so a path
    # swapped for a FIFO in between cannot hang either). OSErrors (no such file, a symlink loop, permission denied,
    # a folder) propagate: the folder engine reports them per file.
    def refuse_unless_regular(mode: int) -> None:
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            kinds = {
                stat.S_IFIFO: "a FIFO",
                stat.S_IFSOCK: "a socket",
                stat.S_IFCHR: "a device",
                stat.S_IFBLK: "a device",
            }
            kind = kinds.get(stat.S_IFMT(mode), "not a file")
            raise InvalidImageError(f"{path}: not a regular file ({kind}), not an image")

    refuse_unless_regular(os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        refuse_unless_regular(os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        f = open(path, "rb", opener=lambda _path, _flags: fd)  # the checked fd; f.name is the path (tifffile)
    except BaseException:
        os.close(fd)
        raise
    with f:
        if not f.read(1):
            raise InvalidImageError(f"{path}: empty file (0 bytes), not an image")
        f.seek(0)
        return _decode(f, path, limit, source=str(path))


def decode_image(data, *, max_pixels: int | None = None, name: str = "image bytes") -> Picture:
    """Reads an image from bytes in memory (stdin, a network reply), as :func:`read_image` reads a file.

    The format is taken from the bytes (PNG, JPEG, WebP, TIFF, BMP, or the first frame of a GIF); the limits,
    orientation and 16-bit handling are read_image's. ``name`` stands for the file in error messages ("stdin").
    The Picture's ``source`` is None and its ``format`` the one found.

    Raises InvalidImageError (empty, not an image, truncated, corrupt, unsupported), ImageTooLargeError, and
    DTypeError when ``data`` is not bytes.

    Example::

        picture = decode_image(sys.stdin.buffer.read(), name="stdin")
        sys.stdout.buffer.write(encode_image(picture, "png"))
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DTypeError(f"data: expected bytes, got {type(data).__name__}")
    limit = _pixel_limit(max_pixels)
    if not len(data):
        raise InvalidImageError(f"{name}: empty (0 bytes), not an image")
    return _decode(io.BytesIO(data), name, limit, source=None)


def _decode(f, path, limit: int, *, source: str | None) -> Picture:
    """The Picture in an open, seekable binary file f (at its start, not empty); ``path`` names it in errors."""
    head = f.read(32)
    f.seek(0)
    try:
        if head[:4] in _TIFF_MAGIC and _tiff_is_deep(f):
            pixels, alpha, icc, exif, orientation = _read_tifffile(f, path, limit)
            fmt = "TIFF"
        else:
            pixels, alpha, icc, exif, orientation, fmt = _read_pillow(f, path, head, limit)
    except GenrtError:
        raise
    except _DECODE_ERRORS as exc:  # OSError here is the decoder's (truncated data), the file opened fine
        raise InvalidImageError(f"{path}: truncated or corrupt {_signature(head) or 'image'} ({exc})") from None
    pixels = np.ascontiguousarray(_orient(pixels, orientation))
    alpha = None if alpha is None else np.ascontiguousarray(_orient(alpha, orientation))
    return Picture(pixels, alpha, icc, exif, source=source, format=fmt)


def _to_depth(x: np.ndarray, dtype) -> np.ndarray:
    """uint8 <-> uint16 samples: x * 257 up (255 -> 65535), round(x / 257) down."""
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    if dtype == np.uint8:
        return ((x.astype(np.uint32) + 128) // 257).astype(np.uint8)  # exactly round(x / 257): no ties exist
    return x.astype(np.uint16) * np.uint16(257)


def _icc_fits(icc: bytes | None, channels: int) -> bool:
    """Whether an ICC profile's colour space (header bytes 16-19) is that of the pixels: a grey profile embedded
    in an RGB file (an app that colourises a grey input) makes colour-managed viewers misread or reject it."""
    return bool(icc) and icc[16:20] == (b"GRAY" if channels == 1 else b"RGB ")


def _encode(picture: Picture, fmt: str, quality: int) -> bytes:
    side = _MAX_SIDE.get(fmt)
    if side is not None and max(picture.pixels.shape[:2]) > side:
        h, w = picture.pixels.shape[:2]
        raise ArgumentError(f"cannot write a {w} x {h} {fmt}: it holds at most {side} pixels a side; use PNG or TIFF")
    pixels, alpha = picture.pixels, picture.alpha if fmt in _HOLDS_ALPHA else None
    if pixels.dtype == np.uint16 and fmt not in _HOLDS_16BIT:
        pixels, alpha = _to_depth(pixels, np.uint8), None if alpha is None else _to_depth(alpha, np.uint8)
    colour = pixels.shape[2]
    icc = picture.icc if fmt in _HOLDS_METADATA and _icc_fits(picture.icc, colour) else None
    exif = picture.exif if fmt in _HOLDS_METADATA else None
    if exif and not exif.startswith(_EXIF_HEAD):
        exif = _EXIF_HEAD + exif  # JPEG's APP1 needs the head; PNG's and WebP's writers take it off again
    if fmt == "JPEG" and exif and len(exif) > _JPEG_MAX_EXIF:
        exif = None  # e.g. a PNG's eXIf of megabytes: no JPEG can hold it, and the image matters more
    planes = pixels if alpha is None else np.concatenate([pixels, alpha[..., None]], axis=2)
    if pixels.dtype == np.uint16 and planes.shape[2] > 1:  # Pillow holds 16-bit grey only
        if fmt == "PNG":
            return encode_png(planes, icc=icc, exif=exif)
        import tifffile

        buf = io.BytesIO()
        tifffile.imwrite(
            buf,
            planes,
            photometric="rgb" if colour == 3 else "minisblack",
            extrasamples=("unassalpha",) if alpha is not None else None,
            compression="zlib",
            predictor=True,
            # InterColorProfile, UNDEFINED bytes (tifffile's iccprofile= argument is newer than 2023).
            extratags=[(34675, 7, len(icc), icc, True)] if icc else (),
            metadata=None,  # no tifffile JSON in ImageDescription
        )
        return buf.getvalue()  # EXIF is not written here: tifffile has no EXIF IFD writer
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(planes[..., 0] if planes.shape[2] == 1 else planes))
    options = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if fmt == "JPEG" and quality >= 90:
        options["subsampling"] = 0  # 4:4:4: Pillow's default 4:2:0 smears the colour of fine detail
    if fmt == "TIFF":
        options["compression"] = "tiff_deflate"  # lossless, and read by every TIFF reader
    try:
        buf = io.BytesIO()
        im.save(buf, fmt, **options)
    except _DECODE_ERRORS:
        if "exif" not in options and "icc_profile" not in options:
            raise
        # A damaged EXIF block or ICC profile the writer cannot parse (TIFF re-reads EXIF): the image without them.
        options.pop("exif", None)
        options.pop("icc_profile", None)
        buf = io.BytesIO()
        im.save(buf, fmt, **options)
    return buf.getvalue()


def write_image(path, image, *, quality: int = 95) -> Path:
    """Writes an image atomically (through write_atomic) in the format its suffix names; returns the path.

    image: a Picture, a numpy (H, W) or (H, W, C) uint8/uint16 array (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA),
    or a PIL image. Suffixes: .png .jpg .jpeg .webp .tif .tiff .bmp (any case); another raises ArgumentError.
    What each keeps: PNG and TIFF everything, 16-bit samples as 16-bit; WebP alpha; JPEG and BMP drop alpha (the
    colour under transparent pixels shows: write PNG, WebP or TIFF to keep it); 16-bit samples become 8-bit
    (round(x / 257)) where the format has no 16 bits. The ICC profile and EXIF go into PNG, JPEG, WebP and TIFF
    files (not BMP; a 16-bit colour or grey+alpha TIFF, written by tifffile, keeps the profile only); a profile of
    another colour space than the pixels' (a grey profile with RGB pixels) is left out.
    quality: 1-100 for JPEG and WebP (lossy); JPEG at 90 and above keeps full-resolution colour (4:4:4).
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ArgumentError(
            f"{path}: cannot write {path.suffix or 'a name without a suffix'} (writable: {' '.join(_WRITE_FORMATS)})"
        )
    return write_atomic(path, _encode_checked(image, fmt, quality, path))


def encode_image(image, format: str, *, quality: int = 95) -> bytes:
    """The bytes of an image file in ``format``, as :func:`write_image` writes them (what each format keeps: there).

    format: png, jpg, jpeg, webp, tif, tiff or bmp, any case, with or without a dot; a Picture's own ``format``
    (PNG, JPEG, WEBP, TIFF, BMP) works too. Another (gif) raises ArgumentError.

    Example::

        data = encode_image(read_image("photo.jpg"), "webp", quality=90)
    """
    fmt = _WRITE_FORMATS.get("." + str(format).lower().lstrip("."))
    if fmt is None:
        raise ArgumentError(f"format: cannot write {format!r} (writable: {' '.join(s[1:] for s in _WRITE_FORMATS)})")
    return _encode_checked(image, fmt, quality, None)


def format_suffix(format: str | None) -> str | None:
    """The suffix write_image gives a format ("JPEG" -> ".jpg", "png" -> ".png"); None for one it cannot write."""
    fmt = _WRITE_FORMATS.get("." + str(format).lower().lstrip(".")) if format else None
    return None if fmt is None else next(s for s, f in _WRITE_FORMATS.items() if f == fmt)


def _encode_checked(image, fmt: str, quality, path) -> bytes:
    """_encode with the argument checks and errors of write_image (each prefixed with the path, when there is one)."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ArgumentError(f"quality: expected a whole number in 1-100, got {quality!r}")
    picture = image if isinstance(image, Picture) else to_picture(image)
    where = "" if path is None else f"{path}: "
    try:
        return _encode(picture, fmt, int(quality))
    except ArgumentError as exc:
        raise ArgumentError(f"{where}{exc}") from None
    except _DECODE_ERRORS as exc:  # Pillow's or tifffile's own refusal of these pixels in this format
        what = f"{where}cannot be written as {fmt}" if path is not None else f"cannot write {fmt}"
        raise ArgumentError(f"{what} ({type(exc).__name__}: {exc})") from None


def _as_planes(image, name: str) -> np.ndarray:
    """A numpy image (H, W) or (H, W, C), C in 1-4, uint8/uint16, as (H, W, C); errors name the argument."""
    arr = np.asarray(image)
    if arr.dtype not in (np.uint8, np.uint16):
        raise DTypeError(f"{name}: expected uint8 or uint16 pixels (or a PIL image), got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or not 1 <= arr.shape[2] <= 4 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ShapeError(
            f"{name}: expected (H, W) or (H, W, C) with C in 1-4 and H, W >= 1, got shape {np.shape(image)}"
        )
    return arr


def _is_pil(image) -> bool:
    if isinstance(image, np.ndarray):
        return False  # decided without importing Pillow
    from PIL import Image

    return isinstance(image, Image.Image)


def to_picture(image, *, name: str = "image") -> Picture:
    """A Picture of an app's input: numpy (H, W) or (H, W, C) uint8/uint16 (C = 1 grey, 2 grey+alpha, 3 RGB,
    4 RGBA), or a PIL image.

    Numpy pixels are taken as they are (not copied where the layout allows). A PIL image is converted as read_image
    converts a file (palette to RGB, CMYK to RGB, ...) but not turned upright: its EXIF, orientation included,
    stays as it came, and so do its pixels. Raises ShapeError or DTypeError naming the argument (``name``).
    """
    if _is_pil(image):
        pixels, alpha, icc = _from_pil(image, name, DTypeError)
        exif = image.info.get("exif") or None
        if exif is not None and not exif.startswith(_EXIF_HEAD):
            exif = _EXIF_HEAD + exif
        source = getattr(image, "filename", None) or None
        return Picture(pixels, alpha, icc, exif, source=source, format=image.format)
    planes = _as_planes(image, name)
    colour = 3 if planes.shape[2] >= 3 else 1
    alpha = planes[..., colour] if planes.shape[2] > colour else None
    return Picture(planes[..., :colour], alpha)


def from_picture(picture: Picture, like):
    """The picture as the kind of image an app was given (``like``): what the app's Python API returns.

    like a numpy array: an array of like's dtype (16 -> 8 bits by round(x / 257), 8 -> 16 by x * 257), with
    alpha exactly when like had it (C = 2 or 4; opaque where the picture has none), 2-D when like was 2-D and the
    result is grey without alpha. The colour (grey or RGB) is the picture's.
    like a PIL image: a PIL image of like's mode family, "L", "LA", "RGB" or "RGBA" (palette and CMYK images give
    RGB), alpha as above; "I;16" for a grey result without alpha from an "I;16" image. PIL has no 16-bit colour, so
    other results are 8-bit. The picture's ICC profile and EXIF are in its ``info``.
    """
    if not isinstance(picture, Picture):
        raise DTypeError(f"picture: expected a genrt.image.Picture, got {type(picture).__name__}")
    pixels = picture.pixels
    if _is_pil(like):
        from PIL import Image

        wants_alpha = like.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in like.info
        if pixels.shape[2] == 1 and not wants_alpha and (like.mode.startswith("I;16") or like.mode == "I"):
            im = Image.fromarray(np.ascontiguousarray(_to_depth(pixels, np.uint16)[..., 0]))
        else:
            planes = _with_alpha(picture, np.uint8, wants_alpha)
            im = Image.fromarray(np.ascontiguousarray(planes[..., 0] if planes.shape[2] == 1 else planes))
        if picture.icc:
            im.info["icc_profile"] = picture.icc
        if picture.exif:
            im.info["exif"] = picture.exif
        return im
    shape = _as_planes(like, "like").shape
    planes = _with_alpha(picture, np.asarray(like).dtype, shape[2] in (2, 4))
    if np.ndim(like) == 2 and planes.shape[2] == 1:
        return np.ascontiguousarray(planes[..., 0])
    return np.ascontiguousarray(planes)


def _with_alpha(picture: Picture, dtype, alpha: bool) -> np.ndarray:
    """The picture's pixels in dtype, (H, W, C) with its alpha (opaque if it has none) as a last plane or none."""
    pixels = _to_depth(picture.pixels, dtype)
    if not alpha:
        return pixels
    if picture.alpha is None:
        plane = np.full(pixels.shape[:2], np.iinfo(dtype).max, dtype)
    else:
        plane = _to_depth(picture.alpha, dtype)
    return np.concatenate([pixels, plane[..., None]], axis=2)


def picture_to_float(picture: Picture) -> np.ndarray:
    """A picture's pixels as a model takes them: float32 (C, H, W) in [0, 1] (x / 255 or x / 65535); alpha not."""
    if not isinstance(picture, Picture):
        raise DTypeError(f"picture: expected a genrt.image.Picture, got {type(picture).__name__}")
    top = np.float32(np.iinfo(picture.pixels.dtype).max)
    return np.ascontiguousarray(picture.pixels.transpose(2, 0, 1), dtype=np.float32) / top


def float_to_pixels(x, dtype) -> np.ndarray:
    """A model's float (C, H, W) in [0, 1] -> (H, W, C) pixels of dtype (uint8 or uint16), C in 1-4.

    Values are clipped to [0, 1] and rounded to the nearest level (x * 255 or x * 65535); NaN becomes 0, so one bad
    pixel cannot fail the cast.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise DTypeError(f"dtype: expected uint8 or uint16, got {dtype}")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise DTypeError(f"x: expected floats in [0, 1], got {x.dtype}")
    if x.ndim != 3 or not 1 <= x.shape[0] <= 4 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ShapeError(f"x: expected (C, H, W) with C in 1-4 and H, W >= 1, got shape {x.shape}")
    y = np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0) * np.iinfo(dtype).max
    return np.ascontiguousarray(np.rint(y).astype(dtype).transpose(1, 2, 0))


def resize(pixels, size) -> np.ndarray:
    """Pixels (H, W) or (H, W, C) of uint8/uint16 resized to size = (H', W') with Pillow's LANCZOS, in their dtype.

    For apps that change the image size (super-resolution: an alpha plane carried to the output's size, or an
    output brought to another scale than the network's).
    """
    pixels = np.asarray(pixels)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise DTypeError(f"pixels: expected uint8 or uint16, got {pixels.dtype}")
    if pixels.ndim not in (2, 3) or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ShapeError(f"pixels: expected a non-empty (H, W) or (H, W, C) image, got shape {pixels.shape}")
    try:
        height, width = (int(v) for v in size)
        ok = height >= 1 and width >= 1 and all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ArgumentError(f"size: expected (H, W) with whole numbers >= 1, got {size!r}")
    return _resize_planes(pixels, width, height)


def resize_float(x, size, *, method: str = "lanczos") -> np.ndarray:
    """Float planes (C, H, W) resized to size = (H', W'), float32, unclipped: Pillow's LANCZOS (antialiased when
    shrinking) or, with ``method="box"``, the mean of the pixels each output pixel covers (masks)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ShapeError(f"x: expected (C, H, W) with H, W >= 1, got shape {x.shape}")
    height, width = (int(v) for v in size)
    if (height, width) == x.shape[1:]:
        return x.copy()
    return np.stack([_resize_plane(plane, width, height, method) for plane in x])


def _resize_plane(plane: np.ndarray, width: int, height: int, method: str = "lanczos") -> np.ndarray:
    from PIL import Image

    how = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX}[method]
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)).resize((width, height), how))


def _resize_planes(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    # Through Pillow's float mode, plane by plane: the same in both dtypes, without the 8-bit modes' clipping between
    # the horizontal and vertical passes (up to 20 levels off on fine detail), and LANCZOS's overshoot is clipped at
    # the end instead of wrapping around.
    planes = pixels[..., None] if pixels.ndim == 2 else pixels
    out = np.empty((height, width, planes.shape[2]), pixels.dtype)
    for c in range(planes.shape[2]):
        plane = _resize_plane(planes[..., c], width, height)
        out[..., c] = np.clip(np.rint(plane), 0, np.iinfo(pixels.dtype).max)
    return out[..., 0] if pixels.ndim == 2 else out
