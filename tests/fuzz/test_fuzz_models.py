"""Fuzzing genrt.load with mutated ONNX files and .genrt bundles built in the test.

    GENRT_FUZZ_SECONDS=600 python -m pytest -m fuzz tests/fuzz/test_fuzz_models.py -s

Seeds: a tiny conv model (x (N, 3, H, W) -> Conv 3x3 -> y) with genrt metadata_props for several kinds, and
bundles (a zip with manifest.json naming ONNX members, laid out like genrt/models/igan-digits.genrt) of kind
"manipulator", stored and deflated. Mutations: bytes (bit flips, insertions, deletions, truncation), the metadata
JSON values and the manifest (deep nesting, wrong types, huge numbers, NaN and infinities, missing and extra keys),
zip member sizes in the central directory, and a zip bomb (a member that inflates to BOMB_BYTES). The contract:
genrt.load and the metadata-backed properties of what it returns raise nothing but GenrtError subclasses.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import struct
import tempfile
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import genrt
from genrt.errors import GenrtError
from tests.fuzz.harness import run_fuzzer, run_rounds, time_limit

EXAMPLE_SECONDS = 60
BOMB_BYTES = 1 << 30  # the zip bomb's member: 1 GiB of zeros, about 1 MB deflated
KINDS = ("generator", "discriminator", "stylizer", "upscaler", "inpainter", "classifier", "vae", "rbm", "infogan")
PROPERTIES = (
    "kind", "inputs", "outputs", "latent_dim", "latent_shape", "latent_prior", "scale", "size", "multiple",
    "styles", "image_size", "channels", "classes", "codes",
)  # fmt: skip


def conv_model(metadata: dict[str, str], *, channels: int = 3) -> onnx.ModelProto:
    """x (N, C, H, W) -> 3x3 conv, padding 1 -> y (N, C, H, W), with these metadata_props (already JSON-encoded)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(channels, np.float32), "b")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def base_metadata(kind: str) -> dict:
    meta = {"kind": kind, "version": "0.1.0", "format": "portable", "description": "fuzz seed"}
    meta.update(
        {
            "generator": {"latent_dim": 3, "output_range": [-1, 1]},
            "upscaler": {"scale": 1, "input_range": [0, 1], "output_range": [0, 1]},
            "stylizer": {"multiple": 4, "styles": ["a", "b"]},
            "inpainter": {"size": 8},
            "classifier": {"classes": ["x", "y", "z"]},
            "infogan": {"latent_dim": 3, "codes": {"noise": 1, "categorical": [2], "continuous": 0}},
        }.get(kind, {})
    )
    return meta


def encode(meta: dict) -> dict[str, str]:
    return {f"genrt.{k}": json.dumps(v) for k, v in meta.items()}


def bundle_bytes(manifest, graphs: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED, raw_manifest=None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        zf.writestr("manifest.json", raw_manifest if raw_manifest is not None else json.dumps(manifest, indent=1))
        for name, data in graphs.items():
            zf.writestr(name, data)
    return buf.getvalue()


def base_manifest() -> dict:
    return {
        "kind": "manipulator",
        "format": 1,
        "graphs": {"encoder": "encoder.onnx", "projection": "projection.onnx", "edit": "edit.onnx"},
        "latent_dim": 3,
        "image_shape": [3, 8, 8],
        "latent_prior": "normal",
        "output_range": [-1.0, 1.0],
        "feature_weight": 0.1,
    }


@cache
def graph_bytes() -> bytes:
    return conv_model({}).SerializeToString()


@cache
def onnx_seeds() -> tuple[tuple[str, bytes], ...]:
    return tuple((kind, conv_model(encode(base_metadata(kind))).SerializeToString()) for kind in KINDS)


@cache
def bundle_seeds() -> tuple[tuple[str, bytes], ...]:
    graphs = {name: graph_bytes() for name in base_manifest()["graphs"].values()}
    return (
        ("bundle-deflated", bundle_bytes(base_manifest(), graphs)),
        ("bundle-stored", bundle_bytes(base_manifest(), graphs, compression=zipfile.ZIP_STORED)),
    )


@cache
def zip_bomb() -> bytes:
    """A manipulator bundle whose edit.onnx inflates to BOMB_BYTES (a valid graph, then zeros)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("manifest.json", json.dumps(base_manifest()))
        zf.writestr("encoder.onnx", graph_bytes())
        zf.writestr("projection.onnx", graph_bytes())
        with zf.open("edit.onnx", "w", force_zip64=True) as member:
            member.write(graph_bytes())
            zeros = bytes(1 << 20)
            for _ in range(BOMB_BYTES >> 20):
                member.write(zeros)
    return buf.getvalue()


# --- strategies ---------------------------------------------------------------------------------------------------

NASTY_NUMBERS = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -1e308, 10**400, -(10**30), 2**63, 2**64 + 1, -1, 0, -0.0, 0.5, 1e-320]
)
SCALARS = (
    NASTY_NUMBERS
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.booleans()
    | st.none()
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def deep(depth: int, leaf=1, as_dict: bool = False):
    value = leaf
    for _ in range(depth):
        value = {"a": value} if as_dict else [value]
    return value


def dumps(value) -> str:
    """JSON text of value (Python's json writes NaN and Infinity, as a careless exporter would); deep nests by hand."""
    try:
        return json.dumps(value)
    except (RecursionError, ValueError):
        return "[" * 100_000 + "]" * 100_000


DEEP = st.builds(deep, st.sampled_from([50, 1000, 50_000]), st.just(1), st.booleans())
RAW_JSON = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-1e999",
        "9" * 5000,
        "[" * 100_000 + "]" * 100_000,
        '{"a":',
        "",
        "\ud800",
    ]
)


@st.composite
def byte_mutations(draw, data: bytes) -> bytes:
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data = data[:pos] + bytes([data[pos] ^ (1 << draw(st.integers(0, 7)))]) + data[pos + 1 :]
        elif kind == "insert":
            data = data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data = data[:pos] + chunk + data[pos + len(chunk) :]
        elif kind == "delete":
            data = data[:pos] + data[pos + draw(st.integers(1, 64)) :]
        else:
            data = data[:pos]
    return data


@st.composite
def metadata_case(draw):
    """An ONNX file whose genrt metadata values (and keys) are replaced by hostile JSON."""
    kind = draw(st.sampled_from(KINDS))
    meta = encode(base_metadata(kind))
    keys = list(meta) + [f"genrt.{p}" for p in PROPERTIES if f"genrt.{p}" not in meta]
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4)):
        how = draw(st.sampled_from(["value", "deep", "raw", "drop"]))
        if how == "drop":
            meta.pop(key, None)
        elif how == "raw":
            meta[key] = draw(RAW_JSON | st.text(max_size=20))
        else:
            meta[key] = dumps(draw(DEEP if how == "deep" else JSON_VALUES))
    meta = {k: v.encode("utf-8", "replace").decode() for k, v in meta.items()}  # protobuf strings: no surrogates
    return "metadata", conv_model(meta).SerializeToString(), ".onnx"


@st.composite
def manifest_case(draw):
    """A bundle whose manifest.json has hostile values, structure or text."""
    manifest = base_manifest()
    graphs = {name: graph_bytes() for name in manifest["graphs"].values()}
    how = draw(st.sampled_from(["values", "graphs", "raw", "deep"]))
    raw = None
    if how == "values":
        for key in draw(st.lists(st.sampled_from([*manifest, "config", "objective_inputs"]), min_size=1, max_size=4)):
            if draw(st.booleans()):
                manifest[key] = draw(JSON_VALUES | DEEP)
            else:
                manifest.pop(key, None)
    elif how == "graphs":
        names = st.sampled_from(["edit.onnx", "../edit.onnx", "/etc/passwd", ".hidden", "a\\b", "", "manifest.json"])
        manifest["graphs"] = draw(
            st.dictionaries(st.sampled_from(["encoder", "projection", "edit", "x"]), names | JSON_VALUES, max_size=4)
            | JSON_VALUES
        )
    elif how == "deep":
        manifest = draw(DEEP)
    else:
        raw = draw(RAW_JSON | st.text(max_size=40)).encode("utf-8", "surrogatepass")
    text = raw if raw is not None else dumps(manifest)
    return "manifest", bundle_bytes(None, graphs, raw_manifest=text), ".genrt"


def _central_directory_sizes(data: bytes, value: int, field: str) -> bytes:
    """data with each central-directory entry's (and local header's) size field set to value."""
    offsets = {"compressed": (20, 18), "uncompressed": (24, 22)}[field]
    out = bytearray(data)
    for signature, at in ((b"PK\x01\x02", offsets[0]), (b"PK\x03\x04", offsets[1])):
        pos = out.find(signature)
        while pos >= 0:
            if pos + at + 4 <= len(out):
                out[pos + at : pos + at + 4] = struct.pack("<I", value & 0xFFFFFFFF)
            pos = out.find(signature, pos + 4)
    return bytes(out)


@st.composite
def file_case(draw):
    """A seed ONNX file or bundle with its bytes (or a bundle's zip size fields) mutated."""
    name, data = draw(st.sampled_from(onnx_seeds() + bundle_seeds()))
    suffix = ".genrt" if name.startswith("bundle") else ".onnx"
    if suffix == ".genrt" and draw(st.booleans()):
        value = draw(st.sampled_from([0, 1, 100, 0x7FFFFFFF, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1))
        data = _central_directory_sizes(data, value, draw(st.sampled_from(["compressed", "uncompressed"])))
    else:
        data = draw(byte_mutations(data))
    return name, data, suffix


CASES = file_case() | metadata_case() | manifest_case()


# --- the contract -------------------------------------------------------------------------------------------------


def check_case(case, folder: Path) -> None:
    name, data, suffix = case
    path = folder / f"model{suffix}"
    path.write_bytes(data)
    with time_limit(EXAMPLE_SECONDS, "a load"):
        try:
            model = genrt.load(path, threads=1)
        except GenrtError:
            return
        repr(model)
        for prop in PROPERTIES:
            if not hasattr(type(model), prop) and prop not in vars(model):
                continue  # not this class's: a plain AttributeError is Python's, not a finding
            try:
                getattr(model, prop)
            except GenrtError:  # ModelKindError (an AttributeError too) for another kind's property
                pass


def fuzz_models(seconds: float, seed: int) -> None:
    """The fuzzer (run by the harness in a child process): the zip bomb once, then mutated files for the budget."""
    logging.getLogger("onnxruntime").setLevel(logging.CRITICAL)
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    onnx_seeds(), bundle_seeds()
    with tempfile.TemporaryDirectory(prefix="genrt-fuzz-models-") as tmp:
        if os.environ.get("GENRT_FUZZ_BOMB", "1") != "0":
            check_case(("zip-bomb", zip_bomb(), ".genrt"), Path(tmp))
        run_rounds("fuzz_models", CASES, lambda case: check_case(case, Path(tmp)), seconds=seconds, seed=seed)


@pytest.mark.fuzz
def test_fuzz_load():
    run_fuzzer("tests.fuzz.test_fuzz_models:fuzz_models")


# --- fixed cases (fast, not marked fuzz) ----------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(KINDS)))
def test_onnx_seeds_load(index, tmp_path):
    name, data = onnx_seeds()[index]
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    assert genrt.load(path, threads=1).kind == name


@pytest.mark.parametrize("index", [0, 1])
def test_bundle_seeds_load(index, tmp_path):
    path = tmp_path / "m.genrt"
    path.write_bytes(bundle_seeds()[index][1])
    model = genrt.load(path, threads=1)
    assert model.kind == "manipulator" and model.latent_dim == 3
