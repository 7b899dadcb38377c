"""`-` as the input or the output of the app commands: `cat a.jpg | genrt stylize style-gravel - -o - > b.png`.

The commands run in child processes with real pipes: stdout must hold the image's bytes and nothing else, and give
the pixels the same command gives through files.
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genrt as genrt_package
from genrt.errors import InvalidImageError
from genrt.image import Picture, decode_image, encode_image, format_suffix, read_image, write_image


def genrt(*argv, stdin: bytes = b"", cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "genrt.cli", *map(str, argv)], input=stdin, capture_output=True, cwd=cwd, timeout=120
    )


def photo(h=24, w=32, channels=3, dtype=np.uint8, seed=0) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top, (h, w, channels), endpoint=True).astype(dtype)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipes")
    paths = {
        "jpg": write_image(folder / "a.jpg", photo()),
        "png": write_image(folder / "a.png", photo(seed=1)),
        "png16": write_image(folder / "a16.png", photo(seed=2, dtype=np.uint16)),
        "rgba": write_image(folder / "cutout.png", photo(seed=3, channels=4)),
    }
    return folder, paths


def pixels_of(data: bytes) -> Picture:
    return decode_image(data, name="stdout")


# --- genrt.image: bytes in, bytes out -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "PNG", ".png", "JPEG"])
def test_encode_decode_round_trip(fmt):
    image = photo()
    picture = decode_image(encode_image(image, fmt, quality=100))
    assert picture.source is None and picture.format == {"jpg": "JPEG", "tif": "TIFF"}.get(
        fmt.lower().lstrip("."), fmt.upper().lstrip(".")
    )
    if fmt.lower().lstrip(".") in ("png", "tif", "tiff", "bmp"):
        np.testing.assert_array_equal(picture.pixels, image)


def test_bytes_read_as_the_file_reads(tmp_path):
    image = photo(dtype=np.uint16, channels=4)
    path = write_image(tmp_path / "deep.png", image)
    from_file, from_bytes = read_image(path), decode_image(path.read_bytes())
    assert from_bytes.pixels.dtype == np.uint16
    np.testing.assert_array_equal(from_bytes.pixels, from_file.pixels)
    np.testing.assert_array_equal(from_bytes.alpha, from_file.alpha)
    assert (from_file.source, from_bytes.source) == (str(path), None)


def test_bytes_errors_are_one_line():
    for data, words in ((b"", "empty"), (b"hello, world", "not an image"), (encode_image(photo(), "png")[:60], "PNG")):
        with pytest.raises(InvalidImageError, match=words) as info:
            decode_image(data, name="stdin")
        assert str(info.value).startswith("stdin: ") and "\n" not in str(info.value)


def test_format_names():
    assert [format_suffix(f) for f in ("JPEG", "png", ".TIF", "WEBP", "GIF", None)] == [
        ".jpg", ".png", ".tif", ".webp", None, None
    ]  # fmt: skip


# --- the CLI ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, out_format", [("jpg", "JPEG"), ("png", "PNG"), ("png16", "PNG")])
def test_stdin_to_stdout_equals_the_file_run(inputs, kind, out_format):
    folder, paths = inputs
    source = paths[kind]
    piped = genrt("stylize", "style-gravel", "-", "-o", "-", "--strength", "0.7", stdin=source.read_bytes())
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stderr == b""  # no progress bar, no summary: a pipe says nothing when it works
    picture = pixels_of(piped.stdout)
    assert picture.format == out_format  # the input's own format
    target = folder / f"{kind}-styled{source.suffix}"
    filed = genrt("stylize", "style-gravel", source, "-o", target, "--strength", "0.7", "--overwrite")
    assert filed.returncode == 0, filed.stderr.decode()
    assert piped.stdout == target.read_bytes()  # the very same file
    if kind == "png16":
        assert picture.pixels.dtype == np.uint16


def test_format_flag_and_file_output(inputs, tmp_path):
    _, paths = inputs
    data = paths["rgba"].read_bytes()
    for flag in ("--format", "--ext"):
        result = genrt("upscale", "sr-x4", "-", "-o", "-", flag, "webp", stdin=data)
        assert result.returncode == 0, result.stderr.decode()
        picture = pixels_of(result.stdout)
        assert picture.format == "WEBP" and picture.pixels.shape == (96, 128, 3) and picture.alpha is not None
    result = genrt("stylize", "style-gravel", "-", "-o", tmp_path / "b.tif", stdin=paths["jpg"].read_bytes())
    assert result.returncode == 0 and result.stdout == b"" and result.stderr == b""
    assert read_image(tmp_path / "b.tif").format == "TIFF"
    result = genrt("stylize", "style-gravel", paths["jpg"], "-o", "-", "--format", "png")
    assert result.returncode == 0 and pixels_of(result.stdout).format == "PNG"


def test_redirect_to_a_file_takes_its_suffix(inputs, tmp_path):
    _, paths = inputs
    out = tmp_path / "b.png"
    command = f"cat {paths['jpg']} | {sys.executable} -m genrt.cli stylize style-gravel - -o - > {out}"
    result = subprocess.run(command, shell=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert read_image(out).format == ("PNG" if os.path.isdir("/proc/self/fd") else "JPEG")


def test_inpaint_pipe_with_a_mask(inputs, tmp_path):
    folder, paths = inputs
    mask = np.zeros((24, 32), np.uint8)
    mask[8:16, 10:20] = 255
    write_image(tmp_path / "hole.png", mask)
    result = genrt("inpaint", "inpaint-faces", "-", "--mask", tmp_path / "hole.png", "-o", "-", "--blend", "none",
                   stdin=paths["png"].read_bytes())  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    out, before = pixels_of(result.stdout).pixels, read_image(paths["png"]).pixels
    np.testing.assert_array_equal(out[mask == 0], before[mask == 0])
    assert not np.array_equal(out[mask > 0], before[mask > 0])


class _Bytes(io.BytesIO):
    def isatty(self):
        return False


def in_process(argv, stdin: bytes, monkeypatch, capsys) -> tuple[int, bytes, str]:
    """genrt.cli.main with stdin / stdout as bytes (not terminals): (status, stdout's bytes, stderr)."""
    from genrt import cli

    capsys.readouterr()
    stdout = io.TextIOWrapper(_Bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(_Bytes(stdin)))
    monkeypatch.setattr(sys, "stdout", stdout)
    status = cli.main([str(a) for a in argv])
    stdout.flush()
    return status, stdout.buffer.getvalue(), capsys.readouterr().err


def test_bad_bytes_in_a_real_pipe():
    result = genrt("stylize", "style-gravel", "-", "-o", "-", stdin=b"hello")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode().splitlines() == [
        "genrt: error: stdin: not an image genrt reads (PNG, JPEG, WebP, TIFF, BMP or GIF)"
    ]


@pytest.mark.parametrize(
    "argv, stdin, words",
    [
        (["-", "-o", "-"], b"GIF89a but not really", "stdin: truncated or corrupt GIF"),
        (["-", "-o", "-"], b"\x00" * 100, "stdin: not an image"),
        (["-", "-o", "-"], b"", "stdin is empty"),
        (["-", "{jpg}", "-o", "-"], b"", "give - alone"),
        (["{jpg}", "{png}", "-o", "-"], b"", "stdout takes one image"),
        (["{folder}", "-o", "-"], b"", "is a folder"),
        (["-", "-o", "{folder}"], b"", "-o is an image file path"),
        (["-", "-o", "{folder}/x.png", "--format", "jpg"], b"", "disagree"),
        (["-", "-o", "{jpg}"], b"", "exists; --overwrite"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(inputs, argv, stdin, words, monkeypatch, capsys):
    folder, paths = inputs
    argv = [a.format(folder=folder, **paths) for a in argv]
    before = {p: p.read_bytes() for p in paths.values()}
    status, out, err = in_process(["stylize", "style-gravel", *argv], stdin, monkeypatch, capsys)
    assert (status, out) == (2, b"")
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("genrt: error: ") and words in lines[0], lines
    assert before == {p: p.read_bytes() for p in paths.values()}


def test_inpaint_masks_folder_needs_a_file_name(inputs, tmp_path, monkeypatch, capsys):
    _, paths = inputs
    (tmp_path / "masks").mkdir()
    argv = ["inpaint", "inpaint-faces", "-", "--masks", tmp_path / "masks", "-o", "-"]
    status, out, err = in_process(argv, paths["png"].read_bytes(), monkeypatch, capsys)
    assert (status, out) == (2, b"") and "--masks: masks are matched by input file name" in err


def test_never_writes_over_the_model_or_stdins_file(inputs, tmp_path):
    folder, paths = inputs
    target = folder / "victim.png"
    target.write_bytes(paths["png"].read_bytes())
    with open(target, "rb") as f:
        result = subprocess.run(
            [sys.executable, "-m", "genrt.cli", "stylize", "style-gravel", "-", "-o", target, "--overwrite"],
            stdin=f, capture_output=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 2 and b"stdin is read from it" in result.stderr
    assert target.read_bytes() == paths["png"].read_bytes()
    model = tmp_path / "m.onnx"
    model.write_bytes((Path(genrt_package.__file__).parent / "models" / "style-gravel.onnx").read_bytes())
    copy = tmp_path / "m.png"
    os.link(model, copy)  # the model under an image's name
    result = genrt("stylize", model, "-", "-o", copy, "--overwrite", stdin=paths["png"].read_bytes())
    assert result.returncode == 2 and b"refusing to write over input" in result.stderr


def test_cli_in_process_writes_only_the_image(inputs, monkeypatch, capsys):
    """genrt.cli.main with stdin / stdout replaced: the bytes, flushed, and nothing on stderr."""
    _, paths = inputs
    argv = ["stylize", "style-gravel", "-", "-o", "-", "--format", "bmp"]
    status, out, err = in_process(argv, paths["jpg"].read_bytes(), monkeypatch, capsys)
    assert (status, err) == (0, "")
    assert pixels_of(out).format == "BMP"
