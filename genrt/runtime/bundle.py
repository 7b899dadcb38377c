"""genrt bundles (.genrt): several ONNX graphs and a manifest.json in one zip, for models that are more than one
graph (the iGAN manipulator: its encoder and the objective's projection and edit gradient graphs). Nothing in a
bundle is executable: the manifest is JSON, each graph an ONNX protobuf named by the manifest; no other member is
read and no path is joined.

A bundle is untrusted input, so what it may cost is bounded before anything is inflated: each member's size, the
total of the members read (``GENRT_MAX_BUNDLE_BYTES``) and each member's compression ratio are checked from the zip
directory, and again while each member streams in (a directory can lie), reading in chunks and stopping at the
limit. Each member is read at most once: a manifest naming one member for two graphs is refused.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import onnx

from genrt.errors import InvalidModelError
from genrt.runtime import metadata as md

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
MAX_GRAPH_BYTES = (1 << 31) - 1  # protobuf's own limit
MAX_BUNDLE_BYTES = 1 << 30  # all members read, inflated; GENRT_MAX_BUNDLE_BYTES overrides it (e.g. 4G)
MAX_RATIO = 100  # inflated / compressed size of a member; ONNX weights compress 1.1-3x, a zero-filled bomb ~1000x
RATIO_FREE_BYTES = 1 << 20  # members up to this size may compress better (a small JSON manifest does)
_CHUNK = 1 << 20


def max_bundle_bytes() -> int:
    """The limit on a bundle's members inflated, all together: ``GENRT_MAX_BUNDLE_BYTES`` or MAX_BUNDLE_BYTES."""
    return md.env_bytes("GENRT_MAX_BUNDLE_BYTES", MAX_BUNDLE_BYTES)


def _check_name(path: Path, name) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith(".") or len(name) > 255:
        raise InvalidModelError(f"{path}: bad member name {name!r} in the manifest")
    return name


def _info(zf: zipfile.ZipFile, path: Path, name: str, limit: int) -> zipfile.ZipInfo:
    """The member's directory entry, its declared sizes checked against `limit`, the ratio and the file's size."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise InvalidModelError(f"{path}: the bundle has no member {name!r}") from None
    if info.file_size > limit:
        hint = "" if name == MANIFEST else f" (GENRT_MAX_BUNDLE_BYTES, now {max_bundle_bytes()}, bounds all members)"
        raise InvalidModelError(
            f"{path}: member {name!r} is {info.file_size} bytes inflated, over the {limit}-byte limit{hint}"
        )
    if info.file_size > RATIO_FREE_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise InvalidModelError(
            f"{path}: member {name!r} inflates {info.compress_size} bytes to {info.file_size}, a ratio over "
            f"{MAX_RATIO}:1 that no model needs (a decompression bomb?)"
        )
    if info.compress_size > os.path.getsize(path):
        raise InvalidModelError(f"{path}: member {name!r} claims more compressed bytes than the file holds")
    return info


def _read(zf: zipfile.ZipFile, path: Path, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The member's bytes, streamed in chunks and stopped as soon as they pass what its directory entry declared
    (which _info checked against `limit` and the ratio): the directory is never trusted to bound the inflation."""
    name = info.filename
    allowed = min(info.file_size, limit)
    buf = io.BytesIO()  # getvalue() hands over its buffer without a copy
    try:
        with zf.open(info) as fp:
            while True:
                chunk = fp.read(min(_CHUNK, allowed + 1 - buf.tell()))
                if not chunk:
                    break
                buf.write(chunk)
                if buf.tell() > allowed:
                    raise InvalidModelError(
                        f"{path}: member {name!r} inflates to more than the {info.file_size} bytes its zip directory "
                        f"declares (limit {limit} bytes); refusing it"
                    )
    except InvalidModelError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise InvalidModelError(f"{path}: member {name!r} is corrupt ({exc})") from None
    except Exception as exc:  # zlib.error and friends from a damaged stream
        raise InvalidModelError(f"{path}: member {name!r} is corrupt ({type(exc).__name__}: {exc})") from None
    if buf.tell() != info.file_size:
        raise InvalidModelError(
            f"{path}: member {name!r} inflates to {buf.tell()} bytes, not the {info.file_size} its directory declares"
        )
    return buf.getvalue()


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidModelError(f"{path}: not a readable genrt bundle ({exc})") from None


def _manifest(zf: zipfile.ZipFile, path: Path) -> dict:
    limit = min(MAX_MANIFEST_BYTES, max_bundle_bytes())
    text = _read(zf, path, _info(zf, path, MANIFEST, limit), limit)
    manifest = md.loads(text, f"{path}: member {MANIFEST!r}", max_chars=MAX_MANIFEST_BYTES)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("kind"), str):
        raise InvalidModelError(f'{path}: member {MANIFEST!r} has no "kind"')
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise InvalidModelError(f"{path}: member {MANIFEST!r} names no graphs")
    seen: dict[str, str] = {}
    for role, name in graphs.items():
        _check_name(path, name)
        if name == MANIFEST:
            raise InvalidModelError(f"{path}: member {MANIFEST!r} names itself as graph {role!r}")
        if name in seen:
            # Each member is read (and parsed) once: one member shared by graphs would multiply its cost per graph,
            # and each role's runner rewrites its graph in place, so the roles could not share one parsed copy.
            raise InvalidModelError(
                f"{path}: member {name!r} is named for graphs {seen[name]!r} and {role!r}; each graph needs its own"
            )
        seen[name] = role
    return md.validate(manifest, path, label=f"{MANIFEST} ")


def read_manifest(path) -> dict:
    """The bundle's manifest (a dict with at least "kind" and "graphs"), read without the graphs."""
    path = Path(path)
    with _open(path) as zf:
        return _manifest(zf, path)


def read_bundle(path) -> tuple[dict, dict[str, onnx.ModelProto]]:
    """(manifest, {role: ONNX model}) of a bundle; InvalidModelError for anything malformed or over the limits."""
    path = Path(path)
    total_limit = max_bundle_bytes()
    graphs = {}
    with _open(path) as zf:
        manifest = _manifest(zf, path)
        used = zf.getinfo(MANIFEST).file_size
        infos = {}
        for role, name in manifest["graphs"].items():  # every size checked before anything is inflated
            infos[role] = info = _info(zf, path, name, min(MAX_GRAPH_BYTES, total_limit))
            used += info.file_size
            if used > total_limit:
                raise InvalidModelError(
                    f"{path}: its members come to more than {total_limit} bytes inflated (at member {name!r}); "
                    "set GENRT_MAX_BUNDLE_BYTES (e.g. GENRT_MAX_BUNDLE_BYTES=4G) to allow larger bundles"
                )
        for role, info in infos.items():
            blob = _read(zf, path, info, min(MAX_GRAPH_BYTES, total_limit))
            try:
                model = onnx.load_from_string(blob)
            except Exception as exc:  # protobuf DecodeError and friends
                raise InvalidModelError(
                    f"{path}: member {info.filename!r} is not a readable ONNX graph ({exc})"
                ) from None
            del blob
            if not model.graph.node:
                raise InvalidModelError(f"{path}: member {info.filename!r} has no nodes")
            graphs[role] = model
    return manifest, graphs
