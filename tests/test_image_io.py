"""genrt.image's file IO: read_image / write_image against independent codecs (Pillow directly, tifffile, a PNG
encoder written here from the spec), metadata, bad files, decompression bombs, atomic writes, and the numpy / PIL
conversions apps use."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genrt
from genrt.errors import ImageTooLargeError, InvalidImageError
from genrt.image import (
    DEFAULT_MAX_PIXELS,
    PARTIAL_SUFFIX,
    Picture,
    encode_png,
    float_to_pixels,
    from_picture,
    picture_to_float,
    read_image,
    resize,
    to_picture,
    write_image,
)

Image = pytest.importorskip("PIL.Image")
ImageCms = pytest.importorskip("PIL.ImageCms")
ImageOps = pytest.importorskip("PIL.ImageOps")
tifffile = pytest.importorskip("tifffile")
pypng = pytest.importorskip("png")

# Pillow warns past 89 M pixels (PIL.Image.MAX_IMAGE_PIXELS) before genrt refuses the bombs made here.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

RNG = np.random.default_rng(0)
H, W = 12, 17  # not square, so a transpose cannot pass for the identity


def noise(shape, dtype=np.uint8):
    return RNG.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def smooth(shape, dtype=np.uint8):
    """A gradient with a little noise: lossy codecs keep it within a few levels."""
    h, w = shape[:2]
    top = np.iinfo(dtype).max
    y, x = np.mgrid[0:h, 0:w]
    base = (x / max(w - 1, 1) * 0.6 + y / max(h - 1, 1) * 0.3)[..., None] * top
    out = base + np.arange(shape[2] if len(shape) == 3 else 1) * top * 0.05
    return np.clip(out, 0, top).astype(dtype).reshape(shape)


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def spec_png16(image: np.ndarray, trns=None) -> bytes:
    """A 16-bit PNG encoded here from the PNG spec, each row with another of the five filters (Paeth included),
    so the decoder under test must undo all of them."""
    h, w, c = image.shape
    raw = image.astype(">u2").reshape(h, w * c).view(np.uint8).astype(np.int32)
    bpp = 2 * c
    left = np.zeros_like(raw)
    left[:, bpp:] = raw[:, :-bpp]
    up = np.zeros_like(raw)
    up[1:] = raw[:-1]
    upleft = np.zeros_like(raw)
    upleft[1:, bpp:] = raw[:-1, :-bpp]
    p = left + up - upleft
    pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    predictors = [np.zeros_like(raw), left, up, (left + up) // 2, paeth]
    rows = b"".join(
        bytes([y % 5]) + ((raw[y] - predictors[y % 5][y]) % 256).astype(np.uint8).tobytes() for y in range(h)
    )
    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    extra = png_chunk(b"tRNS", struct.pack(">3H", *trns)) if trns is not None else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + extra
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def planes(picture: Picture) -> np.ndarray:
    """A picture's pixels with its alpha as a last plane."""
    if picture.alpha is None:
        return picture.pixels
    return np.concatenate([picture.pixels, picture.alpha[..., None]], axis=2)


# --- Round trips ------------------------------------------------------------------------------------------------


LOSSLESS = [
    (".png", 1, np.uint8),
    (".png", 2, np.uint8),
    (".png", 3, np.uint8),
    (".png", 4, np.uint8),
    (".png", 1, np.uint16),
    (".png", 2, np.uint16),
    (".png", 3, np.uint16),
    (".png", 4, np.uint16),
    (".tif", 1, np.uint8),
    (".tif", 2, np.uint8),
    (".tif", 3, np.uint8),
    (".tiff", 4, np.uint8),
    (".tif", 1, np.uint16),
    (".tif", 2, np.uint16),
    (".tif", 3, np.uint16),
    (".tif", 4, np.uint16),
    (".bmp", 1, np.uint8),
    (".bmp", 3, np.uint8),
]


@pytest.mark.parametrize("suffix, channels, dtype", LOSSLESS)
def test_lossless_round_trip_is_bit_exact(tmp_path, suffix, channels, dtype):
    image = noise((H, W, channels), dtype)
    path = write_image(tmp_path / f"a{suffix}", image)
    picture = read_image(path)
    assert picture.pixels.dtype == dtype and picture.pixels.shape == (H, W, 1 if channels < 3 else 3)
    assert (picture.alpha is not None) == (channels in (2, 4))
    np.testing.assert_array_equal(planes(picture), image)
    assert picture.source == str(path) and picture.format == {".png": "PNG", ".bmp": "BMP"}.get(suffix, "TIFF")
    np.testing.assert_array_equal(from_picture(picture, like=image), image)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_files_decode_the_same_in_an_independent_reader(tmp_path, channels):
    """16-bit PNG and TIFF written by genrt, read by tifffile (TIFF) or as Pillow's 8-bit view (the high bytes)."""
    image = noise((H, W, channels), np.uint16)
    tif = write_image(tmp_path / "a.tif", image)
    np.testing.assert_array_equal(tifffile.imread(tif).reshape(image.shape), image)
    png = write_image(tmp_path / "a.png", image)
    with Image.open(png) as im:
        if channels == 1:
            assert im.mode in ("I;16", "I")  # "I" before Pillow 10.1 or so
            np.testing.assert_array_equal(np.asarray(im), image[..., 0])
        else:  # Pillow keeps the high byte of each sample: that is why genrt does not decode these with it
            np.testing.assert_array_equal(np.asarray(im).reshape(image.shape), image >> 8)


def test_pillow_cannot_hold_16bit_rgb():
    """The reason pypng and tifffile are dependencies: Pillow has no 16-bit colour mode. If this starts failing,
    Pillow has gained one and genrt.image could use it."""
    with pytest.raises(TypeError):
        Image.fromarray(np.zeros((2, 2, 3), np.uint16))


@pytest.mark.parametrize("channels, trns", [(3, None), (4, None), (2, None), (3, (1, 2, 3))])
def test_16bit_png_from_another_encoder_with_every_filter(tmp_path, channels, trns):
    image = noise((H, W, channels), np.uint16)
    if trns is not None:
        image[0, 0] = trns
    path = tmp_path / "spec.png"
    path.write_bytes(spec_png16(image, trns))
    picture = read_image(path)
    np.testing.assert_array_equal(picture.pixels, image[..., : 1 if channels < 3 else 3])
    if trns is None:
        np.testing.assert_array_equal(planes(picture), image)
    else:  # the tRNS colour key becomes alpha: transparent exactly where the pixel has that colour
        expected = np.where(np.all(image == trns, axis=2), 0, 65535)
        np.testing.assert_array_equal(picture.alpha, expected)
        assert picture.alpha[0, 0] == 0


def test_interlaced_16bit_png(tmp_path):
    image = noise((H, W, 3), np.uint16)
    with open(tmp_path / "i.png", "wb") as f:
        pypng.Writer(W, H, greyscale=False, bitdepth=16, interlace=True).write(f, image.reshape(H, -1))
    np.testing.assert_array_equal(read_image(tmp_path / "i.png").pixels, image)


def test_16bit_tiff_from_tifffile_planar_and_premultiplied(tmp_path):
    image = noise((H, W, 3), np.uint16)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(image, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(path).pixels, image)
    alpha = np.full((H, W), 32768, np.uint16)
    premultiplied = np.rint(image * (32768 / 65535)).astype(np.uint16)
    path = tmp_path / "assoc.tif"
    tifffile.imwrite(path, np.dstack([premultiplied, alpha]), photometric="rgb", extrasamples=["assocalpha"])
    picture = read_image(path)
    np.testing.assert_array_equal(picture.alpha, alpha)
    assert np.abs(picture.pixels.astype(int) - image).max() <= 2  # undone premultiplication, to rounding


@pytest.mark.parametrize("suffix, channels, tolerance", [(".jpg", 3, 6), (".jpeg", 1, 6), (".webp", 3, 8)])
def test_lossy_round_trip_is_close(tmp_path, suffix, channels, tolerance):
    image = smooth((H * 2, W * 2, channels))
    picture = read_image(write_image(tmp_path / f"a{suffix}", image, quality=95))
    assert picture.pixels.shape == (H * 2, W * 2, channels) and picture.alpha is None
    assert np.abs(picture.pixels.astype(int) - image).max() <= tolerance


def test_webp_keeps_alpha_and_jpeg_bmp_drop_it(tmp_path):
    image = np.dstack([smooth((H, W, 3)), noise((H, W))])
    webp = read_image(write_image(tmp_path / "a.webp", image, quality=100))
    np.testing.assert_array_equal(webp.alpha, image[..., 3])  # Pillow's WebP alpha is lossless by default
    for suffix in (".jpg", ".bmp"):
        picture = read_image(write_image(tmp_path / f"a{suffix}", image))
        assert picture.alpha is None and picture.pixels.shape == (H, W, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "a.bmp").pixels, image[..., :3])


def test_16bit_is_rounded_to_8bit_where_the_format_has_no_16bit(tmp_path):
    image = np.array([[0, 128, 129, 385, 386, 65406, 65407, 65535]], np.uint16)
    picture = read_image(write_image(tmp_path / "a.bmp", image))
    assert picture.pixels.dtype == np.uint8
    np.testing.assert_array_equal(picture.pixels[..., 0], np.round(image / 257).astype(np.uint8))
    np.testing.assert_array_equal(picture.pixels[0, :, 0], [0, 0, 1, 1, 2, 254, 255, 255])


def test_quality_changes_jpeg_size(tmp_path):
    image = noise((32, 32, 3))
    small = write_image(tmp_path / "low.jpg", image, quality=10).stat().st_size
    large = write_image(tmp_path / "high.jpg", image, quality=95).stat().st_size
    assert small < large


def test_encode_png_16bit_and_metadata_decoded_by_pillow():
    icc = srgb_profile()
    exif = Image.Exif()
    exif[0x010F] = "genrt"
    data = encode_png(noise((3, 4), np.uint16), icc=icc, exif=exif.tobytes())
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode in ("I;16", "I") and im.info["icc_profile"] == icc and im.getexif()[0x010F] == "genrt"


# --- Modes Pillow reads ------------------------------------------------------------------------------------------


def test_palette_png_becomes_rgb_and_its_transparency_alpha(tmp_path):
    indices = noise((H, W)) % 4
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]
    im = Image.frombytes("P", (W, H), indices.tobytes())
    im.putpalette(palette)
    im.save(tmp_path / "p.png")
    picture = read_image(tmp_path / "p.png")
    expected = np.array(palette, np.uint8).reshape(4, 3)[indices]
    np.testing.assert_array_equal(picture.pixels, expected)
    assert picture.alpha is None
    im.save(tmp_path / "pt.png", transparency=bytes([255, 0, 255, 128]))
    picture = read_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(picture.alpha, np.array([255, 0, 255, 128], np.uint8)[indices])


def test_grey_with_alpha_and_one_bit(tmp_path):
    la = noise((H, W, 2))
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    picture = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(picture.pixels[..., 0], la[..., 0])
    np.testing.assert_array_equal(picture.alpha, la[..., 1])
    bits = noise((H, W)) > 127
    Image.fromarray(bits).save(tmp_path / "one.png")
    picture = read_image(tmp_path / "one.png")
    assert picture.pixels.dtype == np.uint8 and picture.pixels.shape == (H, W, 1)
    np.testing.assert_array_equal(picture.pixels[..., 0], bits * 255)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.fromarray(smooth((H, W, 4)), "CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        expected = np.asarray(im.convert("RGB"))
    picture = read_image(tmp_path / "cmyk.jpg")
    assert picture.icc is None
    np.testing.assert_array_equal(picture.pixels, expected)


def test_first_gif_frame(tmp_path):
    frames = [Image.fromarray(np.full((H, W, 3), v, np.uint8)).convert("P") for v in (200, 50, 120)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    picture = read_image(tmp_path / "a.gif")
    assert picture.format == "GIF" and picture.pixels.shape == (H, W, 3)
    with Image.open(tmp_path / "a.gif") as im:
        np.testing.assert_array_equal(picture.pixels, np.asarray(im.convert("RGB")))
    assert abs(int(picture.pixels[0, 0, 0]) - 200) <= 8  # the first frame, not a later one


def test_32bit_tiffs_are_refused_clearly(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", RNG.random((H, W), dtype=np.float32))
    with pytest.raises(InvalidImageError, match=r"f\.tif: 32-bit floating-point .* not supported"):
        read_image(tmp_path / "f.tif")
    tifffile.imwrite(tmp_path / "f3.tif", RNG.random((H, W, 3), dtype=np.float32), photometric="rgb")
    with pytest.raises(InvalidImageError, match=r"f3\.tif: 32-bit floating-point images are not supported"):
        read_image(tmp_path / "f3.tif")
    tifffile.imwrite(tmp_path / "i.tif", RNG.integers(0, 2**31, (H, W), dtype=np.int32))
    with pytest.raises(InvalidImageError, match="32-bit integer"):
        read_image(tmp_path / "i.tif")


def test_content_decides_the_format_not_the_suffix(tmp_path):
    image = noise((H, W, 3))
    write_image(tmp_path / "a.png", image)
    (tmp_path / "a.png").rename(tmp_path / "really-a-png.jpg")
    picture = read_image(tmp_path / "really-a-png.jpg")
    assert picture.format == "PNG"
    np.testing.assert_array_equal(picture.pixels, image)


# --- Metadata ----------------------------------------------------------------------------------------------------


def exif_with(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "genrt-test"  # Make: must survive untouched
    return exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    image = noise((H, W, 4))
    Image.fromarray(image).save(tmp_path / "o.png", exif=exif_with(orientation))
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    picture = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(planes(picture), expected)
    exif = Image.Exif()
    exif.load(picture.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "genrt-test"


def test_jpeg_with_orientation_6_is_rotated(tmp_path):
    image = smooth((H, W, 3))
    image[:2, :2] = 255  # a white corner: top-left before, top-right after a quarter turn clockwise
    Image.fromarray(image).save(tmp_path / "o.jpg", exif=exif_with(6), quality=95)
    picture = read_image(tmp_path / "o.jpg")
    assert picture.pixels.shape == (W, H, 3)
    plain = read_image(write_image(tmp_path / "plain.jpg", image))
    np.testing.assert_allclose(picture.pixels, np.rot90(plain.pixels, -1), atol=12)
    assert picture.pixels[0, -1].min() > 200
    assert picture.exif.startswith(b"Exif\x00\x00")
    with Image.open(write_image(tmp_path / "again.jpg", picture)) as im:  # written upright, says so
        assert im.getexif()[0x0112] == 1 and im.size == (H, W)


def test_orientation_of_16bit_png_and_tiff(tmp_path):
    image = noise((H, W, 3), np.uint16)
    png = tmp_path / "o.png"
    png.write_bytes(encode_png(image, exif=exif_with(8)))
    picture = read_image(png)
    np.testing.assert_array_equal(picture.pixels, np.rot90(image, 1))
    assert picture.pixels.flags.c_contiguous
    tif = tmp_path / "o.tif"
    tifffile.imwrite(tif, image, photometric="rgb", extratags=[(274, "H", 1, 3, True)])
    np.testing.assert_array_equal(read_image(tif).pixels, image[::-1, ::-1])


@pytest.mark.parametrize(
    "suffix, channels, dtype",
    [(".png", 3, np.uint8), (".jpg", 3, np.uint8), (".webp", 4, np.uint8), (".tif", 3, np.uint8)]
    + [(".png", 3, np.uint16), (".tif", 4, np.uint16), (".png", 1, np.uint16)],
)
def test_icc_profile_is_kept(tmp_path, suffix, channels, dtype):
    icc = srgb_profile()
    planes_ = noise((H, W, channels), dtype)
    picture = to_picture(planes_)
    picture = Picture(picture.pixels, picture.alpha, icc=icc, exif=exif_with(1))
    if channels == 1:  # an RGB profile does not fit grey pixels: left out
        path = write_image(tmp_path / f"a{suffix}", picture)
        assert read_image(path).icc is None
        return
    path = write_image(tmp_path / f"a{suffix}", picture)
    assert read_image(path).icc == icc
    if dtype == np.uint8:
        with Image.open(path) as im:
            assert im.info["icc_profile"] == icc and im.getexif()[0x010F] == "genrt-test"


def test_bmp_holds_no_metadata(tmp_path):
    picture = Picture(noise((H, W, 3)), icc=srgb_profile(), exif=exif_with(1))
    assert read_image(write_image(tmp_path / "a.bmp", picture)).icc is None


# --- Bad files ---------------------------------------------------------------------------------------------------


def good_bytes(suffix: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(noise((64, 64, 3))).save(buf, {".png": "PNG", ".jpg": "JPEG"}[suffix])
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, data",
    [
        ("truncated.png", good_bytes(".png")[: len(good_bytes(".png")) // 2]),
        ("truncated.jpg", good_bytes(".jpg")[: len(good_bytes(".jpg")) // 2]),
        ("header-only.png", good_bytes(".png")[:40]),
        ("random.png", RNG.integers(0, 256, 3000, dtype=np.uint8).tobytes()),
        ("text.png", b"this is not an image, just text with a .png name\n" * 10),
        ("empty.png", b""),
        ("bad-crc.png", good_bytes(".png")[:30] + b"\xff" + good_bytes(".png")[31:]),
        ("truncated16.png", spec_png16(noise((H, W, 3), np.uint16))[:-40]),
    ],
)
def test_bad_files_raise_invalid_image_naming_the_file(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InvalidImageError, match=name.replace(".", r"\.")) as info:
        read_image(path)
    assert isinstance(info.value, genrt.GenrtError) and isinstance(info.value, ValueError)
    assert not isinstance(info.value, ImageTooLargeError)


def test_truncated_16bit_tiff(tmp_path):
    data = io.BytesIO()
    tifffile.imwrite(data, noise((64, 64, 3), np.uint16), photometric="rgb")
    (tmp_path / "t.tif").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(InvalidImageError, match=r"t\.tif"):
        read_image(tmp_path / "t.tif")


def test_missing_files_and_folders_are_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        read_image(tmp_path / "nothing.png")
    with pytest.raises(IsADirectoryError):
        read_image(tmp_path)


def test_zero_size_header(tmp_path):
    good = good_bytes(".png")
    ihdr = b"IHDR" + struct.pack(">II", 0, 64) + good[24:29]
    zero = good[:8] + good[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + good[33:]
    (tmp_path / "zero.png").write_bytes(zero)
    with pytest.raises(InvalidImageError, match="zero.png"):
        read_image(tmp_path / "zero.png")


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header saying width x height, with the pixel data of a 1 x 1 image: a few hundred bytes, so
    only a reader that checks the header before decoding stays fast and small."""
    buf = io.BytesIO()
    Image.new("1", (1, 1)).save(buf, "PNG")
    small = buf.getvalue()
    ihdr = b"IHDR" + struct.pack(">II", width, height) + small[24:29]
    return small[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + small[33:]


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(20000, 20000))
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png: .*400000000 pixels"):  # Pillow's guard, first
        read_image(path)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ImageTooLargeError, match="MAX_IMAGE_PIXELS"):  # holds whatever max_pixels says
        read_image(path, max_pixels=10**9)
    path.write_bytes(bomb_png(11000, 11000))  # under Pillow's guard: genrt's own check, from the header
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png: 11000 x 11000 is 121,000,000 pixels, over the limit"):
        read_image(path)


def test_real_bomb_made_by_pillow_is_refused_fast(tmp_path):
    """A real 12000 x 12000 palette PNG (compresses to a few KB): over genrt's 100 M, under Pillow's 179 M."""
    path = tmp_path / "real-bomb.png"
    Image.new("P", (12000, 12000)).save(path)
    assert path.stat().st_size < 300_000 and 12000 * 12000 > DEFAULT_MAX_PIXELS
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="144,000,000 pixels, over the limit of 100,000,000"):
        read_image(path)
    assert time.perf_counter() - start < 1.0


def test_max_pixels_and_the_environment_set_the_limit(tmp_path, monkeypatch):
    path = write_image(tmp_path / "a.png", noise((100, 100)))
    with pytest.raises(ImageTooLargeError, match="over the limit of 9,999"):
        read_image(path, max_pixels=9_999)
    assert read_image(path, max_pixels=10_000).pixels.shape == (100, 100, 1)
    monkeypatch.setenv("GENRT_MAX_PIXELS", "5000")
    with pytest.raises(ImageTooLargeError):
        read_image(path)
    assert read_image(path, max_pixels=10_000).pixels.shape == (100, 100, 1)  # the argument wins
    big = tmp_path / "big.png"
    big.write_bytes(bomb_png(12000, 12000))
    monkeypatch.setenv("GENRT_MAX_PIXELS", "150_000_000")  # raised past the default: decoding starts, and fails
    with pytest.raises(InvalidImageError) as info:
        read_image(big)
    assert not isinstance(info.value, ImageTooLargeError)
    monkeypatch.setenv("GENRT_MAX_PIXELS", "lots")
    with pytest.raises(genrt.ArgumentError, match="GENRT_MAX_PIXELS"):
        read_image(path)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(genrt.ArgumentError, match="max_pixels"):
            read_image(path, max_pixels=bad)


# --- Writing -----------------------------------------------------------------------------------------------------


def test_unknown_suffix_and_bad_quality(tmp_path):
    for name in ("a.gif", "a.xyz", "noext"):
        with pytest.raises(genrt.ArgumentError, match="cannot write"):
            write_image(tmp_path / name, noise((4, 4)))
    for quality in (0, 101, 50.5, True):
        with pytest.raises(genrt.ArgumentError, match="quality"):
            write_image(tmp_path / "a.jpg", noise((4, 4)), quality=quality)
    assert list(tmp_path.iterdir()) == []


def test_uppercase_suffix(tmp_path):
    image = noise((H, W, 3))
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "A.PNG", image)).pixels, image)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp"])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, suffix):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("genrt.image.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / f"a{suffix}", noise((H, W, 3), np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_write_goes_through_a_partial_file(tmp_path, monkeypatch):
    seen = []
    real = __import__("os").replace

    def spy(src, dst):
        seen.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr("genrt.image.os.replace", spy)
    path = write_image(tmp_path / "a.png", noise((H, W)))
    assert len(seen) == 1 and seen[0][0].endswith(PARTIAL_SUFFIX) and seen[0][1] == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_write_over_an_existing_file(tmp_path):
    path = write_image(tmp_path / "a.png", noise((H, W)))
    image = noise((H, W, 3))
    write_image(path, image)
    np.testing.assert_array_equal(read_image(path).pixels, image)


# --- Conversions apps use ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(H, W), (H, W, 1), (H, W, 2), (H, W, 3), (H, W, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_numpy_in_numpy_out(shape, dtype):
    image = noise(shape, dtype)
    picture = to_picture(image)
    assert picture.pixels.shape[2] == (3 if len(shape) == 3 and shape[2] >= 3 else 1)
    assert (picture.alpha is not None) == (len(shape) == 3 and shape[2] in (2, 4))
    out = from_picture(picture, like=image)
    assert out.shape == image.shape and out.dtype == image.dtype
    np.testing.assert_array_equal(out, image)


def test_from_picture_follows_like():
    grey = Picture(noise((H, W, 1), np.uint16))
    rgba_like = noise((H, W, 4))
    out = from_picture(grey, like=rgba_like)  # grey result, like had alpha: grey + opaque alpha, like's dtype
    assert out.shape == (H, W, 2) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.round(grey.pixels[..., 0] / 257))
    assert (out[..., 1] == 255).all()
    rgb = Picture(noise((H, W, 3)), alpha=noise((H, W)))
    out = from_picture(rgb, like=noise((H, W), np.uint16))  # colourised: RGB even from a 2-D input, alpha dropped
    assert out.shape == (H, W, 3) and out.dtype == np.uint16
    np.testing.assert_array_equal(out, rgb.pixels.astype(np.uint16) * 257)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16", "P", "1", "CMYK"])
def test_pil_in_pil_out(mode):
    im = (
        Image.fromarray(noise((H, W), np.uint16))
        if mode == "I;16"
        else Image.fromarray(noise((H, W, 4))).convert(mode)
    )
    picture = to_picture(im)
    out = from_picture(picture, like=im)
    assert isinstance(out, Image.Image) and out.size == im.size
    family = {"P": "RGB", "1": "L", "CMYK": "RGB"}.get(mode, mode)
    assert out.mode == family
    if mode in ("L", "LA", "RGB", "RGBA", "I;16"):
        np.testing.assert_array_equal(np.asarray(out), np.asarray(im))


def test_pil_metadata_and_orientation_stay_as_they_came(tmp_path):
    im = Image.fromarray(noise((H, W, 3)))
    im.save(tmp_path / "o.jpg", exif=exif_with(6), icc_profile=srgb_profile())
    with Image.open(tmp_path / "o.jpg") as opened:
        picture = to_picture(opened)
        assert picture.pixels.shape == (H, W, 3)  # not turned: the caller's pixels, the caller's layout
        assert picture.icc == srgb_profile() and picture.format == "JPEG"
        assert picture.source == str(tmp_path / "o.jpg")
        exif = Image.Exif()
        exif.load(picture.exif)
        assert exif[0x0112] == 6
        out = from_picture(picture, like=opened)
        assert out.info["icc_profile"] == srgb_profile() and out.getexif()[0x0112] == 6


def test_bad_arrays_name_the_argument():
    with pytest.raises(genrt.DTypeError, match="content: expected uint8 or uint16"):
        to_picture(np.zeros((4, 4), np.float32), name="content")
    with pytest.raises(genrt.ShapeError, match=r"content: .* got shape \(4, 4, 5\)"):
        to_picture(np.zeros((4, 4, 5), np.uint8), name="content")
    with pytest.raises(genrt.ShapeError, match="image"):
        to_picture(np.zeros((0, 4), np.uint8))
    with pytest.raises(genrt.ShapeError, match="like"):
        from_picture(Picture(noise((4, 4, 3))), like=np.zeros(4, np.uint8))
    with pytest.raises(genrt.DTypeError, match="image"):
        to_picture("not an image")
    with pytest.raises(genrt.DTypeError, match="32-bit floating-point"):
        to_picture(Image.new("F", (4, 4)))


def test_picture_validates():
    with pytest.raises(genrt.DTypeError, match="pixels"):
        Picture(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(genrt.ShapeError, match="pixels"):
        Picture(np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(genrt.ShapeError, match="pixels"):
        Picture(np.zeros((2, 2), np.uint8))
    with pytest.raises(genrt.DTypeError, match="alpha"):
        Picture(np.zeros((2, 2, 3), np.uint8), alpha=np.zeros((2, 2), np.uint16))
    with pytest.raises(genrt.ShapeError, match="alpha"):
        Picture(np.zeros((2, 2, 3), np.uint8), alpha=np.zeros((2, 3), np.uint8))
    with pytest.raises(genrt.DTypeError, match="icc"):
        Picture(np.zeros((2, 2, 3), np.uint8), icc="sRGB")
    picture = Picture(np.zeros((2, 2, 1), np.uint8))
    with pytest.raises(AttributeError):
        picture.pixels = None  # frozen


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_float_round_trip_is_exact(dtype):
    picture = Picture(noise((H, W, 3), dtype))
    x = picture_to_float(picture)
    assert x.dtype == np.float32 and x.shape == (3, H, W) and 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(x, picture.pixels.transpose(2, 0, 1) / np.iinfo(dtype).max, rtol=1e-6)
    np.testing.assert_array_equal(float_to_pixels(x, dtype), picture.pixels)


def test_float_to_pixels_clips_and_rounds():
    x = np.array([-1.0, 0.0, 0.5 / 255, 0.49 / 255, 1.51 / 255, 1.0, 2.0, np.nan, np.inf], np.float32)
    out = float_to_pixels(x.reshape(1, 1, -1), np.uint8)
    assert out.shape == (1, 9, 1)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 0, 0, 2, 255, 255, 0, 255])
    with pytest.raises(genrt.DTypeError, match="dtype"):
        float_to_pixels(x.reshape(1, 1, -1), np.int16)
    with pytest.raises(genrt.DTypeError, match="x"):
        float_to_pixels(np.zeros((1, 2, 2), np.uint8), np.uint8)
    with pytest.raises(genrt.ShapeError, match="x"):
        float_to_pixels(np.zeros((2, 2), np.float32), np.uint8)


@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    c=st.sampled_from([1, 2, 3, 4]),
    sixteen=st.booleans(),
    suffix=st.sampled_from([".png", ".tif"]),
)
@settings(max_examples=40, deadline=None)
def test_any_small_shape_round_trips(tmp_path_factory, h, w, c, sixteen, suffix):
    dtype = np.uint16 if sixteen else np.uint8
    image = noise((h, w, c), dtype)
    path = write_image(tmp_path_factory.mktemp("sweep") / f"a{suffix}", image)
    picture = read_image(path)
    np.testing.assert_array_equal(from_picture(picture, like=image), image)
    np.testing.assert_array_equal(float_to_pixels(picture_to_float(picture), dtype), picture.pixels)


def test_resize():
    alpha = np.zeros((8, 10), np.uint8)
    alpha[:, 5:] = 255
    big = resize(alpha, (16, 20))
    assert big.shape == (16, 20) and big.dtype == np.uint8
    assert (big[:, :8] < 10).all() and (big[:, 12:] > 245).all()  # LANCZOS overshoot clipped, edges kept
    reference = np.asarray(Image.fromarray(alpha).resize((20, 16), Image.Resampling.LANCZOS))
    assert np.abs(big.astype(int) - reference).max() <= 1
    np.testing.assert_array_equal(resize(np.full((5, 7), 65535, np.uint16), (3, 2)), np.full((3, 2), 65535))
    with pytest.raises(genrt.ArgumentError, match="size"):
        resize(alpha, (0, 4))
    with pytest.raises(genrt.ShapeError, match="pixels"):
        resize(np.zeros((2, 2, 1, 1), np.uint8), (4, 4))
    with pytest.raises(genrt.DTypeError, match="pixels"):
        resize(np.zeros((2, 2), np.float32), (4, 4))


@pytest.mark.parametrize("dtype,channels", [(np.uint8, 3), (np.uint8, 4), (np.uint16, 3), (np.uint8, 1)])
def test_resize_colour_against_pillow(dtype, channels):
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    pixels = rng.integers(0, top + 1, (9, 13, channels)).astype(dtype)
    out = resize(pixels, (20, 31))
    assert out.shape == (20, 31, channels) and out.dtype == dtype
    for c in range(channels):  # each plane as Pillow resizes it alone, within a level of rounding
        ref = Image.fromarray(pixels[..., c].astype(np.float32)).resize((31, 20), Image.Resampling.LANCZOS)
        assert np.abs(out[..., c].astype(float) - np.clip(np.asarray(ref), 0, top)).max() <= 1.0
