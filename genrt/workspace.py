"""Where genrt keeps its own files: the cache folder, scratch space that a killed run cannot leak, and the log of
internal errors.

- :func:`cache_dir`: ``$GENRT_CACHE_DIR``, default ``~/.cache/genrt`` (kernel choices, scratch, logs).
- :func:`scratch`: a folder for one piece of work (e.g. genrt.tiles' per-tile results), named by the process that
  owns it, ``cache_dir()/scratch/NAME-PID-RANDOM``. It is removed when the work ends; a process killed with
  ``kill -9`` cannot remove it, so every new scratch folder first removes those of processes that are gone.
- :func:`log_internal_error`: the traceback of an exception genrt did not expect goes to a log file, never to the
  terminal; the caller prints one line naming the file.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

_SCRATCH = "scratch"


def cache_dir() -> Path:
    """genrt's folder for what it keeps between runs: ``$GENRT_CACHE_DIR``, else ``~/.cache/genrt``."""
    root = os.environ.get("GENRT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "genrt")
    return Path(root)


def _writable(sub: str) -> Path:
    """cache_dir()/sub, created; where the cache cannot be written, a per-user folder in the system's temp."""
    for root in (cache_dir(), Path(tempfile.gettempdir()) / f"genrt-{os.getuid() if hasattr(os, 'getuid') else 0}"):
        folder = root / sub
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK | os.X_OK):
                return folder
        except OSError:
            continue
    raise OSError(f"no writable folder for genrt's {sub} (tried {cache_dir() / sub} and the system temp folder)")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts as alive)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # no way to tell: keep its files
    return True


def _owner(name: str) -> int | None:
    """The PID in a scratch folder's name NAME-PID-RANDOM, or None for a name of another shape."""
    parts = name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def sweep_scratch() -> int:
    """Removes the scratch folders of processes that no longer exist; returns how many."""
    try:
        entries = list(os.scandir(cache_dir() / _SCRATCH))
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        pid = _owner(entry.name)
        if pid is None or pid_alive(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += not os.path.lexists(entry.path)
    return removed


@contextlib.contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A fresh folder for one piece of work, removed afterwards; those a killed process left are removed first.

    Example::

        with scratch("tiles") as folder:
            np.save(folder / "0.npy", part)
    """
    sweep_scratch()
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-{os.getpid()}-", dir=_writable(_SCRATCH)))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def log_internal_error(exc: BaseException, context: str = "") -> Path | None:
    """Appends the traceback of an unexpected exception to ``cache_dir()/logs/genrt-PID.log``; returns its path
    (None where no log can be written)."""
    try:
        path = _writable("logs") / f"genrt-{os.getpid()}.log"
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"--- {stamp} {context}\n{text}\n")
        return path
    except OSError:
        return None


def internal_error_line(exc: BaseException, context: str = "") -> str:
    """One line for an exception genrt did not expect, its traceback logged: "internal error (ValueError: ...),
    details in LOG"."""
    from genrt.errors import printable

    log = log_internal_error(exc, context)
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = f"details in {log}" if log else "no log could be written"
    return printable(f"internal error ({' '.join(what.split())[:300]}), {where}")
