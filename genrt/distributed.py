"""genrt's application commands beyond one machine: the folder engine's jobs on Ray Data.

    genrt stylize style-gravel s3://bucket/photos/ -o s3://bucket/styled/ --ray auto
    genrt upscale sr-x4 /shared/frames/ -o /shared/big/ --ray 10.0.0.1:6379 --cpus-per-actor 4
    genrt stylize style-gravel photos/ -o styled/ --ray          # a local Ray instance: all this machine's cores

Ray Data does the scheduling (actors holding a model, CPUs and GPUs, backpressure, restarting a dead worker and
retrying its images); genrt supplies the callable: :class:`AppMapper`, one loaded model per actor (any model
``genrt.load`` takes, adopted and imported ones too), mapping rows through ``stylize_picture``,
``upscale_picture`` or ``inpaint_picture`` with the CLI's options (an :class:`AppSpec`). Images keep their kind
(16-bit, alpha, grey, ICC, EXIF), and large ones go through genrt's tiles inside the actor.

The promises are the local engine's (genrt.batch): the same output names (:func:`genrt.batch.output_name`), outputs
written atomically, a rerun skips what exists, a bad file is reported with one line (``failed PATH: reason``) and
skipped, a summary ends the run, and the exit status is 1 if any file failed. Local paths (which every node must
see at the same path: a shared filesystem) are planned by :func:`genrt.batch.plan`, with all its checks, and
written as the local engine writes them; URIs (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ``file://``, or any
scheme fsspec knows) go through pyarrow filesystems. An object store shows an object only once its upload is
complete; elsewhere a file is written under a partial name and renamed. Videos are not run on Ray yet: a clip
among the inputs fails with one line, and the others are done.

Needs ``pip install "genrt[ray]"`` (Ray Data) on the machine that runs the command and on every node.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import secrets
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TextIO

import numpy as np

from genrt import batch
from genrt.errors import ArgumentError, GenrtError, InvalidImageError, MissingDependencyError, printable
from genrt.image import (
    PARTIAL_SUFFIX,
    READ_SUFFIXES,
    WRITE_SUFFIXES,
    Picture,
    decode_image,
    encode_image,
    format_suffix,
)
from genrt.video import VIDEO_SUFFIXES

# app name -> (its Model class's module and name, its genrt.kind, the method that maps one Picture)
APPS = {
    "stylize": ("genrt.apps.stylize", "Stylizer", "stylizer", "stylize_picture"),
    "upscale": ("genrt.apps.upscale", "Upscaler", "upscaler", "upscale_picture"),
    "inpaint": ("genrt.apps.inpaint", "Inpainter", "inpainter", "inpaint_picture"),
}
MAX_READ_BYTES = 2 << 30  # a file read from a URI is held in memory whole; the pixel limit applies after this
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss", "r2"}  # an object shows when whole
_COPIED_ENV = ("GENRT_MAX_PIXELS", "GENRT_MAX_MEMORY", "GENRT_CONV_TRANSPOSE", "GENRT_CACHE_DIR")  # the actors follow
_RETRIES = 3  # times Ray retries the images of a worker that died (restarted each time), before they fail
_CLIP_REASON = "a video: not run on Ray yet (run the clips without --ray)"


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError('--ray needs Ray Data: pip install "genrt[ray]"') from None
    return ray


# ---------------------------------------------------------------------------------------------------- the callable


@dataclass(frozen=True)
class AppSpec:
    """What every actor does to every image; small and picklable (Ray sends it to each actor).

    app: "stylize", "upscale" or "inpaint". model: a bundled model's name or a file every node can read.
    options: the app method's keyword options (``strength``, ``style``, ``tile``, ...; ``blend`` for inpaint), as
    the CLI builds them. threads: ONNX Runtime threads per actor (None: genrt's default). adopt: the describe flags
    of a model without genrt metadata (``input_range``, ``scale``, ...). mask: inpaint's one mask for every image
    (a Picture, or (x, y, w, h)); masks: a folder of masks matched by the input's file name (every node must see
    it). cwd: the folder relative local paths are relative to (the driver's); None: the actor's own. precision:
    genrt.load's ("auto", as the CLI's apps, by default).

    Example::

        spec = AppSpec("stylize", "style-gravel", options={"strength": 0.8})
        model, apply = spec.load()
        out = apply(read_image("photo.jpg"), "photo.jpg")  # what each actor does to each image
    """

    app: str
    model: str
    options: dict = field(default_factory=dict)
    threads: int | None = None
    adopt: dict = field(default_factory=dict)
    mask: object = None
    masks: str | None = None
    cwd: str | None = None
    precision: str = "auto"

    def __post_init__(self):
        if self.app not in APPS:
            raise ArgumentError(f"app: expected one of {', '.join(APPS)}, got {self.app!r}")

    def load(self):
        """(the loaded model, ``apply(picture, name) -> Picture``); ``name`` is the input's file name (the masks
        of ``masks`` are matched by it). ArgumentError where the model is not of the app's kind."""
        import importlib

        from genrt.runtime import _load

        module, cls_name, kind, method = APPS[self.app]
        cls = getattr(importlib.import_module(module), cls_name)
        model = _load(
            self.model, threads=self.threads, adopt=dict(self.adopt), default_kind=kind, precision=self.precision
        )
        if not isinstance(model, cls):
            raise ArgumentError(f"{self.model}: not a {kind} (its genrt.kind is {model.kind!r})")
        run = getattr(model, method)
        options = dict(self.options)
        if self.app != "inpaint":
            return model, lambda picture, name: run(picture, **options)

        from genrt.image import read_image

        masks = None if self.masks is None else Path(self.masks)

        def apply(picture: Picture, name: str) -> Picture:
            from genrt.cli import _mask_for  # the local engine's rule: the same name, else the one of the same stem

            mask = self.mask if masks is None else read_image(_mask_for(Path(PurePosixPath(name).name), masks))
            return run(picture, mask, **options)

        return model, apply


class AppMapper:
    """A Ray Data callable class: one genrt model per actor, each row's image through the app.

    Rows of files (the CLI's): ``source`` and ``target`` (local paths or URIs; ``index``, ``record`` and
    ``overwrite`` optional): the actor reads the source, writes the target atomically, and returns ``index``,
    ``status`` ("done" or "failed") and ``reason`` (one line) for each row; a target already there is not redone
    without ``overwrite`` (a retried block skips what its first try wrote). Rows of bytes (as
    ``ray.data.read_binary_files`` gives them: ``bytes``, and ``path`` for messages): returns ``bytes``, the result
    encoded in ``format`` (default: the input's own, png where genrt cannot write it), and ``error`` ("" or the
    one-line reason, with empty bytes), the other columns passed through. ``jobs``: the rows of a batch processed
    at once, in threads sharing the model (genrt's runtime releases the GIL).

    Example::

        ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
        spec = AppSpec("upscale", "sr-x4", options={"tile": 256})
        out = ds.map_batches(AppMapper, fn_constructor_kwargs={"spec": spec}, batch_size=4,
                             compute=ray.data.ActorPoolStrategy(size=8))
    """

    def __init__(self, spec: AppSpec, *, jobs: int = 1, format: str | None = None):
        if spec.cwd is not None:
            try:
                os.chdir(spec.cwd)
            except OSError as exc:
                raise ArgumentError(
                    f"this node ({os.uname().nodename}) cannot enter {spec.cwd} ({exc.strerror}): local paths need a "
                    "folder every node sees at the same path; give URIs (s3://...) otherwise"
                ) from None
        self.spec = spec
        self.model, self.apply = spec.load()
        self.jobs = jobs
        self.format = format
        self._filesystems: dict[str, object] = {}

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "source" in rows and "target" in rows:
            return self._files(rows)
        if "bytes" in rows:
            return self._bytes(rows)
        raise ArgumentError(f"rows: expected columns source and target, or bytes; got {', '.join(rows)}")

    def _map(self, fn: Callable[[int], tuple], n: int) -> list[tuple]:
        if self.jobs == 1 or n <= 1:
            return [fn(i) for i in range(n)]
        with ThreadPoolExecutor(min(self.jobs, n), thread_name_prefix="genrt-ray") as pool:
            return list(pool.map(fn, range(n)))

    def _files(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(rows["source"])
        column = lambda key, default: rows[key] if key in rows else [default] * n  # noqa: E731

        index, record, overwrite = column("index", -1), column("record", False), column("overwrite", False)

        def one(i: int) -> tuple[str, str]:
            return self._file(str(rows["source"][i]), str(rows["target"][i]), bool(record[i]), bool(overwrite[i]))

        results = self._map(one, n)
        return {
            "index": np.asarray(index, dtype=np.int64),
            "status": np.asarray([s for s, _ in results], dtype=object),
            "reason": np.asarray([r for _, r in results], dtype=object),
        }

    def _file(self, source: str, target: str, record: bool, overwrite: bool) -> tuple[str, str]:
        if not is_uri(source) and not is_uri(target):  # the local engine's work, bookkeeping and messages
            job = batch.Job(Path(source), Path(target), record=record)
            if not overwrite and job.target.is_file():
                return "done", ""
            return batch._do(job, self._local_work)
        try:
            if not overwrite and self._exists(target):
                return "done", ""
            self._write(target, self.apply(self._read(source), source))
        except Exception as exc:  # each image fails alone, with the local engine's one-line reasons
            return "failed", batch.failure_reason(exc, f"ray job {source} -> {target}")
        return "done", ""

    def _local_work(self, job: batch.Job) -> None:
        from genrt.image import read_image, write_image

        write_image(job.target, self.apply(read_image(job.source), job.source.name))

    def _read(self, source: str) -> Picture:
        if not is_uri(source):
            from genrt.image import read_image

            return read_image(source)
        fs, path = self._resolve(source)
        with fs.open_input_file(path) as f:
            size = f.size()
            if size > MAX_READ_BYTES:
                raise InvalidImageError(f"{source}: {size} bytes, over the {MAX_READ_BYTES} read from a URI")
            data = f.read()
        return decode_image(data, name=source)

    def _exists(self, target: str) -> bool:
        if not is_uri(target):
            return os.path.isfile(target)
        import pyarrow.fs as pafs

        fs, path = self._resolve(target)
        return fs.get_file_info(path).type == pafs.FileType.File

    def _write(self, target: str, picture: Picture) -> None:
        if not is_uri(target):
            from genrt.image import write_image

            Path(target).parent.mkdir(parents=True, exist_ok=True)
            write_image(target, picture)
            return
        data = encode_image(picture, PurePosixPath(target).suffix)  # whole before the first byte goes out
        fs, path = self._resolve(target)
        write_uri(fs, path, data, object_store=_scheme(target) in _OBJECT_STORES)

    def _resolve(self, uri: str):
        key = uri.split("://", 1)[0] + "://" + _split(uri)[0]
        if key not in self._filesystems:
            self._filesystems[key] = filesystem(uri)[0]
        fs = self._filesystems[key]
        return fs, _fs_path(uri)

    def _bytes(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(rows["bytes"])
        names = rows.get("path", [f"row {i}" for i in range(n)])

        def one(i: int) -> tuple[bytes, str]:
            name = str(names[i])
            try:
                picture = decode_image(bytes(rows["bytes"][i]), name=name)
                fmt = self.format or format_suffix(picture.format) or ".png"  # png for a GIF
                return encode_image(self.apply(picture, name), fmt), ""
            except Exception as exc:
                return b"", batch.failure_reason(exc, f"ray row {name}")

        results = self._map(one, n)
        out = {k: v for k, v in rows.items() if k != "bytes"}
        out["bytes"] = np.asarray([b for b, _ in results], dtype=object)
        out["error"] = np.asarray([e for _, e in results], dtype=object)
        return out


# ---------------------------------------------------------------------------------------------------- URIs


def is_uri(text) -> bool:
    """Whether an input or output names a URI (``scheme://...``) rather than a local path."""
    text = os.fspath(text)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isascii() and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower()


def _split(uri: str) -> tuple[str, str]:
    """(authority, path) of scheme://authority/path, taken literally: no query, no percent-decoding."""
    netloc, _, path = uri.split("://", 1)[1].partition("/")
    return netloc, path


def _fs_path(uri: str) -> str:
    """The path pyarrow's filesystem for ``uri`` takes: bucket/key for object stores, /path for file: and HDFS."""
    netloc, path = _split(uri)
    if _scheme(uri) in _OBJECT_STORES:
        return f"{netloc}/{path}".rstrip("/") if path else netloc
    return "/" + path


def filesystem(uri: str):
    """(a pyarrow filesystem, the path in it) for a URI: pyarrow's own (s3, gs, abfs, hdfs, file), else fsspec's
    for its schemes, where the package for the scheme is installed. ArgumentError naming the URI otherwise."""
    import pyarrow.fs as pafs

    scheme = _scheme(uri)
    netloc, _ = _split(uri)
    root = f"{scheme}://{netloc}/" if scheme != "file" else "file:///"
    try:
        fs, _ = pafs.FileSystem.from_uri(root)
    except Exception as exc:  # an unknown scheme, or the scheme's library missing or failing (credentials, ...)
        first = _first_line(exc)
        try:
            import fsspec

            fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme)))
        except Exception as fsspec_exc:
            raise ArgumentError(
                f"{printable(uri)}: no filesystem for {scheme}:// (pyarrow: {first}; "
                f"fsspec: {_first_line(fsspec_exc)})"
            ) from None
    return fs, _fs_path(uri)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return printable(" ".join((text[0] if text else type(exc).__name__).split())[:200])


def write_uri(fs, path: str, data: bytes, *, object_store: bool) -> None:
    """Writes bytes so that no reader sees half of them: an object store shows an object only once its upload
    completes; elsewhere (file:, HDFS, fsspec's others) they go to ``.NAME.RANDOM`` + PARTIAL_SUFFIX beside the
    target, renamed over it when whole (a partial file that a killed worker leaves is removed by the next run)."""
    parent, _, name = path.rpartition("/")
    if object_store:
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    fs.create_dir(parent or "/", recursive=True)
    tmp = f"{parent}/.{name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except Exception:
            pass
        raise


@dataclass(frozen=True)
class UriJob:
    """One image of a run with URIs: read ``source``, write ``target`` (URIs, or absolute local paths)."""

    source: str
    target: str
    record: bool = field(default=False, compare=False)


def plan_uris(
    inputs: Sequence[str],
    output: str,
    *,
    recursive: bool = False,
    suffix: str = "",
    ext: str | None = None,
    video: bool = False,
) -> list[UriJob]:
    """genrt.batch.plan for runs where an input or the output is a URI: one job per image, in input order (a
    folder's files sorted by path), named by genrt.batch.output_name. Inputs: files or folders (prefixes; ``-r``
    keeps sub-folders under the output), URIs or local paths; no globs. Output: a folder, or a file when the one
    input is a file. Refused before any work: a missing input, no image, an output folder that is an input folder
    (or inside one, with ``-r``): there the local engine's list of its outputs does not reach; a target that is an
    input; two inputs with one target.
    """
    import pyarrow.fs as pafs

    if not inputs:
        raise ArgumentError("no input given: expected image files or folders")
    if any(sep in suffix for sep in ("/", os.sep)):
        raise ArgumentError(f"suffix: expected a name part such as '-styled', got {suffix!r} (a path)")
    ext = batch._normalize_ext(ext)
    suffixes = READ_SUFFIXES + (VIDEO_SUFFIXES if video else ())
    out = _location(output)
    found: list[tuple[str, str, bool]] = []  # (source, path relative to the output, named explicitly)
    for item in inputs:
        if not is_uri(item) and any(c in os.fspath(item) for c in "*?["):
            raise ArgumentError(f"input {printable(item)}: globs are for runs on local paths only; give a folder")
        where = _location(item)
        fs, path = _fs_and_path(where)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            if PurePosixPath(path).suffix.lower() not in suffixes or path.endswith(PARTIAL_SUFFIX):
                raise ArgumentError(f"input {printable(item)} is not an image file (expected {' '.join(suffixes)})")
            found.append((where, PurePosixPath(path).name, True))
        elif info.type == pafs.FileType.Directory:
            base = where.rstrip("/")
            if _inside(out, base, recursive):
                raise ArgumentError(
                    f"output {printable(output)} is inside input folder {printable(item)}: with --ray, give an output "
                    "folder apart from the inputs"
                )
            selector = pafs.FileSelector(path, recursive=recursive)
            for entry in sorted(fs.get_file_info(selector), key=lambda e: e.path):
                rel = entry.path[len(path.rstrip("/")) :].lstrip("/")
                parts = rel.split("/")
                if entry.type != pafs.FileType.File or any(p.startswith(".") for p in parts):
                    continue
                if batch._is_image_name(parts[-1], suffixes):
                    found.append((f"{base}/{rel}", rel, False))
        else:
            raise ArgumentError(f"input {printable(item)} not found")
    if not found:
        hint = "" if recursive else "; use -r for sub-folders"
        raise ArgumentError(f"no images in {', '.join(inputs)} (looked for {' '.join(suffixes)}{hint})")

    single = len(inputs) == 1 and len(found) == 1 and found[0][2]
    to_file = PurePosixPath(out).suffix.lower() in suffixes and not out.endswith("/")
    if to_file and not single:
        raise ArgumentError(f"output {output} is a file path; with folders or several inputs it must be a folder")
    jobs = []
    for source, rel, _ in found:
        if to_file:
            target = out
            if PurePosixPath(out).suffix.lower() not in WRITE_SUFFIXES:
                raise ArgumentError(f"output {output}: cannot write {PurePosixPath(out).suffix}")
        else:
            parent = PurePosixPath(rel).parent.as_posix()
            name = batch.output_name(PurePosixPath(rel).name, suffix, ext, video=video)
            target = out.rstrip("/") + "/" + (name if parent == "." else f"{parent}/{name}")
        jobs.append(UriJob(source, target))

    sources = {job.source for job in jobs}
    seen: dict[str, str] = {}
    for job in jobs:
        if job.target in sources:
            raise ArgumentError(
                f"refusing to write over input {printable(job.target)}: it would be the output of "
                f"{printable(job.source)}; give another output folder or a suffix"
            )
        other = seen.setdefault(job.target, job.source)
        if other != job.source:
            raise ArgumentError(
                f"{printable(other)} and {printable(job.source)} would both be written to {printable(job.target)}; "
                "give them separate runs or output folders"
            )
    return list(dict.fromkeys(jobs))  # an image named twice is done once


def _location(text) -> str:
    """A URI as given (file:// ones too), a local path made absolute: what the actors are handed."""
    text = os.fspath(text)
    return text if is_uri(text) else os.path.abspath(text) + ("/" if text.endswith(("/", os.sep)) else "")


def _fs_and_path(location: str):
    if is_uri(location):
        return filesystem(location)
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem(), location.rstrip("/") or "/"


def _inside(out: str, folder: str, recursive: bool) -> bool:
    out, folder = out.rstrip("/"), folder.rstrip("/")
    return out == folder or (recursive and out.startswith(folder + "/"))


def _existing(jobs: Sequence[UriJob]) -> set[str]:
    """The targets there already, and the partial files of interrupted writes of them removed: one listing of each
    target folder (not a request per file)."""
    import pyarrow.fs as pafs

    by_folder: dict[str, set[str]] = {}
    for job in jobs:
        folder, _, name = job.target.rpartition("/")
        by_folder.setdefault(folder, set()).add(name)
    there = set()
    for folder, names in by_folder.items():
        fs, path = _fs_and_path(folder + "/")
        try:
            entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError:
            continue
        for entry in entries:
            name = entry.base_name
            if entry.type == pafs.FileType.File and name in names:
                there.add(f"{folder}/{name}")
            elif batch._partial_of(name) in names:
                fs.delete_file(entry.path)
    return there


# ---------------------------------------------------------------------------------------------------- running


def run(
    jobs: Sequence[batch.Job | UriJob],
    spec: AppSpec,
    *,
    address: str | None = None,
    overwrite: bool = False,
    actors: int | None = None,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float = 0.0,
    jobs_per_actor: int = 1,
    video: bool = False,
    log: TextIO | None = None,
) -> batch.Report:
    """Runs planned jobs (genrt.batch.plan's, or :func:`plan_uris`') on Ray Data with :class:`AppMapper` actors;
    returns genrt.batch.Report, its lists in plan order.

    address: "local" or None (start a Ray instance on this machine, on 127.0.0.1, shut down at the end), "auto"
    (the cluster this machine belongs to), HOST:PORT or ray://HOST:PORT; where Ray is already initialized in this
    process, that is used and left running. actors: model copies at once (default: as many as the cluster's
    CPUs, and GPUs where ``gpus_per_actor``, fit; at most one per image). cpus_per_actor, gpus_per_actor: what
    Ray reserves for each (a fraction of a GPU shares it). jobs_per_actor: images each actor works on at once.

    As genrt.batch.run: partial files of these targets are removed first (and again at the end: those of workers
    killed mid-write), targets there already are skipped unless ``overwrite``, each failure is one line
    ``failed PATH: reason`` on ``log`` (as the results come in), then a summary. A worker that dies (killed,
    out of memory) is restarted and its images retried (up to 3 times; those it kept dying on fail with a line).
    Clips fail with one line. Lines other than these go only where Ray's progress bars go (a terminal).
    """
    log = sys.stderr if log is None else log
    ray = _ray()
    jobs = list(jobs)
    local = all(isinstance(job, batch.Job) for job in jobs)
    if local:
        batch.remove_partials(jobs)
        there = [not overwrite and job.target.is_file() for job in jobs]
    else:
        existing = set() if overwrite else _existing(jobs)
        there = [job.target in existing for job in jobs]
    todo = [job for job, skip in zip(jobs, there, strict=True) if not skip]
    report = batch.Report(skipped=[job for job, skip in zip(jobs, there, strict=True) if skip])
    results: dict[int, tuple[str, str]] = {}

    def record(i: int, status: str, reason: str) -> None:
        results[i] = (status, reason)
        if status == "failed":
            print(f"failed {printable(todo[i].source)}: {reason}", file=log, flush=True)

    rows = []
    for i, job in enumerate(todo):
        if video and Path(str(job.source)).suffix.lower() in VIDEO_SUFFIXES:
            record(i, "failed", _CLIP_REASON)
            continue
        source, target = (str(job.source), str(job.target)) if local else (job.source, job.target)
        rows.append({"index": i, "source": source, "target": target, "record": job.record, "overwrite": overwrite})

    stopped = saved = None
    if rows:
        started = not ray.is_initialized()
        tty = bool(getattr(log, "isatty", None) and log.isatty())
        if started:
            _init(ray, address, quiet=not tty)
        try:
            n = _actors(ray, actors, cpus_per_actor, gpus_per_actor, len(rows))
            threads = spec.threads if spec.threads is not None else max(1, int(cpus_per_actor))
            spec = dataclasses.replace(spec, threads=threads, cwd=spec.cwd or (os.getcwd() if local else None))
            ctx = ray.data.DataContext.get_current()
            saved = ctx.max_errored_blocks
            ctx.max_errored_blocks = -1  # images a worker kept dying on: reported as failed, the others go on
            per_block = max(1, min(16, math.ceil(len(rows) / (8 * n))))
            ds = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / per_block))
            env = {k: os.environ[k] for k in _COPIED_ENV if k in os.environ}
            with warnings.catch_warnings():  # Ray 2.60 has no named parameter for retries: ray_remote_args it is
                warnings.simplefilter("ignore", DeprecationWarning)
                ds = ds.map_batches(
                    AppMapper, fn_constructor_kwargs={"spec": spec, "jobs": jobs_per_actor},
                    batch_size=jobs_per_actor, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=n),
                    num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None, max_task_retries=_RETRIES,
                    runtime_env={"env_vars": env} if env else None,
                )  # fmt: skip
            for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
                for i, status, reason in zip(out["index"], out["status"], out["reason"], strict=True):
                    record(int(i), str(status), str(reason))
        except KeyboardInterrupt:
            report.interrupted = True
        except GenrtError:
            raise
        except Exception as exc:  # Ray's own failure (a worker that cannot load the model, the cluster lost)
            stopped = exc
        finally:
            if saved is not None:
                ctx.max_errored_blocks = saved
            if started:
                ray.shutdown()

    lost = f"its Ray task failed on all {_RETRIES + 1} tries (worker killed, out of memory, or an error: see Ray logs)"
    if not report.interrupted and stopped is None:
        for i in range(len(todo)):
            if i not in results:
                record(i, "failed", lost)
    report.file(todo, results)
    if not report.interrupted and local:  # partial files of workers killed mid-write (their images were redone)
        batch.remove_partials(todo)
    elif not report.interrupted:
        _existing(todo)  # lists the target folders, removing partial files on the way
    if stopped is not None:
        print(f"{report.summary()}, {len(report.not_started)} not started", file=log)
        raise GenrtError(f"the Ray job stopped: {_ray_reason(stopped)} (what was written is kept: a rerun resumes)")
    print(report.summary(), file=log)
    return report


def _init(ray, address: str | None, *, quiet: bool) -> None:
    options = {"logging_level": logging.WARNING} if quiet else {}
    local = address in (None, "local")
    ray_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = ray_log.level
    if local:  # a Ray instance genrt starts and stops: its token authentication need not be announced
        ray_log.setLevel(logging.ERROR)
    try:
        if local:  # this machine only: nothing listens beyond it
            ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **options)
        else:
            ray.init(address=address, **options)
    except Exception as exc:  # no cluster at that address, a version mismatch, ...
        raise ArgumentError(f"--ray {address}: cannot connect ({_first_line(exc)})") from None
    finally:
        ray_log.setLevel(level)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not its plan and stages: progress bars say enough


def _actors(ray, actors: int | None, cpus: float, gpus: float, images: int) -> int:
    if actors is None:
        resources = ray.cluster_resources()
        actors = int(resources.get("CPU", 1) // cpus)
        if gpus:
            actors = min(actors, int(resources.get("GPU", 0) // gpus))
            if actors < 1:
                raise ArgumentError(
                    f"{gpus:g} GPU per model copy (--gpus-per-actor; 1 with --device cuda), and the Ray cluster has "
                    f"{resources.get('GPU', 0):g} GPUs"
                )
    return max(1, min(actors, images))


def _ray_reason(exc: BaseException) -> str:
    """One line for an exception Ray raised: the message of a genrt error in a worker (its traceback travels in
    the text of Ray's exceptions), else the first line of the outermost message."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        cause = getattr(exc, "cause", None)
        exc = exc.__cause__ or exc.__context__ or (cause if isinstance(cause, BaseException) else None)
    for e in chain:
        for line in reversed(str(e).splitlines()):
            found = re.match(r"\s*genrt\.errors\.\w+: (.+)", line)
            if found:
                return printable(found.group(1)[:300])
    return next((_first_line(e) for e in chain if str(e).strip()), type(chain[0]).__name__)


# ---------------------------------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --ray [ADDRESS], --actors, --cpus-per-actor and --gpus-per-actor (genrt.batch.add_arguments calls it)."""
    group = parser.add_argument_group('on a Ray cluster (pip install "genrt[ray]")')
    group.add_argument(
        "--ray", nargs="?", const="local", default=None, type=_address, metavar="ADDRESS",
        help="run on Ray: auto (the cluster this machine is in), HOST:PORT or ray://HOST:PORT; alone, a local Ray "
        "instance. Inputs and -o may then be URIs (s3://bucket/photos/); local paths must be seen by every node",
    )  # fmt: skip
    group.add_argument(
        "--actors", type=batch._positive_int, default=None, metavar="N",
        help="with --ray: model copies at once (default: as many as the cluster's CPUs (GPUs) fit)",
    )  # fmt: skip
    group.add_argument(
        "--cpus-per-actor", type=_resource(0.01), default=None, metavar="C",
        help="with --ray: CPUs each model copy holds, its ONNX Runtime threads (default 1); a node of N CPUs runs "
        "N / C copies",
    )  # fmt: skip
    group.add_argument(
        "--gpus-per-actor", type=_resource(0), default=None, metavar="G",
        help="with --ray: GPUs each model copy holds (default 0; 0.5: two copies share a GPU); with upscale "
        "--device cuda, 1 by default",
    )  # fmt: skip


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if text in ("auto", "local") or text.startswith("ray://") or (sep and host and port.isdigit()):
        return text
    raise argparse.ArgumentTypeError(
        f"expected auto, local, HOST:PORT or ray://HOST:PORT, got {text!r} (put --ray after the inputs, or --ray=auto)"
    )


def _resource(low: float):
    """A parser of CPUs or GPUs per actor: 0 (only where ``low`` is 0) or from 0.01 to 1024."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (math.isfinite(value) and (value == low == 0 or 0.01 <= value <= 1024)):
            what = "0 or a number from 0.01 to 1024" if low == 0 else "a number from 0.01 to 1024"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def check_local(args: argparse.Namespace) -> None:
    """ArgumentError where a Ray flag is given without --ray (the local engine would ignore it)."""
    given = [f for f in ("actors", "cpus_per_actor", "gpus_per_actor") if getattr(args, f, None) is not None]
    if given and getattr(args, "ray", None) is None:
        raise ArgumentError(f"{', '.join('--' + f.replace('_', '-') for f in given)}: only with --ray")


def run_cli(args: argparse.Namespace, spec: AppSpec, *, protect: Sequence = (), video: bool = False) -> int:
    """The app commands with --ray: plans (genrt.batch.plan for local paths, :func:`plan_uris` where a URI is
    given), runs on Ray, returns the exit status (0, 1 when some file failed, 130 when interrupted). Bad arguments
    raise ArgumentError before any work (the CLI prints one line and exits 2).

    Example (in genrt.cli)::

        if args.ray is not None:
            return distributed.run_cli(args, AppSpec("stylize", args.model, options), protect=[model.path])
    """
    from genrt import pipes

    if pipes.is_pipe(args):
        raise ArgumentError("--ray: not with - (a pipe is one image); run it without --ray")
    _ray()
    gpus = args.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if str(spec.options.get("device") or "cpu").startswith("cuda") else 0.0
    if any(is_uri(p) for p in [*args.inputs, args.output]):
        jobs = plan_uris(args.inputs, args.output, recursive=args.recursive, suffix=args.suffix, ext=args.ext,
                         video=video)  # fmt: skip
    else:
        jobs = batch.plan(args.inputs, args.output, recursive=args.recursive, suffix=args.suffix, ext=args.ext,
                          protect=protect, video=video)  # fmt: skip
    cpus = 1.0 if args.cpus_per_actor is None else args.cpus_per_actor
    report = run(
        jobs, spec, address=args.ray, overwrite=args.overwrite, actors=args.actors, cpus_per_actor=cpus,
        gpus_per_actor=gpus, jobs_per_actor=args.jobs, video=video,
    )  # fmt: skip
    return report.exit_code


def model_ref(name_or_path: str) -> str:
    """What the actors load: a model file's absolute path (every node must see it there), else the name (a bundled
    model, which every node's genrt has)."""
    return os.path.abspath(name_or_path) if os.path.exists(name_or_path) else name_or_path
