"""Fuzzing genrt.image.read_image (and write_image of what it returns) with mutated valid image files.

    GENRT_FUZZ_SECONDS=600 python -m pytest -m fuzz tests/fuzz/test_fuzz_image.py -s

Seeds: PNG (8-bit RGB with iCCP and eXIf, 16-bit RGB, 16-bit grey+alpha, palette with transparency, grey+alpha),
JPEG (with EXIF, progressive), TIFF (8-bit with an orientation tag, 16-bit RGB by tifffile), WebP, BMP and GIF.
Mutations: bit flips, byte insertions and deletions, truncation, PNG chunk length changes and duplicated chunks,
and huge width/height fields in each format's header (decompression bombs). The contract: read_image and
write_image raise nothing but GenrtError subclasses (the file exists and is readable, so an OSError is a decoder's
and must be an InvalidImageError), a Picture read is well formed, and no example takes more than EXAMPLE_SECONDS.
GENRT_FUZZ_WRITE=0 leaves the write-back out (to fuzz the reader alone while a writer bug is open).
"""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
import tempfile
import warnings
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from genrt.errors import GenrtError, ImageTooLargeError, InvalidImageError
from genrt.image import Picture, encode_png, read_image, write_image
from tests.fuzz.harness import run_fuzzer, run_rounds, time_limit

FUZZ_MAX_PIXELS = 1 << 22  # read limit of the fuzzed reads: a forged size within it costs at most ~100 MB
EXAMPLE_SECONDS = 30  # one read and three writes of a <= 64x64 image: a hang if longer
SUFFIXES = (".png", ".jpg", ".tif", ".webp", ".bmp", ".gif", ".bin")  # read_image goes by content, not suffix
WRITE_BACK = (".png", ".jpg", ".tif")


def _exif(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "genrt fuzz"  # Make: a string stored outside the entry, behind an offset
    return exif.tobytes()


@cache
def seeds() -> tuple[tuple[str, bytes], ...]:
    """(name, bytes) of small valid files of every format and layout read_image handles."""
    from PIL import Image, ImageCms

    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

    def pil(image, fmt, **options):
        buf = io.BytesIO()
        image.save(buf, fmt, **options)
        return buf.getvalue()

    palette = Image.fromarray(rgb8).quantize(16)
    palette.info["transparency"] = 3
    tiff16 = io.BytesIO()
    import tifffile

    tifffile.imwrite(tiff16, rgb16, photometric="rgb", extratags=[(0x0112, 3, 1, 6, True)], metadata=None)
    out = [
        ("png-rgb8-iccp-exif", encode_png(rgb8, icc=icc, exif=_exif(6))),
        ("png-rgb16", encode_png(rgb16)),
        ("png-la16", encode_png(rgb16[..., :2])),
        ("png-palette", pil(palette, "PNG", transparency=3)),
        ("png-la8", encode_png(rgb8[..., :2])),
        ("png-grey16", encode_png(rgb16[..., 0])),
        ("jpeg-exif", pil(Image.fromarray(rgb8), "JPEG", exif=_exif(6), icc_profile=icc, quality=90)),
        ("jpeg-progressive", pil(Image.fromarray(rgb8), "JPEG", progressive=True, exif=_exif(3))),
        ("jpeg-cmyk", pil(Image.fromarray(rgb8).convert("CMYK"), "JPEG")),
        ("tiff-rgb8-orientation", pil(Image.fromarray(rgb8), "TIFF", exif=_exif(8))),
        ("tiff-rgb16-orientation", tiff16.getvalue()),
        ("tiff-grey16", pil(Image.fromarray(rgb16[..., 0]), "TIFF")),
        ("webp", pil(Image.fromarray(np.dstack([rgb8, rgb8[..., :1]])), "WEBP", quality=80, exif=_exif(6))),
        ("webp-lossless", pil(Image.fromarray(rgb8), "WEBP", lossless=True)),
        ("bmp", pil(Image.fromarray(rgb8), "BMP")),
        ("gif", pil(palette, "GIF", transparency=3)),
    ]
    return tuple(out)


# --- mutations ----------------------------------------------------------------------------------------------------

BIG = st.sampled_from([0, 1, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 20, 46341, 65500])


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, total length) of each chunk of PNG bytes, as far as they parse."""
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 12 + length
        if end > len(data):
            break
        chunks.append((pos, end - pos))
        pos = end
    return chunks


def _put(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        return data
    value &= (1 << (8 * size)) - 1
    return data[:offset] + struct.pack(fmt.upper(), value) + data[offset + size :]  # as unsigned: any bits


def _fix_png_crc(data: bytes, offset: int) -> bytes:
    if offset + 4 > len(data):
        return data
    (length,) = struct.unpack_from(">I", data, offset)
    body = data[offset + 4 : offset + 8 + length]
    return _put(data, offset + 8 + length, ">I", zlib.crc32(body))


def _huge_size(data: bytes, width: int, height: int, fix_crc: bool) -> bytes:
    """data with its header's width and height set (where the format's header is found)."""
    if data.startswith(b"\x89PNG"):
        data = _put(_put(data, 16, ">I", width), 20, ">I", height)
        return _fix_png_crc(data, 8) if fix_crc else data
    if data.startswith(b"\xff\xd8"):
        for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
            at = data.find(marker)
            if at > 0:
                return _put(_put(data, at + 5, ">H", height), at + 7, ">H", width)
        return data
    if data.startswith(b"BM"):
        return _put(_put(data, 18, "<i", width), 22, "<i", height)
    if data.startswith(b"GIF"):
        data = _put(_put(data, 6, "<H", width), 8, "<H", height)
        at = data.find(b"\x2c", 13)
        return _put(_put(data, at + 5, "<H", width), at + 7, "<H", height) if at > 0 else data
    if data[:4] in (b"II*\x00", b"MM\x00*") and len(data) >= 8:
        order = "<" if data[:2] == b"II" else ">"
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        if ifd + 2 > len(data):
            return data
        (count,) = struct.unpack_from(order + "H", data, ifd)
        for i in range(count):
            entry = ifd + 2 + 12 * i
            if entry + 12 > len(data):
                break
            tag, kind = struct.unpack_from(order + "HH", data, entry)
            if tag in (256, 257):
                value = width if tag == 256 else height
                data = _put(data, entry + 8, order + ("H" if kind == 3 else "I"), value)
        return data
    if data.startswith(b"RIFF"):
        at = data.find(b"VP8X")
        if at > 0:
            return _put(_put(data, at + 12, "<I", width - 1), at + 15, "<I", height - 1)[: len(data)]
        at = data.find(b"VP8L")
        if at > 0:
            bits = ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
            return _put(data, at + 9, "<I", bits | (data[at + 12] & 0xF0) << 24 if at + 12 < len(data) else bits)
        at = data.find(b"\x9d\x01\x2a")  # VP8 key frame start code, then 14-bit width and height
        if at > 0:
            return _put(_put(data, at + 3, "<H", width), at + 5, "<H", height)
    return data


@st.composite
def mutation(draw, size: int):
    kind = draw(
        st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite", "chunk-length", "chunk-dup", "size"])
    )
    pos = draw(st.integers(0, max(size - 1, 0)))
    if kind == "flip":
        return (kind, pos, draw(st.integers(0, 7)))
    if kind in ("insert", "overwrite"):
        return (kind, pos, draw(st.binary(min_size=1, max_size=16)))
    if kind == "delete":
        return (kind, pos, draw(st.integers(1, 64)))
    if kind == "truncate":
        return (kind, pos, None)
    if kind in ("chunk-length", "chunk-dup"):
        return (kind, draw(st.integers(0, 32)), draw(BIG | st.integers(0, 4096)))
    return (kind, draw(BIG), draw(BIG), draw(st.booleans()))


def mutate(data: bytes, op: tuple) -> bytes:
    kind = op[0]
    if kind == "flip":
        pos = min(op[1], len(data) - 1)
        return data[:pos] + bytes([data[pos] ^ (1 << op[2])]) + data[pos + 1 :] if data else data
    if kind == "insert":
        return data[: op[1]] + op[2] + data[op[1] :]
    if kind == "overwrite":
        return data[: op[1]] + op[2] + data[op[1] + len(op[2]) :]
    if kind == "delete":
        return data[: op[1]] + data[op[1] + op[2] :]
    if kind == "truncate":
        return data[: op[1]]
    if kind == "size":
        return _huge_size(data, op[1], op[2], op[3])
    chunks = _png_chunks(data) if data.startswith(b"\x89PNG") else []
    if not chunks:
        return data
    offset, length = chunks[op[1] % len(chunks)]
    if kind == "chunk-length":
        return _put(data, offset, ">I", op[2])
    return data[: offset + length] + data[offset : offset + length] + data[offset + length :]  # chunk-dup


@st.composite
def image_case(draw):
    name, data = draw(st.sampled_from(seeds()))
    for op in draw(st.lists(mutation(len(data)), min_size=0, max_size=4)):
        data = mutate(data, op)
    return name, data, draw(st.sampled_from(SUFFIXES))


# --- the contract -------------------------------------------------------------------------------------------------


def check_picture(picture: Picture, path: Path) -> None:
    assert isinstance(picture, Picture)
    p = picture.pixels
    assert p.dtype in (np.uint8, np.uint16) and p.ndim == 3 and p.shape[2] in (1, 3), (p.dtype, p.shape)
    assert 1 <= p.shape[0] * p.shape[1] <= FUZZ_MAX_PIXELS and p.flags.c_contiguous
    if picture.alpha is not None:
        assert picture.alpha.dtype == p.dtype and picture.alpha.shape == p.shape[:2]
    assert picture.icc is None or (isinstance(picture.icc, bytes) and picture.icc)
    assert picture.exif is None or (isinstance(picture.exif, bytes) and picture.exif.startswith(b"Exif\x00\x00"))
    assert picture.source == str(path) and picture.format in ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")


def check_case(case, folder: Path) -> None:
    name, data, suffix = case
    path = folder / f"input{suffix}"
    path.write_bytes(data)
    with time_limit(EXAMPLE_SECONDS, "a read or write"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning, tifffile's notes on odd files
            try:
                picture = read_image(path, max_pixels=FUZZ_MAX_PIXELS)
            except GenrtError:
                return
            check_picture(picture, path)
            for ext in WRITE_BACK if os.environ.get("GENRT_FUZZ_WRITE", "1") != "0" else ():
                target = folder / f"out{ext}"
                try:
                    write_image(target, picture)
                except GenrtError:
                    continue
                assert target.stat().st_size > 0


def fuzz_image(seconds: float, seed: int) -> None:
    """The fuzzer (run by the harness in a child process)."""
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # its notes on each damaged file drown the report
    seeds()  # built once, outside the timed rounds
    with tempfile.TemporaryDirectory(prefix="genrt-fuzz-image-") as tmp:
        run_rounds("fuzz_image", image_case(), lambda case: check_case(case, Path(tmp)), seconds=seconds, seed=seed)


@pytest.mark.fuzz
def test_fuzz_read_image():
    run_fuzzer("tests.fuzz.test_fuzz_image:fuzz_image")


# --- fixed cases (fast, not marked fuzz) ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [name for name, _ in seeds()])
def test_seeds_read_and_write_back(name, tmp_path):
    check_case((name, dict(seeds())[name], ".bin"), tmp_path)
    assert read_image(tmp_path / "input.bin").pixels.size > 0


@pytest.mark.filterwarnings("ignore:Image size")  # Pillow's DecompressionBombWarning: what this test makes
@pytest.mark.parametrize("name", [name for name, _ in seeds()])
def test_forged_huge_size_is_refused_from_the_header(name, tmp_path):
    path = tmp_path / "bomb"
    path.write_bytes(_huge_size(dict(seeds())[name], 60000, 60000, fix_crc=True))
    with pytest.raises(InvalidImageError):  # ImageTooLargeError where the header says so, else corrupt
        read_image(path)


def test_png_bomb_is_too_large(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_huge_size(dict(seeds())["png-rgb8-iccp-exif"], 0x7FFFFFFF, 0x7FFFFFFF, fix_crc=True))
    with pytest.raises(ImageTooLargeError, match="bomb.png"):
        read_image(path)


def test_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with time_limit(10, "a read or write"):  # opening a FIFO with no writer blocks forever
        with pytest.raises(InvalidImageError, match="pipe.png.*not a regular file"):
            read_image(fifo)


def test_socket_is_refused(tmp_path):
    path = tmp_path / "sock.png"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(InvalidImageError, match="sock.png.*not a regular file"):
            read_image(path)
    finally:
        server.close()


def test_device_is_refused():
    with pytest.raises(InvalidImageError, match="/dev/null.*not a regular file"):
        read_image("/dev/null")


def test_symlink_to_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "link.png").symlink_to(fifo)
    with pytest.raises(InvalidImageError, match="link.png"):
        read_image(tmp_path / "link.png")


def test_symlink_to_an_image_is_read(tmp_path):
    (tmp_path / "a.png").write_bytes(dict(seeds())["png-la8"])
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    assert read_image(tmp_path / "link.png").pixels.shape == (12, 10, 1)


@pytest.mark.parametrize("kind", ["dangling", "loop", "missing", "folder"])
def test_unopenable_paths_are_oserrors(tmp_path, kind):
    path = tmp_path / "x.png"
    if kind == "dangling":
        path.symlink_to(tmp_path / "gone.png")
    elif kind == "loop":
        path.symlink_to(tmp_path / "y.png")
        (tmp_path / "y.png").symlink_to(path)
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(OSError) as info:  # the folder engine reports these per file
        read_image(path)
    assert str(path) in str(info.value) or info.value.filename == str(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_a_permission_error(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(dict(seeds())["png-la8"])
    path.chmod(0)
    with pytest.raises(PermissionError):
        read_image(path)
