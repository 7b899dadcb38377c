"""Hostile input and faults (the folder engine, the CLI, images, tiles): each numbered finding of the hostile-input
review has a test here that failed before its fix. Model files (bundles, metadata, memory estimates, the cache) are
in tests/runtime/test_hostile_models.py; the fuzzers in tests/fuzz/.

References: Pillow (ImageOps.exif_transpose, its EXIF reader), ONNX Runtime run directly on the model file, and
sha256 of every input.
"""

import hashlib
import io
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageOps

import genrt
from genrt import batch, workspace
from genrt.cli import main
from genrt.errors import GenrtError
from genrt.image import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]


def photo(path: Path, size=(24, 32), seed=0, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, **save)
    return path


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# --- 1. An input photo was overwritten --------------------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_input_that_the_output_naming_produces_is_refused(tmp_path, capsys, overwrite):
    d = tmp_path / "d"
    photo(d / "a.jpg", seed=1)
    photo(d / "a.png", seed=2)
    before = digests(d)
    argv = ["stylize", "style-retina", str(d), "-o", str(d), "--suffix", "", "--ext", "png", *overwrite]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to write over input" in err[0]
    assert str(d / "a.png") in err[0] and str(d / "a.jpg") in err[0], err  # names both files
    assert digests(d) == before  # nothing written, nothing skipped as if genrt had made it


def test_same_folder_runs_resume_from_genrts_own_list(tmp_path, capsys):
    d = tmp_path / "d"
    photo(d / "a.png", seed=1)
    photo(d / "b.png", seed=2)
    argv = ["stylize", "style-retina", str(d), "-o", str(d)]
    assert main(argv) == 0
    assert sorted(batch.read_made_list(d)) == ["a-styled.png", "b-styled.png"]
    assert main(argv) == 0  # the outputs are genrt's: skipped, not taken as photos
    assert "0 done, 2 skipped" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().err


def test_a_photo_with_an_outputs_name_is_an_input(tmp_path, capsys):
    d = tmp_path / "d"
    photo(d / "a.png", seed=1)
    photo(d / "a-styled.png", seed=2)  # the user's own photo, not genrt's output
    before = digests(d)
    for extra in ([], ["--overwrite"]):
        assert main(["stylize", "style-retina", str(d), "-o", str(d), *extra]) == 2
        err = capsys.readouterr().err
        assert "refusing to write over input" in err and "a-styled.png" in err
    assert digests(d) == before


def test_an_output_changed_after_genrt_wrote_it_is_an_input(tmp_path, capsys):
    d = tmp_path / "d"
    photo(d / "a.png", seed=1)
    assert main(["stylize", "style-retina", str(d), "-o", str(d)]) == 0
    photo(d / "a-styled.png", seed=7, size=(30, 30))  # replaced by a photo of another size
    assert main(["stylize", "style-retina", str(d), "-o", str(d), "--overwrite"]) == 2
    assert "refusing to write over input" in capsys.readouterr().err


def test_a_run_killed_between_its_write_and_its_list_still_resumes(tmp_path, capsys):
    d = tmp_path / "d"
    photo(d / "a.png", seed=1)
    write_image(d / "a-styled.png", np.zeros((4, 4, 3), np.uint8))
    (d / batch.MADE_LIST).write_text('{"name": "a-styled.png"}\n')  # the line written before the work began
    assert main(["stylize", "style-retina", str(d), "-o", str(d)]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["folder", "glob"])
def test_an_output_folder_inside_the_input_folder_is_not_scanned(tmp_path, capsys, how):
    d = tmp_path / "d"
    photo(d / "a.png", seed=1)
    photo(d / "sub" / "b.png", seed=2)
    inputs = [str(d)] if how == "folder" else [str(d / "**" / "*.png")]
    argv = ["stylize", "style-retina", *inputs, "-r", "-o", str(d / "out")]
    assert main(argv) == 0
    assert main(argv) == 0  # the second run finds only the two photos, both done
    assert "0 done, 2 skipped" in capsys.readouterr().err
    made = sorted(str(p.relative_to(d / "out")) for p in (d / "out").rglob("*.png"))
    assert made == ["a-styled.png", "sub/b-styled.png"]  # no out/out/a-styled-styled.png


def test_a_mask_is_an_input_too(tmp_path, capsys):
    src = photo(tmp_path / "a.png")
    hole = np.zeros((24, 32), np.uint8)
    hole[5:10, 5:10] = 255
    (tmp_path / "masks").mkdir()
    Image.fromarray(hole).save(tmp_path / "masks" / "a.png")
    before = digests(tmp_path / "masks")
    assert main(["inpaint", "inpaint-photos", str(src), "--mask", str(tmp_path / "masks" / "a.png"), "-o",
                 str(tmp_path / "masks" / "a.png")]) == 2  # fmt: skip
    assert main(["inpaint", "inpaint-photos", str(src), "--masks", str(tmp_path / "masks"), "-o",
                 str(tmp_path / "masks"), "--suffix", ""]) == 2  # fmt: skip
    assert capsys.readouterr().err.count("refusing to write over input") == 2
    assert digests(tmp_path / "masks") == before


def test_a_failed_jobs_list_line_does_not_vouch_for_a_later_photo(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.png").write_bytes(b"not an image")  # fails: its "writing" line is followed by a "gone" one
    assert main(["stylize", "style-retina", str(d), "-o", str(d)]) == 1
    assert "a-styled.png" not in batch.read_made_list(d)
    photo(d / "a.png", seed=1)
    photo(d / "a-styled.png", seed=2)  # a photo that has taken the output's name since
    assert main(["stylize", "style-retina", str(d), "-o", str(d), "--overwrite"]) == 2
    assert "refusing to write over input" in capsys.readouterr().err


def test_a_hard_link_to_an_input_is_refused(tmp_path, capsys):
    src = photo(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    os.link(src, tmp_path / "out" / "a-styled.png")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    assert main(["stylize", "style-retina", str(src), "-o", str(tmp_path / "out")]) == 2
    assert "refusing to write over input" in capsys.readouterr().err
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before


# --- 2. One file stopped a whole batch with a traceback -----------------------------------------------------------


def test_an_exif_block_too_long_for_jpeg_does_not_stop_the_batch(tmp_path, capsys):
    d = tmp_path / "d"
    exif = Image.Exif()
    exif[0x010E] = "x" * (2 << 20)  # ImageDescription: a 2 MB EXIF block in a PNG's eXIf chunk
    photo(d / "big.png", seed=1, exif=exif.tobytes())
    photo(d / "small.png", seed=2)
    assert main(["stylize", "style-retina", str(d), "-o", str(tmp_path / "out"), "--ext", "jpg"]) == 0
    assert "2 done, 0 skipped (already there), 0 failed" in capsys.readouterr().err
    out = Image.open(tmp_path / "out" / "big-styled.jpg")
    assert out.size == (32, 24) and out.format == "JPEG"  # whole, without the EXIF no JPEG can hold


def test_an_unexpected_exception_fails_its_file_with_one_line_and_a_log(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path / "cache"))
    jobs = batch.plan([photo(tmp_path / "a.png"), photo(tmp_path / "b.png")], tmp_path / "out")

    def work(job):
        if job.source.name == "a.png":
            return {}["no such key"]  # a KeyError: neither a GenrtError nor an OSError
        write_image(job.target, read_image(job.source))

    log = io.StringIO()
    report = batch.run(jobs, work, log=log)
    assert [j.source.name for j in report.done] == ["b.png"] and report.exit_code == 1
    lines = log.getvalue().strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in log.getvalue()
    assert lines[0].startswith(f"failed {tmp_path / 'a.png'}: internal error (KeyError: 'no such key'), details in ")
    logged = Path(lines[0].rpartition("details in ")[2]).read_text()
    assert "Traceback" in logged and "no such key" in logged and "a.png" in logged


def test_the_cli_turns_an_unexpected_exception_into_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(genrt.cli, "_cmd_models", lambda args: 1 / 0)
    assert main(["models"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genrt: internal error (ZeroDivisionError: division by zero)")
    assert "Traceback" in Path(err[0].rpartition("details in ")[2]).read_text()


# --- 4. Silent wrong pictures from bad numbers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["stylize", "style-multi", "--style", "retina=nan,brick=1"],
        ["stylize", "style-multi", "--style", "retina=inf"],
        ["stylize", "style-multi", "--style", "retina=-1,brick=2"],
        ["stylize", "style-multi", "--style", "retina=0,brick=0"],
        ["stylize", "style-multi", "--style", "retina=1,retina=2"],
        ["stylize", "style-multi", "--style", "nosuchstyle"],
        ["stylize", "style-retina", "--strength", "nan"],
        ["stylize", "style-retina", "--strength", "inf"],
        ["stylize", "style-retina", "--strength", "-0.5"],
        ["stylize", "style-retina", "--tile", "1"],
        ["stylize", "style-retina", "--tile", "155"],  # 2 * margin 76 + multiple 4 = 156 at least
        ["stylize", "style-retina", "--tile", "-3"],
        ["stylize", "style-retina", "--threads", "0"],
        ["upscale", "sr-x4", "--tile", "3"],
        ["upscale", "sr-x4", "--tile-pad", "-1"],
        ["upscale", "sr-x4", "-s", "nan"],
        ["upscale", "sr-x4", "-s", "0"],
        ["upscale", "sr-x4", "-s", "1e400"],
        ["inpaint", "inpaint-photos", "--rect", "0,0,0,5"],
    ],
)
def test_bad_numbers_are_refused_before_any_work(tmp_path, capsys, argv):
    src = photo(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main([*argv[:2], str(src), "-o", str(out), *argv[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genrt: error:"), err
    assert not out.exists()


def test_huge_style_weights_mix_like_equal_ones():
    model = genrt.load("style-multi")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    huge = model.stylize(image, style={"retina": 1e308, "brick": 1e308})
    equal = model.stylize(image, style={"retina": 1, "brick": 1})
    assert np.array_equal(huge, equal) and huge.std() > 10  # not a flat grey


# --- 5. EXIF orientation stored as a LONG ---------------------------------------------------------------------------


def exif_with_orientation(order: bytes, kind: int, value: int) -> bytes:
    o = "<" if order == b"II" else ">"
    field = struct.pack(o + {3: "H", 4: "I"}[kind], value).ljust(4, b"\0")
    ifd = struct.pack(o + "H", 1) + struct.pack(o + "HHI", 0x0112, kind, 1) + field + struct.pack(o + "I", 0)
    return b"Exif\0\0" + order + struct.pack(o + "HI", 42, 8) + ifd


@pytest.mark.parametrize("order", [b"II", b"MM"])
@pytest.mark.parametrize("kind", [3, 4], ids=["SHORT", "LONG"])
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied_once_however_it_is_stored(tmp_path, order, kind, suffix):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255
    src = tmp_path / f"in{suffix}"
    Image.fromarray(pixels).save(src, exif=exif_with_orientation(order, kind, 6), quality=95)
    assert Image.open(src).getexif().get(0x0112) == 6
    upright = np.asarray(ImageOps.exif_transpose(Image.open(src)))  # Pillow's reading is the reference
    picture = read_image(src)
    assert np.array_equal(picture.pixels, upright)
    out = tmp_path / f"out{suffix}"
    write_image(out, picture)
    assert Image.open(out).getexif().get(0x0112) == 1  # reset: no viewer turns it a second time
    assert np.asarray(ImageOps.exif_transpose(Image.open(out))).shape == upright.shape


# --- 6. kill -9 during tiled work left scratch behind -------------------------------------------------------------


@pytest.mark.slow
def test_tile_scratch_of_a_killed_run_is_removed_by_the_next(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, GENRT_CACHE_DIR=str(cache))
    src = photo(tmp_path / "big.png", size=(700, 700))
    code = textwrap.dedent(f"""
        import genrt, numpy as np
        from genrt.image import read_image
        m = genrt.load("style-retina")
        m.stylize(read_image({str(src)!r}), tile=160)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    scratch = cache / "scratch"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (scratch.is_dir() and any(scratch.iterdir())):
            time.sleep(0.05)
        assert scratch.is_dir() and any(scratch.iterdir()), "the tiled run never made its scratch folder"
        time.sleep(0.5)  # some tiles' parts written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = [p.name for p in scratch.iterdir()]
    assert left and all(f"-{proc.pid}-" in name for name in left)
    # The next run (any process) sweeps the dead process's folder before it makes its own, and removes its own.
    subprocess.run([sys.executable, "-c", code.replace("tile=160", "tile=512")], env=env, check=True)
    assert list(scratch.iterdir()) == []


def test_scratch_folders_of_live_processes_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path))
    (tmp_path / "scratch" / f"tiles-{os.getpid()}-abc").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "scratch" / f"tiles-{int(dead.stdout)}-xyz").mkdir()
    with workspace.scratch("tiles") as mine:
        assert mine.is_dir() and mine.parent == tmp_path / "scratch"
        names = sorted(p.name for p in (tmp_path / "scratch").iterdir())
        assert f"tiles-{os.getpid()}-abc" in names and not any("-xyz" in n for n in names)
    assert not mine.exists()


# --- 7. A symlink loop (and other non-files) in a folder ----------------------------------------------------------


def test_links_fifos_and_folders_named_like_images_fail_their_own_line(tmp_path):
    d = tmp_path / "d"
    photo(d / "good.png")
    os.symlink("loop.png", d / "loop.png")
    os.symlink("missing.png", d / "dangling.png")
    os.mkfifo(d / "fifo.png")
    (d / "folder.png").mkdir()  # a folder: not an input at all
    cmd = [sys.executable, "-m", "genrt.cli", "stylize", "style-retina", str(d), "-o", str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # a FIFO must never hang the run
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert sorted(line.split(":")[0] for line in lines[:-1]) == [
        f"failed {d / name}" for name in ("dangling.png", "fifo.png", "loop.png")
    ]
    assert lines[-1] == "1 done, 0 skipped (already there), 3 failed"
    assert (tmp_path / "out" / "good-styled.png").is_file()


# --- 9. Images of 1x1, 2x2, 1xN and Nx1 ---------------------------------------------------------------------------


def reference_run(name: str, x: np.ndarray, least: int, multiple: int = 1) -> np.ndarray:
    """The network through plain ONNX Runtime on x (1, 3, h, w) padded to a multiple and to at least `least` (by its
    edge pixels unless it can be reflected), cropped to its own scale."""
    path = genrt.load(name).path
    h, w = x.shape[2:]
    ph, pw = (max(n + -n % multiple, least) - n for n in (h, w))
    padded = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect" if ph < h and pw < w else "edge")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {session.get_inputs()[0].name: padded.astype(np.float32)})[0]
    s = y.shape[2] // padded.shape[2]
    return y[:, :, : h * s, : w * s]


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (1, 9), (9, 1), (3, 17)])
def test_every_size_works_in_stylize_and_upscale(size, capfd):
    image = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    x = image.transpose(2, 0, 1)[None].astype(np.float32) / 255
    style = genrt.load("style-retina")
    out = style.stylize(image)
    assert out.shape == image.shape
    least = style.min_side + -style.min_side % style.multiple
    expected = np.clip(
        np.rint(reference_run("style-retina", x, least, style.multiple)[0].transpose(1, 2, 0) * 255), 0, 255
    )
    assert np.abs(out.astype(int) - expected).max() <= 1
    sr = genrt.load("sr-x4")
    big = sr.upscale(image)
    assert big.shape == (size[0] * 4, size[1] * 4, 3)
    expected = np.clip(np.rint(reference_run("sr-x4", x, sr.min_side)[0].transpose(1, 2, 0) * 255), 0, 255)
    assert np.abs(big.astype(int) - expected).max() <= 1
    hole = np.zeros(size, bool)
    hole[0, 0] = True
    if size == (1, 1):
        with pytest.raises(GenrtError, match="covers the whole image"):
            genrt.load("inpaint-photos").inpaint(image, hole)
    else:
        filled = genrt.load("inpaint-photos").inpaint(image, hole)
        assert filled.shape == image.shape and np.array_equal(filled[~hole], image[~hole])
    assert "onnxruntime" not in capfd.readouterr().err


def test_onnx_runtimes_own_log_never_reaches_the_terminal(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("GENRT_CACHE_DIR", str(tmp_path))  # kernel choices measured afresh, in their own sessions
    model = genrt.load("sr-x4")
    with pytest.raises(GenrtError):
        model(np.zeros((1, 3, 2, 2), np.float32))  # too small for its reflection pads: ORT refuses the run
    assert capfd.readouterr().err == ""


# --- 10. A file name can forge report lines -----------------------------------------------------------------------


def test_names_cannot_split_or_forge_report_lines(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    forged = "x.png\n0 done, 0 skipped (already there), 0 failed\nfailed y"
    for name in (forged + ".png", "esc\x1b[2Jape.png", "cr\rreturn.png"):
        (d / name).write_bytes(b"not an image")
    photo(d / "good.png")
    assert main(["stylize", "style-retina", str(d), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err
    lines = err.strip().split("\n")
    assert len(lines) == 4 and all(line.startswith("failed ") for line in lines[:3])
    assert lines[-1] == "1 done, 0 skipped (already there), 3 failed"
    assert any("\\n0 done" in line for line in lines)


def test_a_walk_of_millions_of_frames_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "walk.png"
    assert main(["walk", "dcgan-digits", "--points", "4096", "--steps", "4096", "-o", str(out)]) == 2  # 16 GB
    assert "16769026 frames" in capsys.readouterr().err and not out.exists()
