"""The folder engine behind genrt's application commands: files, folders and globs in, one output per image.

It knows files and targets, not models: the per-image work is a callback that reads ``job.source`` and writes
``job.target`` through :func:`genrt.image.write_atomic` (or a writer built on it), so a crash or kill -9 never
leaves a truncated file under a real name.

Example::

    jobs = plan(["photos/", "extra/*.jpg"], "styled", recursive=True, suffix="-styled", ext=".png")
    report = run(jobs, lambda job: write_atomic(job.target, encode_png(stylize(job.source))), workers=2)
    report.exit_code  # 0: all done or already there, 1: some failed, 130: interrupted

An application command is a few lines on top of argparse::

    p = sub.add_parser("stylize")
    batch.add_arguments(p, suffix="-styled")
    ...
    return batch.run_cli(args, work)

Planning is pure (nothing is created or removed) and refuses, before any work, a run that would write over an
input (the same path, the same file through a link, or an input that the output naming would produce) or write two
inputs to one target. Where the output folder is also an input folder, a file found there with an output's name is
taken as an earlier output only if genrt's list of the files it wrote there (MADE_LIST) names it; else it is a photo,
and the run is refused. Running removes stale partial files of the planned targets first, skips
targets that already exist (a rerun resumes) unless ``overwrite``, reports a bad file with one line and goes on,
and ends with a one-line summary.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TextIO

from tqdm import tqdm

from genrt.errors import ArgumentError, GenrtError, printable
from genrt.image import PARTIAL_SUFFIX
from genrt.image import READ_SUFFIXES as IMAGE_SUFFIXES  # folders and globs yield only these
from genrt.image import WRITE_SUFFIXES as WRITABLE_SUFFIXES  # an input in another (GIF) gets .png by default
from genrt.video import VIDEO_SUFFIXES  # with video=True, clips too: each keeps its container

_DEFAULT_EXT = ".png"


@dataclass(frozen=True)
class Job:
    """One image to make: read ``source``, write ``target`` (atomically).

    ``record``: the target's folder is also scanned for inputs (output folder = input folder), so the run lists the
    target in that folder's MADE_LIST: a later run then knows the file as genrt's output, not as a photo.
    """

    source: Path
    target: Path
    record: bool = field(default=False, compare=False)


@dataclass
class Report:
    """What a run did, each list in plan order whatever the number of workers.

    ``skipped``: targets already there (not redone without ``overwrite``); ``failed``: (job, one-line reason);
    ``not_started``: jobs left when the run was interrupted.
    """

    done: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, str]] = field(default_factory=list)
    not_started: list[Job] = field(default_factory=list)
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        """130 if interrupted, else 1 if any image failed, else 0."""
        return 130 if self.interrupted else 1 if self.failed else 0

    def file(self, jobs: Sequence[Job], results: dict[int, tuple[str, str]]) -> None:
        """Files each of ``jobs`` under done, failed or not_started, in order, by ``results``: {its index in jobs:
        ("done" or "failed", reason)}; a job without a result was not started."""
        for i, job in enumerate(jobs):
            if i not in results:
                self.not_started.append(job)
            elif results[i][0] == "done":
                self.done.append(job)
            else:
                self.failed.append((job, results[i][1]))

    def summary(self) -> str:
        """One line, e.g. ``"12 done, 3 skipped (already there), 1 failed"``."""
        text = f"{len(self.done)} done, {len(self.skipped)} skipped (already there), {len(self.failed)} failed"
        return f"interrupted: {text}, {len(self.not_started)} not started" if self.interrupted else text


# ---------------------------------------------------------------------------------------------------- planning


def plan(
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    recursive: bool = False,
    suffix: str = "",
    ext: str | None = None,
    protect: Sequence[str | Path] = (),
    video: bool = False,
) -> list[Job]:
    """The jobs for these inputs: one per image, in input order (files of a folder or glob sorted by path).

    inputs: files, folders (the images directly inside; with ``recursive`` the whole tree, whose sub-folders are
    kept under ``output``) and globs (``**`` spans folders; a match keeps its path below the glob's first
    wildcard part, so ``raw/*/*.png`` writes ``out/day1/a.png``). Hidden files and folders are left out of
    folders and globs, as are partial files of interrupted writes.

    output: a folder (created when the run starts) or, when ``inputs`` is exactly one image file, a file path
    with an image suffix (then ``suffix`` does not apply). Output names: the input's stem + ``suffix`` + ``ext``
    (default: the input's own suffix; .png for a GIF).

    protect: the command's other input files (a mask, the masks of --masks, the model): no target may be one.

    video: video files (genrt.video.VIDEO_SUFFIXES) are inputs too; each one's output keeps its suffix whatever
    ``ext`` says (which then applies to the images), and a single clip's output file must be a video file.

    A file found in a folder or glob whose path is the target of another input is taken as an earlier output of
    this same command (output folder = input folder with a suffix), not as an input, only where MADE_LIST says
    genrt wrote it; else it is an input and the run is refused.

    Raises ArgumentError, before anything is written: a missing input, no image at all, a target that is an input
    or a protected file (output folder = input folder without suffix, say), two inputs with one target, a bad
    suffix or ext.

    Example::

        plan(["a.jpg", "b.gif"], "out", suffix="-styled")
        # [Job(source=Path("a.jpg"), target=Path("out/a-styled.jpg")),
        #  Job(source=Path("b.gif"), target=Path("out/b-styled.png"))]
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        raise ArgumentError("no input given: expected image files, folders or globs")
    if any(sep in suffix for sep in (os.sep, os.altsep) if sep):
        raise ArgumentError(f"suffix: expected a name part such as '-styled', got {suffix!r} (a path)")
    ext = _normalize_ext(ext)
    suffixes = IMAGE_SUFFIXES + (VIDEO_SUFFIXES if video else ())

    found: list[tuple[Path, Path, bool]] = []  # (source, path relative to the output, named explicitly)
    for item in inputs:
        found.extend(_expand(item, recursive, skip=_key(Path(output)), suffixes=suffixes))
    if not found:
        names = ", ".join(str(i) for i in inputs)
        hint = "" if recursive else "; use -r for sub-folders"
        raise ArgumentError(f"no images in {names} (looked for {' '.join(suffixes)}{hint})")

    out = Path(output)
    out_text = str(output)
    single = len(inputs) == 1 and len(found) == 1 and found[0][2]
    to_file = (
        not out.is_dir()
        and not out_text.endswith(tuple(s for s in (os.sep, os.altsep) if s))
        and (out.suffix.lower() in suffixes or out.is_file())
    )
    if out.exists() and not out.is_dir() and not (to_file and single):
        raise ArgumentError(f"output {out} exists and is not a folder")
    if to_file and not single:
        raise ArgumentError(f"output {out} is a file path; with folders, globs or several inputs it must be a folder")

    if to_file:
        clip = video and found[0][0].suffix.lower() in VIDEO_SUFFIXES
        writable = VIDEO_SUFFIXES if clip else WRITABLE_SUFFIXES
        if out.suffix.lower() not in writable:
            what = " (a video)" if clip else ""
            raise ArgumentError(f"output {out}: cannot write {out.suffix}{what} (writable: {' '.join(writable)})")
        if ext is not None and ext.lower() != out.suffix.lower() and not clip:
            raise ArgumentError(f"output {out} and ext {ext} disagree: give one of them")
        candidates = [Job(found[0][0], out)]
        explicit = [True]
    else:
        candidates, explicit = [], []
        for source, rel, named in found:
            candidates.append(Job(source, out / rel.parent / output_name(source.name, suffix, ext, video=video)))
            explicit.append(named)

    return _check(candidates, explicit, [Path(p) for p in protect])


def output_name(name: str, suffix: str = "", ext: str | None = None, *, video: bool = False) -> str:
    """The output's file name for an input's file name: its stem + ``suffix`` + ``ext`` (normalized, e.g. ".png";
    default: the input's own suffix, .png for one genrt cannot write, such as .gif); with ``video``, a clip keeps its
    own suffix. The one naming rule of :func:`plan` and of genrt.distributed's URIs."""
    source = PurePath(name)
    if video and source.suffix.lower() in VIDEO_SUFFIXES:
        return source.stem + suffix + source.suffix
    own = source.suffix if source.suffix.lower() in WRITABLE_SUFFIXES else _DEFAULT_EXT
    return source.stem + suffix + (ext if ext is not None else own)


def _normalize_ext(ext: str | None) -> str | None:
    if ext is None:
        return None
    ext = ext if ext.startswith(".") else "." + ext
    if ext.lower() not in WRITABLE_SUFFIXES:
        raise ArgumentError(f"ext: expected one of {' '.join(WRITABLE_SUFFIXES)}, got {ext!r}")
    return ext


def _is_image_name(name: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> bool:
    hidden_or_partial = name.startswith(".") or name.endswith(PARTIAL_SUFFIX)
    return not hidden_or_partial and Path(name).suffix.lower() in suffixes


def _expand(
    item: str | Path, recursive: bool, skip: str = "", suffixes: tuple[str, ...] = IMAGE_SUFFIXES
) -> list[tuple[Path, Path, bool]]:
    """(source, relative output path, named explicitly) for one input argument; a recursive scan does not enter the
    folder ``skip`` (the output folder, when it lies inside an input folder: its outputs are not inputs)."""
    path = Path(item)
    if path.is_file() or (os.path.lexists(path) and not path.is_dir()):  # a FIFO or a broken link fails on reading
        if path.suffix.lower() not in suffixes or path.name.endswith(PARTIAL_SUFFIX):
            raise ArgumentError(f"input {printable(path)} is not an image file (expected {' '.join(suffixes)})")
        return [(path, Path(path.name), True)]
    if path.is_dir():
        return [(path / rel, rel, False) for rel in _scan(path, recursive, skip, suffixes)]
    text = os.fspath(item)
    if not glob.has_magic(text):
        hint = " (a URI: give --ray, which reads and writes them)" if "://" in text else ""
        raise ArgumentError(f"input {printable(text)} not found{hint}")
    parts = Path(text).parts
    base = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    matches = []
    for match in glob.glob(text, recursive=True):
        p = Path(match)
        rel = Path(*p.parts[base:])
        inside = skip and (_key(p.parent) + os.sep).startswith(skip + os.sep)  # in the output folder
        if (
            not p.is_dir()
            and _is_image_name(p.name, suffixes)
            and not inside
            and not any(x.startswith(".") for x in rel.parts[:-1])
        ):
            matches.append((p, rel, False))
    return sorted(matches, key=lambda m: m[1].parts)


def _scan(folder: Path, recursive: bool, skip: str = "", suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image paths relative to folder, sorted; hidden folders are not entered, symlinked folders not followed.

    Every entry with an image name that is not a folder is taken, so that what cannot be read (a broken or looping
    link, a FIFO, a file without read permission) fails on its own line instead of vanishing or stopping the run.
    """
    if not recursive:
        return sorted(Path(e.name) for e in os.scandir(folder) if _is_image_name(e.name, suffixes) and not _is_dir(e))
    found = []
    for root, dirs, files in os.walk(folder):  # a link looping to itself is listed among the files
        dirs[:] = [d for d in dirs if not d.startswith(".") and _key(Path(root) / d) != skip]
        rel = Path(root).relative_to(folder)
        found.extend(rel / f for f in files if _is_image_name(f, suffixes))
    return sorted(found, key=lambda p: p.parts)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link looping to itself
        return False


def _key(path: Path) -> str:
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        resolved = Path(os.path.abspath(path))
    return os.path.normcase(str(resolved))


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _check(candidates: list[Job], explicit: list[bool], protect: list[Path]) -> list[Job]:
    """Drops repeats and earlier outputs found by scanning; refuses targets that are inputs, and shared targets.

    A scanned file that is the target of another input is an earlier output of this command only if genrt's
    MADE_LIST in its folder says genrt wrote it (and it was not changed since); otherwise it is a photo, an input,
    and the run is refused.
    """
    unique: dict[tuple[str, str], int] = {}
    for i, job in enumerate(candidates):
        unique.setdefault((_key(job.source), _key(job.target)), i)
    keep = sorted(unique.values())
    source_keys = {i: _key(candidates[i].source) for i in keep}
    target_keys = {i: _key(candidates[i].target) for i in keep}
    targets_of: dict[str, list[int]] = {}
    for i in keep:
        targets_of.setdefault(target_keys[i], []).append(i)
    made = _MadeLists()
    keep = [
        i
        for i in keep
        if explicit[i]
        or not any(source_keys[j] != source_keys[i] for j in targets_of.get(source_keys[i], ()))
        or not made.lists(candidates[i].source)
    ]
    scanned_folders = {_key(candidates[i].source.parent) for i in keep if not explicit[i]}
    jobs = [
        Job(candidates[i].source, candidates[i].target, record=_key(candidates[i].target.parent) in scanned_folders)
        for i in keep
    ]

    inputs = {_key(p): p for p in protect} | {source_keys[i]: candidates[i].source for i in keep}
    inodes = {}
    for source in inputs.values():
        st = _stat(source)
        if st is not None:
            inodes[(st.st_dev, st.st_ino)] = source
    for i in keep:
        job, key = candidates[i], target_keys[i]
        source = inputs.get(key)
        st = _stat(job.target) if source is None else None
        if st is not None:  # the same file under another name (hard link, symlink, case)
            source = inodes.get((st.st_dev, st.st_ino))
        if source is not None:
            what = "its own output" if _key(source) == source_keys[i] else f"the output of {printable(job.source)}"
            raise ArgumentError(
                f"refusing to write over input {printable(source)}: it would be {what}; give another output folder "
                "or a suffix"
            )

    seen: dict[str, int] = {}
    for n, i in enumerate(keep):
        other = seen.setdefault(target_keys[i], n)
        if other != n:
            raise ArgumentError(
                f"{printable(jobs[other].source)} and {printable(jobs[n].source)} would both be written to "
                f"{printable(jobs[n].target)}; give them separate runs or output folders"
            )
    return jobs


# A folder that is both an input folder and an output folder of a run (``genrt stylize d -o d --suffix -styled``)
# holds this hidden list of the files genrt wrote there, one JSON object a line: {"name"} before the write begins
# (so that a run killed after its file landed still knows it), then {"name", "size", "mtime_ns", "sha256"} once it is
# written, or {"name", "gone"} when the job failed without writing it. A rerun takes a scanned file for an earlier
# output only if the list names it, with the same size and time or hash where it recorded them: a photo that merely
# has an output's name is an input, and is never written over.
MADE_LIST = ".genrt-made"
_MADE_LIST_MAX_BYTES = 64 << 20


class _MadeLists:
    """Reads each folder's MADE_LIST once."""

    def __init__(self):
        self._folders: dict[str, dict[str, dict]] = {}

    def lists(self, path: Path) -> bool:
        """Whether genrt's list in path's folder names this file as genrt's output, unchanged since."""
        folder = _key(path.parent)
        if folder not in self._folders:
            self._folders[folder] = read_made_list(path.parent)
        entry = self._folders[folder].get(path.name)
        if entry is None:
            return False
        st = _stat(path)
        if st is None or "size" not in entry:  # a run killed between its write and the list's second line
            return st is not None
        if (entry["size"], entry.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
            return True
        return entry["size"] == st.st_size and entry.get("sha256") == _sha256(path)


def read_made_list(folder: Path) -> dict[str, dict]:
    """{file name: its last entry} of a folder's MADE_LIST ({} without one); malformed lines are skipped."""
    import json

    try:
        with open(folder / MADE_LIST, "rb") as f:
            data = f.read(_MADE_LIST_MAX_BYTES)
    except OSError:
        return {}
    entries: dict[str, dict] = {}
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        if "size" in entry and not (isinstance(entry["size"], int) and isinstance(entry.get("sha256"), str)):
            continue
        if entry.get("gone"):  # its job failed before writing anything
            entries.pop(entry["name"], None)
            continue
        entries[entry["name"]] = entry
    return entries


def _sha256(path: Path) -> str | None:
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _append_made(target: Path, entry: dict) -> None:
    """One line of the target folder's MADE_LIST; a single write to a file opened for appending, so lines of two
    runs in one folder do not interleave."""
    import json

    line = (json.dumps({"name": target.name, **entry}, ensure_ascii=True) + "\n").encode()
    fd = os.open(target.parent / MADE_LIST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------- running


def run(
    jobs: Sequence[Job],
    work: Callable[[Job], object],
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
    log: TextIO | None = None,
) -> Report:
    """Runs ``work(job)`` for each job whose target is not there yet (all of them with ``overwrite``).

    First removes partial files that interrupted writes of these targets left (genrt.image.PARTIAL_SUFFIX), and
    creates each target's folder just before its work. ``work`` must write ``job.target`` through
    genrt.image.write_atomic. Whatever it raises fails that image only, with one line ``failed PATH: reason`` on
    ``log``, and the run goes on: a genrt.GenrtError or OSError gives its message; any other exception (a bug, or a
    library's error genrt did not expect) gives "internal error (...), details in LOG", its traceback written to
    that log (genrt.workspace), never to the terminal. Names are escaped (genrt.errors.printable): a file name
    holding a newline or an escape sequence cannot split or forge a line. Jobs with ``record`` are listed in their
    folder's MADE_LIST.

    ``workers``: images at once, in threads (genrt's runtime releases the GIL); lines and the report are in plan
    order whatever the number. ``progress``: a bar with images per second on ``log`` when it is a terminal.
    KeyboardInterrupt stops the run: images in flight finish (or, with one worker, their write is undone), the
    rest are not started, and the report says ``interrupted`` (exit code 130). The summary line goes to ``log``
    (default sys.stderr) at the end.

    Example::

        report = run(plan(["photos"], "out"), work, workers=4)
        sys.exit(report.exit_code)
    """
    log = sys.stderr if log is None else log
    if workers < 1:
        raise ArgumentError(f"workers: expected at least 1, got {workers}")
    jobs = list(jobs)
    remove_partials(jobs)
    there = [not overwrite and job.target.is_file() for job in jobs]
    todo = [job for job, skip in zip(jobs, there, strict=True) if not skip]
    report = Report(skipped=[job for job, skip in zip(jobs, there, strict=True) if skip])

    results: dict[int, tuple[str, str]] = {}
    shown = 0
    tty = getattr(log, "isatty", None)
    bar = tqdm(total=len(todo), unit="img", file=log, dynamic_ncols=True, disable=not (progress and tty and tty()))

    def record(i: int, result: tuple[str, str]) -> None:
        nonlocal shown
        results[i] = result
        bar.update(1)
        while shown in results:  # lines in plan order: hold a result until all earlier ones are in
            status, reason = results[shown]
            if status == "failed":
                tqdm.write(f"failed {printable(todo[shown].source)}: {reason}", file=log)
            shown += 1

    try:
        if workers == 1 or len(todo) <= 1:
            for i, job in enumerate(todo):
                record(i, _do(job, work))
        else:
            pool = ThreadPoolExecutor(min(workers, len(todo)), thread_name_prefix="genrt-batch")
            futures = {}
            try:
                futures = {pool.submit(_do, job, work): i for i, job in enumerate(todo)}
                for future in as_completed(futures):
                    record(futures[future], future.result())
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # on an interrupt, images in flight finish
                for future, i in futures.items():
                    if i not in results and future.done() and not future.cancelled() and not future.exception():
                        record(i, future.result())
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()

    report.file(todo, results)
    if report.interrupted:  # lines held back for an earlier image that never finished
        for i in sorted(results):
            if i >= shown and results[i][0] == "failed":
                print(f"failed {printable(todo[i].source)}: {results[i][1]}", file=log)
    print(report.summary(), file=log)
    return report


def _do(job: Job, work: Callable[[Job], object]) -> tuple[str, str]:
    """("done", "") or ("failed", one-line reason), whatever the work raised (but an interrupt)."""
    status, reason = _attempt(job, work)
    if status == "failed" and job.record and not os.path.lexists(job.target):
        try:  # the list's "writing" line must not vouch for a photo that takes this name later
            _append_made(job.target, {"gone": True})
        except OSError:
            pass
    return status, reason


def _attempt(job: Job, work: Callable[[Job], object]) -> tuple[str, str]:
    try:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        if job.record:
            _append_made(job.target, {})
        work(job)
        if not job.target.is_file():
            return "failed", f"no output written to {printable(job.target)}"
        if job.record:
            st = os.stat(job.target)
            _append_made(job.target, {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(job.target)})
    except Exception as exc:
        return "failed", failure_reason(exc, f"batch job {job.source} -> {job.target}")
    return "done", ""


def failure_reason(exc: Exception, what: str) -> str:
    """The one-line reason a job failed with ``exc``: a genrt.GenrtError's or OSError's message; for anything else
    (a bug, or a library's exception genrt did not expect) "internal error (...), details in LOG", its traceback
    logged (genrt.workspace) under ``what``."""
    if isinstance(exc, GenrtError):
        return _one_line(str(exc) or type(exc).__name__)
    if isinstance(exc, OSError):
        reason = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else exc.strerror or str(exc)
        return _one_line(reason or type(exc).__name__)
    if isinstance(exc, MemoryError):
        return "not enough memory for this image (MemoryError); try tiles or fewer --jobs"
    from genrt.workspace import internal_error_line

    return internal_error_line(exc, what)


def _one_line(text: str) -> str:
    return printable(" ".join(text.split()))


def remove_partials(jobs: Sequence[Job]) -> int:
    """Removes the partial files that interrupted atomic writes of these jobs' targets left; returns how many.

    write_atomic's temporary files are named "." + target name + "." + random letters + PARTIAL_SUFFIX, beside the
    target, so only those of planned targets are touched. Run before any work: a second run writing the same
    targets at the same time would lose its files in flight.
    """
    names_in: dict[Path, set[str]] = {}
    for job in jobs:
        names_in.setdefault(job.target.parent, set()).add(job.target.name)
    removed = 0
    for folder, names in names_in.items():
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if _partial_of(entry.name) in names:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


def _partial_of(name: str) -> str | None:
    """The name of the target whose interrupted write left this partial file, or None for another file."""
    if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
        return name[1 : -len(PARTIAL_SUFFIX)].rpartition(".")[0]
    return None


# ---------------------------------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser, *, suffix: str = "") -> None:
    """Adds the folder engine's arguments: INPUT... -o/--output -r/--recursive --suffix --ext/--format --overwrite
    -j/--jobs. ``-`` as the input or the output is a pipe, which genrt.pipes runs (one image, not this engine).

    suffix: this command's default for --suffix (e.g. "-styled").

    Example::

        p = argparse.ArgumentParser(prog="genrt stylize")
        add_arguments(p, suffix="-styled")
        args = p.parse_args(["photos", "-o", "styled", "-r", "--jobs", "4"])
    """
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders or globs (quote globs); - for one from stdin"
    )
    parser.add_argument(
        "-o", "--output", required=True,
        help="output folder (created if missing); with one input file (or -), an output file path also works; "
        "- writes the one image to stdout",
    )  # fmt: skip
    parser.add_argument(
        "-r", "--recursive", action="store_true",
        help="also the images in sub-folders of folder inputs, keeping the sub-folders under the output",
    )  # fmt: skip
    parser.add_argument(
        "--suffix", default=suffix,
        help=f"added to each output's name before its extension (default {suffix!r})",
    )  # fmt: skip
    parser.add_argument(
        "--ext", "--format", dest="ext", default=None, type=lambda s: s.lower().lstrip("."),
        choices=[s[1:] for s in WRITABLE_SUFFIXES],
        help="output format (default: the input's own; png for gif or when stdin's cannot be written); --format is "
        "the same flag",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="redo outputs that exist (default: skip them, so a rerun resumes)"
    )
    parser.add_argument(
        "-j", "--jobs", type=_positive_int, default=1, metavar="N",
        help="images processed at once (default 1); with --ray, by each model copy",
    )  # fmt: skip
    from genrt import distributed  # --ray and its flags: the same jobs on a Ray cluster

    distributed.add_arguments(parser)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def run_cli(
    args: argparse.Namespace,
    work: Callable[[Job], object],
    *,
    progress: bool = True,
    protect: Sequence = (),
    video: bool = False,
) -> int:
    """Plans and runs from arguments parsed by a parser given :func:`add_arguments`; returns the exit status.
    ``video``: clips are inputs too (see :func:`plan`); ``work`` then gets their jobs as well.

    Bad arguments raise ArgumentError (genrt's CLI prints it and exits 2) before any work.

    Example (the caller returns the status: genrt.cli.main must pass it on)::

        def _cmd_stylize(args):
            model = genrt.load(args.model)
            return batch.run_cli(args, lambda job: save_png(job.target, model.stylize(read_image(job.source))))
    """
    from genrt import distributed

    distributed.check_local(args)
    jobs = plan(
        args.inputs, args.output, recursive=args.recursive, suffix=args.suffix, ext=args.ext, protect=protect,
        video=video,
    )  # fmt: skip
    return run(jobs, work, overwrite=args.overwrite, workers=args.jobs, progress=progress).exit_code
