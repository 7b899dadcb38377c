"""Pipes for the app commands: ``-`` as the input (stdin) or the output (stdout) of one image.

    cat a.jpg | genrt stylize style-gravel - -o - > b.png
    genrt upscale sr-x4 - -o big.png < small.jpg
    genrt stylize style-gravel photo.jpg -o - --format webp | ...

The input's format is taken from its bytes. stdout's is ``--format`` (``--ext``), else the suffix of the file
stdout is redirected to (``> b.png``, where the system says: Linux), else the input's own, else png (for a GIF);
an output file's is its suffix. stdout carries the image's bytes and nothing else: errors go to stderr, and a run
that works says nothing. A pipe is one image, never the folder engine: no resume (an output file that exists is
refused without ``--overwrite``: stdin cannot be read twice), no report, and never a write over an input (the model,
a mask, or the file stdin is redirected from).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from genrt.errors import ArgumentError, ImageTooLargeError, printable
from genrt.image import READ_SUFFIXES, Picture, decode_image, encode_image, format_suffix, read_image, write_image

PIPE = "-"
MAX_STDIN_BYTES = 1 << 30  # an image read from stdin is held in memory whole; the pixel limit applies after this


def is_pipe(args) -> bool:
    """Whether a parsed app command reads stdin or writes stdout (``-`` as an input or as -o)."""
    return PIPE in args.inputs or args.output == PIPE


def run(args, transform: Callable[[Picture], Picture], *, protect: Sequence[str | Path] = ()) -> int:
    """Reads one image (stdin for ``-``, else the one input file), writes ``transform(picture)`` (stdout for ``-o -``,
    else the output file, atomically); returns the exit status (0).

    args: parsed by a parser given genrt.batch.add_arguments. protect: the command's other input files (the model,
    a mask): the output file may not be one. Bad arguments or input raise GenrtError (the CLI prints one line and
    exits 2) before anything is written.
    """
    source, target = _source(args.inputs), None if args.output == PIPE else Path(args.output)
    if target is not None:
        _check_target(target, args.ext, protect, overwrite=args.overwrite)
    if source is None and _isatty(sys.stdin):
        raise ArgumentError("input -: stdin is a terminal; pipe an image in (genrt ... - -o out.png < photo.jpg)")
    if target is None and _isatty(sys.stdout):
        raise ArgumentError("-o -: stdout is a terminal; redirect it (> out.png) or pipe it into another command")

    picture = decode_image(_read_stdin(), name="stdin") if source is None else read_image(source)
    result = transform(picture)
    if target is not None:
        write_image(target, result)
        return 0
    fmt = args.ext or _stdout_suffix() or format_suffix(picture.format) or ".png"
    data = encode_image(result, fmt)  # fully encoded before the first byte goes out: an error leaves stdout empty
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader went away (`| head -c 100`): say so once, and keep Python's exit-time flush from saying it again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        print("genrt: stdout closed before the whole image was written", file=sys.stderr)
        return 1
    return 0


def _source(inputs: Sequence[str]) -> Path | None:
    """The one input file, or None for stdin; ArgumentError for what a pipe cannot take."""
    if PIPE in inputs:
        if len(inputs) > 1:
            raise ArgumentError("input -: stdin holds one image; give - alone, without other inputs")
        return None
    if len(inputs) > 1:
        raise ArgumentError("-o -: stdout takes one image; give one image file (or -) as the input")
    path = Path(inputs[0])
    if path.is_dir():
        raise ArgumentError(f"-o -: stdout takes one image; {printable(path)} is a folder (give -o a folder)")
    if not os.path.lexists(path):
        raise ArgumentError(f"input {printable(path)} not found (-o - takes one image file; globs are not expanded)")
    if path.suffix.lower() not in READ_SUFFIXES:
        raise ArgumentError(f"input {printable(path)} is not an image file (expected {' '.join(READ_SUFFIXES)})")
    return path


def _check_target(target: Path, ext: str | None, protect: Sequence[str | Path], *, overwrite: bool) -> None:
    suffix = format_suffix(target.suffix)
    if target.is_dir() or str(target).endswith(tuple(s for s in (os.sep, os.altsep) if s)) or suffix is None:
        raise ArgumentError(
            f"output {printable(target)}: with - as the input, -o is an image file path (out.png) or - (stdout)"
        )
    if ext is not None and format_suffix(ext) != suffix:
        raise ArgumentError(f"output {printable(target)} and --format {ext} disagree: give one of them")
    for path in protect:
        try:
            same = os.path.samefile(path, target)  # the same file through a link or another spelling too
        except OSError:
            same = False  # the target does not exist yet
        if same:
            raise ArgumentError(f"refusing to write over input {printable(path)}: give another output file")
    try:
        stdin, st = os.fstat(sys.stdin.fileno()), os.stat(target)
        same = stat.S_ISREG(stdin.st_mode) and (stdin.st_dev, stdin.st_ino) == (st.st_dev, st.st_ino)
    except (OSError, ValueError, AttributeError):  # no target yet, or no stdin (closed, replaced)
        same = False
    if same:
        raise ArgumentError(f"refusing to write over input {printable(target)}: stdin is read from it")
    if os.path.lexists(target) and not overwrite:
        raise ArgumentError(
            f"output {printable(target)} exists; --overwrite replaces it (stdin cannot be resumed like a folder)"
        )
    if not target.parent.is_dir():
        raise ArgumentError(f"output {printable(target)}: folder {printable(target.parent)} does not exist")


def _read_stdin() -> bytes:
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise ImageTooLargeError(f"stdin: over {MAX_STDIN_BYTES >> 20} MiB, more than an image genrt reads")
    if not data:
        raise ArgumentError("input -: stdin is empty; pipe an image in (genrt ... - -o out.png < photo.jpg)")
    return data


def _stdout_suffix() -> str | None:
    """The format of the file stdout is redirected to (``> b.png``), where the system names it (Linux's /proc)."""
    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return format_suffix(Path(os.readlink(f"/proc/self/fd/{fd}")).suffix)
    except (OSError, ValueError, AttributeError):
        return None


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False
