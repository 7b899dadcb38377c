"""The folder engine (genrt.batch): planning files, folders and globs; resuming; bad files; Ctrl-C and kill -9.

The work callback reads with Pillow, inverts the pixels and writes through genrt.image.write_atomic, so these tests
do not depend on genrt's image layer.
"""

import argparse
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from genrt import batch
from genrt.errors import ArgumentError, GenrtError
from genrt.image import PARTIAL_SUFFIX, write_atomic

Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[1]
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".bmp": "BMP", ".webp": "WEBP"}


def pixels(name: str) -> np.ndarray:
    """A small RGB image that differs from file to file."""
    seed = sum(name.encode())
    return np.random.default_rng(seed).integers(0, 256, (6, 5, 3), dtype=np.uint8)


def make(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels(path.name))
    image.save(path, format=FORMATS[path.suffix.lower()])
    return path


def invert(job: batch.Job) -> None:
    """Reads with Pillow (a non-image raises Pillow's OSError), inverts, writes PNG or JPEG bytes atomically."""
    image = Image.open(job.source)
    try:
        rgb = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise GenrtError(f"bad image data ({exc})") from exc
    data = io.BytesIO()
    Image.fromarray(255 - rgb).save(data, format=FORMATS[job.target.suffix.lower()])
    write_atomic(job.target, data.getvalue())


def inverted(source: Path) -> np.ndarray:
    return 255 - np.asarray(Image.open(source).convert("RGB"))


def assert_inverted(target: Path, source: Path) -> None:
    """target is a complete image of source inverted (JPEG: decodes fully at the right size; it is lossy)."""
    with Image.open(target) as image:
        image.load()  # a truncated file raises here
        got = np.asarray(image.convert("RGB"))
    if target.suffix.lower() in (".jpg", ".jpeg"):
        assert image.format == "JPEG" and got.shape == inverted(source).shape
    else:
        np.testing.assert_array_equal(got, inverted(source))


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def partials(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*" + PARTIAL_SUFFIX))


@pytest.fixture
def photos(tmp_path):
    """in/ with images at the top, in a sub-folder, a hidden one, a stale partial and a text file."""
    src = tmp_path / "in"
    for name in ("a.png", "b.JPG", "c.gif", "sub/d.png", "sub/deeper/e.png", ".hidden.png", ".cache/f.png"):
        make(src / name)
    (src / "notes.txt").write_text("not an image")
    (src / f".a.png.abc123{PARTIAL_SUFFIX}").write_bytes(b"half")
    return src


def test_folder_files_and_globs(photos, tmp_path):
    other = tmp_path / "other"
    make(other / "g.PNG")
    make(other / "h.bmp")
    (other / "x.txt").write_text("no")
    out = tmp_path / "out"
    jobs = batch.plan([photos, str(other / "*"), photos / "sub" / "d.png"], out, suffix="-inv")
    assert [(j.source, j.target) for j in jobs] == [
        (photos / "a.png", out / "a-inv.png"),
        (photos / "b.JPG", out / "b-inv.JPG"),  # the input's own suffix, case kept
        (photos / "c.gif", out / "c-inv.png"),  # GIF is not written: PNG
        (other / "g.PNG", out / "g-inv.PNG"),  # suffixes in any case are images; x.txt is not
        (other / "h.bmp", out / "h-inv.bmp"),
        (photos / "sub" / "d.png", out / "d-inv.png"),
    ]
    assert not out.exists()  # planning writes nothing
    report = batch.run(jobs, invert, log=io.StringIO())
    assert report.exit_code == 0 and report.done == jobs
    for job in jobs:
        assert_inverted(job.target, job.source)


def test_work_that_writes_nothing_fails(photos, tmp_path):
    log = io.StringIO()
    report = batch.run(batch.plan([photos / "a.png"], tmp_path / "out"), lambda job: None, log=log)
    assert report.exit_code == 1
    assert (
        log.getvalue().splitlines()[0]
        == f"failed {photos / 'a.png'}: no output written to {tmp_path / 'out' / 'a.png'}"
    )


def test_recursive_keeps_subfolders(photos, tmp_path):
    out = tmp_path / "out"
    report = batch.run(batch.plan([photos], out, recursive=True, ext=".png"), invert, log=io.StringIO())
    assert report.exit_code == 0
    assert files_under(out) == ["a.png", "b.png", "c.png", "sub/d.png", "sub/deeper/e.png"]  # no hidden ones
    assert_inverted(out / "sub/deeper/e.png", photos / "sub/deeper/e.png")
    # A glob keeps the path below its first wildcard part; ** spans folders.
    jobs = batch.plan([str(photos / "**" / "*.png")], tmp_path / "g")
    assert [j.target.relative_to(tmp_path / "g").as_posix() for j in jobs] == [
        "a.png",
        "sub/d.png",
        "sub/deeper/e.png",
    ]
    jobs = batch.plan([str(photos / "*" / "*.png")], tmp_path / "g")
    assert [j.target.relative_to(tmp_path / "g").as_posix() for j in jobs] == ["sub/d.png"]


def test_suffix_ext_and_file_output(photos, tmp_path):
    out = tmp_path / "out"
    jobs = batch.plan([photos / "a.png", photos / "b.JPG"], out, suffix="-styled", ext="JPEG")
    assert [j.target for j in jobs] == [out / "a-styled.JPEG", out / "b-styled.JPEG"]
    # One input file: the output may be a file path (the suffix does not apply), in a folder made at run time.
    (job,) = batch.plan([photos / "a.png"], out / "new" / "x.jpg", suffix="-styled")
    assert job.target == out / "new" / "x.jpg"
    assert batch.run([job], invert, log=io.StringIO()).exit_code == 0
    assert Image.open(out / "new" / "x.jpg").format == "JPEG"
    # ... or a folder: an existing one, or one named with a trailing separator.
    assert batch.plan([photos / "a.png"], str(tmp_path / "dir.png") + os.sep)[0].target == tmp_path / "dir.png/a.png"
    with pytest.raises(ArgumentError, match="disagree"):
        batch.plan([photos / "a.png"], out / "x.jpg", ext="png")
    with pytest.raises(ArgumentError, match="cannot write .gif"):
        batch.plan([photos / "a.png"], out / "x.gif")
    with pytest.raises(ArgumentError, match="must be a folder"):
        batch.plan([photos], out / "x.png")
    with pytest.raises(ArgumentError, match="must be a folder"):
        batch.plan([photos / "a.png", photos / "c.gif"], out / "x.png")
    with pytest.raises(ArgumentError, match="ext: expected one of"):
        batch.plan([photos], out, ext=".gif")
    with pytest.raises(ArgumentError, match="suffix"):
        batch.plan([photos], out, suffix="x/y")
    (tmp_path / "file").write_text("")
    with pytest.raises(ArgumentError, match="not a folder"):
        batch.plan([photos], tmp_path / "file")


def test_missing_and_empty_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("")
    with pytest.raises(ArgumentError, match="input .*nope.png not found"):
        batch.plan([tmp_path / "nope.png"], tmp_path / "out")
    with pytest.raises(ArgumentError, match="no images in .*empty.*-r for sub-folders"):
        batch.plan([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ArgumentError, match="no images in .*[*].jpg"):
        batch.plan([str(tmp_path / "*.jpg")], tmp_path / "out", recursive=True)
    with pytest.raises(ArgumentError, match="not an image file"):
        batch.plan([tmp_path / "empty" / "readme.txt"], tmp_path / "out")
    with pytest.raises(ArgumentError, match="no input given"):
        batch.plan([], tmp_path / "out")
    assert files_under(tmp_path) == ["empty/readme.txt"]


def test_refuses_to_write_over_an_input_before_any_work(photos, tmp_path):
    before = files_under(tmp_path)
    cases = [
        ([photos], photos, {}),  # output folder = input folder, no suffix
        ([photos], photos / "sub" / "..", {"recursive": True}),  # the same folder spelled differently
        ([photos / "a.png"], photos / "a.png", {}),  # one file onto itself
        ([photos / "sub" / "d.png", photos / "a.png"], photos / "sub", {}),  # a.png -> sub/a.png is fine, d is not
        ([photos / "c.gif", photos / "a.png"], photos, {"suffix": ""}),  # c.gif -> c.png fine, a.png onto itself
    ]
    for inputs, output, options in cases:
        with pytest.raises(ArgumentError, match="refusing to write over input") as info:
            batch.plan(inputs, output, **options)
        assert "\n" not in str(info.value)
    # An explicitly named input that another input's output would replace.
    make(photos / "a-x.png")
    with pytest.raises(ArgumentError, match=r"refusing to write over input .*a-x.png: it would be the output of"):
        batch.plan([photos / "a.png", photos / "a-x.png"], photos, suffix="-x")
    # The same file under another name (a hard link).
    out = tmp_path / "out"
    out.mkdir()
    os.link(photos / "a.png", out / "a.png")
    with pytest.raises(ArgumentError, match="refusing to write over input"):
        batch.plan([photos / "a.png"], out)
    os.unlink(out / "a.png")
    os.unlink(photos / "a-x.png")
    assert files_under(tmp_path) == before  # nothing written, stale partial not even removed


def test_two_inputs_one_target_refused(photos, tmp_path):
    make(tmp_path / "other" / "a.jpg")
    with pytest.raises(ArgumentError, match=r"in/a.png and .*other/a.jpg would both be written to .*out/a.png"):
        batch.plan([photos, tmp_path / "other"], tmp_path / "out", ext="png")
    make(photos / "a.bmp")
    with pytest.raises(ArgumentError, match="would both be written"):
        batch.plan([photos], tmp_path / "out", ext=".png")
    # Without -r, sub-folders of several inputs meet in one folder: a.png of two folders collide.
    make(tmp_path / "two" / "a.png")
    with pytest.raises(ArgumentError, match="would both be written"):
        batch.plan([photos / "a.png", tmp_path / "two" / "*.png"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # The same file given twice is one job.
    os.unlink(photos / "a.bmp")
    jobs = batch.plan([photos / "a.png", str(photos / "*.png"), photos], tmp_path / "out", ext="png")
    assert [j.source.name for j in jobs] == ["a.png", "b.JPG", "c.gif"]


def test_resume_skips_existing_and_overwrite_redoes(photos, tmp_path):
    out = tmp_path / "out"
    jobs = batch.plan([photos], out, recursive=True)
    (out / "sub").mkdir(parents=True)
    stale = [out / f".a.png.x1y2{PARTIAL_SUFFIX}", out / "sub" / f".d.png.z_9{PARTIAL_SUFFIX}"]
    for path in stale:
        path.write_bytes(b"half an image")  # left by a kill -9
    calls = []

    def work(job):
        calls.append(job)
        invert(job)

    log = io.StringIO()
    assert batch.run(jobs, work, log=log).exit_code == 0
    assert len(calls) == 5 and log.getvalue() == "5 done, 0 skipped (already there), 0 failed\n"
    assert not partials(out) and partials(photos)  # the stale partials of targets are gone, nothing else touched
    (out / "sub" / "d.png").unlink()
    log = io.StringIO()
    report = batch.run(batch.plan([photos], out, recursive=True), work, log=log)
    assert [j.target for j in report.done] == [out / "sub" / "d.png"] and len(report.skipped) == 4
    assert log.getvalue() == "1 done, 4 skipped (already there), 0 failed\n"
    calls.clear()
    report = batch.run(jobs, work, overwrite=True, log=io.StringIO())
    assert len(report.done) == 5 and calls == jobs


def test_in_place_with_a_suffix_resumes(photos, tmp_path):
    jobs = batch.plan([photos], photos, suffix="-inv")
    assert [j.target.name for j in jobs] == ["a-inv.png", "b-inv.JPG", "c-inv.png"]
    assert len(batch.run(jobs, invert, log=io.StringIO()).done) == 3
    # A rerun: the outputs found in the folder are earlier outputs, not inputs (no a-inv-inv.png, no refusal).
    again = batch.plan([photos], photos, suffix="-inv")
    assert again == jobs
    report = batch.run(again, invert, log=io.StringIO())
    assert len(report.skipped) == 3 and not report.done


def test_corrupt_files_are_reported_and_the_run_goes_on(photos, tmp_path, capsys):
    (photos / "sub" / "garbage.png").write_bytes(b"this is not a png")  # Pillow: OSError (cannot identify)
    good = (photos / "a.png").read_bytes()
    (photos / "sub" / "deeper" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated: GenrtError
    parser = argparse.ArgumentParser()
    batch.add_arguments(parser, suffix="-inv")
    out = tmp_path / "out"
    args = parser.parse_args([str(photos), "-r", "-o", str(out), "--ext", "PNG"])
    assert batch.run_cli(args, invert) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"failed {photos / 'sub' / 'deeper' / 'cut.png'}: bad image data")
    assert err[1].startswith(f"failed {photos / 'sub' / 'garbage.png'}: cannot identify image file")
    assert err[2:] == ["5 done, 0 skipped (already there), 2 failed"]
    assert files_under(out) == ["a-inv.png", "b-inv.png", "c-inv.png", "sub/d-inv.png", "sub/deeper/e-inv.png"]
    assert not partials(out)
    # A rerun redoes only the failed ones (and fails them again).
    assert batch.run_cli(args, invert) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "0 done, 5 skipped (already there), 2 failed"


def test_workers_give_the_same_outputs_and_report(photos, tmp_path):
    (photos / "sub" / "garbage.png").write_bytes(b"junk")
    (photos / "bad.png").write_bytes(b"junk")
    delays = {}

    def slow(job):  # the first jobs finish last
        time.sleep(delays.setdefault(job.source, 0.03 / (1 + len(delays))))
        invert(job)

    results = []
    for workers in (1, 3):
        out, log = tmp_path / f"out{workers}", io.StringIO()
        report = batch.run(batch.plan([photos], out, recursive=True), slow, workers=workers, log=log)
        names = files_under(out)
        results.append(
            (
                names,
                [(out / n).read_bytes() for n in names],
                [j.target.relative_to(out) for j in report.done],
                [(j.source, reason) for j, reason in report.failed],
                log.getvalue(),
                report.exit_code,
            )
        )
    assert results[0] == results[1]
    assert results[0][4].splitlines()[-1] == "5 done, 0 skipped (already there), 2 failed"


def test_keyboard_interrupt_mid_write(photos, tmp_path, monkeypatch):
    real_replace, calls = os.replace, []

    def replace(src, dst):  # Ctrl-C while the third image is being written
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "out"
    log = io.StringIO()
    report = batch.run(batch.plan([photos], out, recursive=True), invert, log=log)
    assert report.exit_code == 130 and report.interrupted
    assert log.getvalue() == "interrupted: 2 done, 0 skipped (already there), 0 failed, 3 not started\n"
    assert files_under(out) == ["a.png", "b.JPG"] and not partials(out)
    monkeypatch.setattr(os, "replace", real_replace)
    assert batch.run(batch.plan([photos], out, recursive=True), invert, log=log).exit_code == 0
    assert files_under(out) == ["a.png", "b.JPG", "c.png", "sub/d.png", "sub/deeper/e.png"]


def test_keyboard_interrupt_with_workers(photos, tmp_path):
    # Python's own Ctrl-C handler, as in any terminal: a process started in the background by a non-interactive
    # shell inherits SIGINT ignored, and Python then installs no handler (so there would be no KeyboardInterrupt).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_with_workers(photos, tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_with_workers(photos, tmp_path):
    for i in range(8):
        make(photos / f"more{i}.png")
    started = []

    def work(job):
        started.append(job)
        if len(started) == 3:  # a real Ctrl-C: SIGINT, which Python turns into KeyboardInterrupt in the main thread
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.02)
        invert(job)

    out, log = tmp_path / "out", io.StringIO()
    jobs = batch.plan([photos], out)
    try:
        report = batch.run(jobs, work, workers=2, log=log)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped batch.run")
    assert report.exit_code == 130 and report.not_started
    assert len(report.done) + len(report.not_started) == len(jobs) == 11
    assert log.getvalue().startswith(f"interrupted: {len(report.done)} done, 0 skipped (already there), 0 failed")
    assert sorted(files_under(out)) == sorted(j.target.name for j in report.done)
    for job in report.done:  # images in flight finished: complete files only
        assert_inverted(job.target, job.source)
    assert not partials(out)
    assert not [t for t in threading.enumerate() if t.name.startswith("genrt-batch")]  # the pool is gone


KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    sys.path.insert(0, {tests!r})
    from test_batch import invert

    from genrt import batch

    real_fdopen = os.fdopen

    class Slow:  # writes half, says so, sleeps, writes the rest: a partial file exists while it sleeps
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            print("half", flush=True)
            time.sleep(0.1)
            self.f.write(data[len(data) // 2 :])

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        return Slow(f) if "w" in mode else f

    os.fdopen = fdopen
    sys.exit(batch.run(batch.plan([sys.argv[1]], sys.argv[2], recursive=True), invert, progress=False).exit_code)
    """
)


def test_kill_9_mid_run_then_rerun(photos, tmp_path):
    script = tmp_path / "engine.py"
    script.write_text(KILL_SCRIPT.format(tests=str(ROOT / "tests")))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(photos), str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    guard = threading.Timer(60, proc.kill)  # never hang the suite
    guard.start()
    try:
        for _ in range(3):  # two images written, the third half written
            assert proc.stdout.readline() == "half\n"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        guard.cancel()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert [p for p in files_under(out) if not p.startswith(".")] == ["a.png", "b.JPG"]
    assert [p.name.startswith(".c.png.") for p in partials(out)] == [True]  # c.png: only its partial file
    for name in ("a.png", "b.JPG"):  # what is under a real name is complete
        assert_inverted(out / name, photos / name)

    log = io.StringIO()
    report = batch.run(batch.plan([photos], out, recursive=True), invert, log=log)
    assert log.getvalue() == "3 done, 2 skipped (already there), 0 failed\n"
    assert not partials(out)
    assert files_under(out) == ["a.png", "b.JPG", "c.png", "sub/d.png", "sub/deeper/e.png"]
    for job in report.done + report.skipped:
        assert_inverted(job.target, job.source)


def test_remove_partials_touches_only_planned_targets(tmp_path):
    jobs = [batch.Job(tmp_path / "in" / "a.png", tmp_path / "out" / "a.png")]
    (tmp_path / "out").mkdir()
    stale = [tmp_path / "out" / f".a.png.k2j_x9{PARTIAL_SUFFIX}", tmp_path / "out" / f".a.png.q{PARTIAL_SUFFIX}"]
    kept = [tmp_path / "out" / f".a.png.x.q{PARTIAL_SUFFIX}", tmp_path / "out" / f".b.png.q{PARTIAL_SUFFIX}"]
    for p in stale + kept:
        p.write_bytes(b"")
    assert batch.remove_partials(jobs) == 2
    assert [p.exists() for p in stale + kept] == [False, False, True, True]
    assert batch.remove_partials([batch.Job(tmp_path / "a.png", tmp_path / "missing" / "a.png")]) == 0


def test_progress_bar_only_on_a_terminal(photos, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    jobs = batch.plan([photos], tmp_path / "out")
    tty = Terminal()
    batch.run(jobs, invert, log=tty, overwrite=True)
    assert "img/s" in tty.getvalue() and "3/3" in tty.getvalue()
    tty = Terminal()
    batch.run(jobs, invert, log=tty, overwrite=True, progress=False)
    assert tty.getvalue() == "3 done, 0 skipped (already there), 0 failed\n"
    plain = io.StringIO()
    batch.run(jobs, invert, log=plain, overwrite=True)
    assert plain.getvalue() == "3 done, 0 skipped (already there), 0 failed\n"


def test_command_line_arguments(photos, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    batch.add_arguments(parser, suffix="-styled")
    args = parser.parse_args([str(photos), "x.png", "-o", "out", "-r", "--ext", ".JPG", "--overwrite", "-j", "4"])
    assert (args.inputs, args.output, args.recursive, args.suffix, args.ext, args.overwrite, args.jobs) == (
        [str(photos), "x.png"], "out", True, "-styled", "jpg", True, 4,
    )  # fmt: skip
    args = parser.parse_args([str(photos), "--output", str(tmp_path / "out"), "--suffix", "", "--jobs", "2"])
    assert (args.recursive, args.suffix, args.ext, args.overwrite) == (False, "", None, False)
    assert batch.run_cli(args, invert) == 0
    assert files_under(tmp_path / "out") == ["a.png", "b.JPG", "c.png"]
    for bad in (
        ["-o", "o"],
        [str(photos)],
        [str(photos), "-o", "o", "-j", "0"],
        [str(photos), "-o", "o", "--ext", "gif"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    capsys.readouterr()
    with pytest.raises(ArgumentError, match="refusing"):
        batch.run_cli(parser.parse_args([str(photos), "-o", str(photos), "--suffix", ""]), invert)
