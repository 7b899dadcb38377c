"""genrt bundles (.genrt): several ONNX graphs and a manifest.json in one zip, for models that are more than one
graph (the iGAN manipulator: its encoder and the objective's projection and edit gradient graphs). Nothing in a
bundle is executable: the manifest is JSON, each graph an ONNX protobuf named by the manifest; no other member is
read, no path is joined, and every member's size is checked before it is inflated."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import onnx

from genrt.errors import InvalidModelError

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
MAX_GRAPH_BYTES = 1 << 31  # protobuf's own limit


def _member(zf: zipfile.ZipFile, path: Path, name, limit: int) -> bytes:
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise InvalidModelError(f"{path}: bad member name {name!r} in the manifest")
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise InvalidModelError(f"{path}: the bundle has no {name}") from None
    if info.file_size > limit:
        raise InvalidModelError(f"{path}: {name} is {info.file_size} bytes, over the {limit}-byte limit")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InvalidModelError(f"{path}: {name} is corrupt ({exc})") from None


def read_manifest(path) -> dict:
    """The bundle's manifest (a dict with at least "kind" and "graphs"), read without the graphs."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            text = _member(zf, path, MANIFEST, MAX_MANIFEST_BYTES)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidModelError(f"{path}: not a readable genrt bundle ({exc})") from None
    try:
        manifest = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidModelError(f"{path}: {MANIFEST} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("kind"), str):
        raise InvalidModelError(f'{path}: {MANIFEST} has no "kind"')
    if not isinstance(manifest.get("graphs"), dict) or not manifest["graphs"]:
        raise InvalidModelError(f"{path}: {MANIFEST} names no graphs")
    return manifest


def read_bundle(path) -> tuple[dict, dict[str, onnx.ModelProto]]:
    """(manifest, {role: ONNX model}) of a bundle; InvalidModelError for anything malformed."""
    path = Path(path)
    manifest = read_manifest(path)
    graphs = {}
    with zipfile.ZipFile(path) as zf:
        for role, name in manifest["graphs"].items():
            blob = _member(zf, path, name, MAX_GRAPH_BYTES)
            try:
                model = onnx.load_from_string(blob)
            except Exception as exc:  # protobuf DecodeError and friends
                raise InvalidModelError(f"{path}: {name} is not a readable ONNX graph ({exc})") from None
            if not model.graph.node:
                raise InvalidModelError(f"{path}: {name} has no nodes")
            graphs[role] = model
    return manifest, graphs
