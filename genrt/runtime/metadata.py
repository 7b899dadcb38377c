"""The model contract: genrt's metadata keys, stored in ONNX ``metadata_props`` (and a JSON beside .pt2/.pt files).

Every value is stored JSON-encoded under a ``genrt.`` key, so numbers, lists and nested configs round-trip.
Keys genrt itself writes and reads (callers may add any others):

- ``kind``: what the model is; picks the class genrt.load returns (one of KINDS).
- ``version``: the genrt version that exported it. ``format``: "native" (genrt-domain ops) or "portable".
- ``latent_dim``, ``latent_prior`` ("normal": N(0, 1); "uniform": U(-1, 1)): generators. ``latent_shape``: the
  latent input's shape without the batch axis where it is not (latent_dim,), e.g. [100, 1, 1].
- ``input_layout``, ``output_layout``: "NC" for vectors, "NCHW" for images.
- ``input_range``, ``output_range``: [lo, hi] of image values, e.g. [-1, 1] for a tanh output.
- ``scale``: upscalers' factor. ``config``: the training config. ``description``: one line for list_models().
- ``channel_order``: "RGB" (default) or "BGR", the order of an image input's and output's channels.
- ``image_input``, ``style_input``, ``mask_input``: which graph input holds the image, a multi-style stylizer's
  style weights, an inpainter's mask (default: by position). ``adopted_from``: the file `genrt adopt` described
  (genrt.runtime.adopt).
- per kind: ``styles``, ``multiple`` (stylizers), ``size`` (inpainters), ``image_size``, ``channels``, ``classes``,
  ``codes``, ``hidden``, ``image_shape``, ``feature_weight``, ... (see CONTRACT below).

A model file is untrusted input: :func:`decode` bounds every value's size and JSON nesting (checked by a linear scan
before ``json.loads``, so a deeply nested value can never raise RecursionError), and :func:`validate` type-checks
every key of the contract once, at load, so what a Model reads from its metadata is what its kind expects. Keys
genrt does not know are kept untouched.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from genrt.errors import ArgumentError, InvalidModelError

PREFIX = "genrt."
KINDS = (
    "generator",
    "discriminator",
    "classifier",
    "infogan",
    "vae",
    "rbm",
    "encoder",
    "decoder",
    "stylizer",
    "upscaler",
    "inpainter",
    "model",
)


def encode(metadata: dict[str, Any]) -> dict[str, str]:
    """{'kind': 'generator', ...} -> {'genrt.kind': '"generator"', ...}"""
    out = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise ArgumentError(f"metadata: keys must be non-empty strings, got {key!r}")
        try:
            out[key if key.startswith(PREFIX) else PREFIX + key] = json.dumps(value, sort_keys=True)
        except TypeError as exc:
            raise ArgumentError(f"metadata[{key!r}]: value must be JSON-serialisable ({exc})") from None
    return out


def decode(props: dict[str, str]) -> dict[str, Any]:
    """The inverse of :func:`encode`; keys without the genrt prefix are ignored, non-JSON values kept as text."""
    out = {}
    for key, text in props.items():
        if not isinstance(key, str) or not key.startswith(PREFIX):  # protobuf gives bytes for invalid UTF-8
            continue
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidModelError(f"metadata {key!r} is not UTF-8 text") from None
        try:
            out[key[len(PREFIX) :]] = json.loads(text)
        except (ValueError, TypeError):  # not JSON (or an integer of more digits than Python converts): text
            out[key[len(PREFIX) :]] = text
    return out


# --- limits on untrusted metadata ------------------------------------------------------------------------------

MAX_DEPTH = 32  # JSON nesting of one value; genrt's own configs and metrics are 3 deep
MAX_VALUE_CHARS = 4 << 20  # characters of one metadata value (a training config is a few KB)
MAX_TOTAL_CHARS = 16 << 20  # characters of all of a model's genrt metadata together


def json_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep ``[`` and ``{`` nest in `text` outside JSON strings; stops counting past `limit` (returns limit + 1).

    A linear scan with no recursion: run it before ``json.loads``, whose recursion a deeply nested value exhausts.
    """
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return limit + 1
        elif ch in "]}":
            depth -= 1
    return deepest


def check_json_text(text: str, where: str, *, max_chars: int = MAX_VALUE_CHARS, max_depth: int = MAX_DEPTH) -> None:
    """InvalidModelError naming `where` when `text` is longer than `max_chars` or nests deeper than `max_depth`."""
    if len(text) > max_chars:
        raise InvalidModelError(f"{where} is {len(text)} characters long, over the limit of {max_chars}")
    if json_depth(text, max_depth) > max_depth:
        raise InvalidModelError(f"{where} nests more than {max_depth} levels deep (the limit)")


def loads(text, where: str, *, max_chars: int = MAX_VALUE_CHARS, max_depth: int = MAX_DEPTH):
    """``json.loads(text)`` with the size and depth checked first; InvalidModelError naming `where` otherwise."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidModelError(f"{where} is not UTF-8 text ({exc})") from None
    check_json_text(text, where, max_chars=max_chars, max_depth=max_depth)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer with too many digits
        raise InvalidModelError(f"{where} is not JSON ({exc})") from None


def decode_checked(props: dict[str, str], source) -> dict[str, Any]:
    """:func:`decode` of untrusted properties (e.g. a file's ``metadata_props``), then :func:`validate`d.

    InvalidModelError (naming `source` and the key) for a value over the size or depth limits, or a key of the
    contract with a value of the wrong type.
    """
    total = 0
    for key, text in props.items():
        if not isinstance(key, str) or not key.startswith(PREFIX):
            continue
        if not isinstance(text, str):
            raise InvalidModelError(f"{source}: metadata {key!r} is not UTF-8 text")
        total += len(text)
        check_json_text(text, f"{source}: metadata {key!r}")
    if total > MAX_TOTAL_CHARS:
        raise InvalidModelError(
            f"{source}: its genrt metadata is {total} characters long, over the {MAX_TOTAL_CHARS} limit"
        )
    return validate(decode(props), source)


# --- the contract: what each key genrt reads must hold ---------------------------------------------------------


def _is_int(value, lo: int, hi: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return isinstance(value, int) and lo <= value <= hi


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_str(value) -> bool:
    return isinstance(value, str) and len(value) <= 100_000


def _whole(lo: int, hi: int):
    return (lambda v: _is_int(v, lo, hi)), f"a whole number from {lo} to {hi}"


def _string():
    return _is_str, "a string"


def _strings(what: str = "a list of strings"):
    return (lambda v: isinstance(v, list) and len(v) <= 100_000 and all(_is_str(s) for s in v)), what


def _range():
    def ok(v):
        return isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v) and v[0] < v[1]

    return ok, "two finite numbers [lo, hi] with lo < hi"


def _dims(n_lo: int, n_hi: int, hi: int, what: str):
    def ok(v):
        return isinstance(v, list) and n_lo <= len(v) <= n_hi and all(_is_int(d, 1, hi) for d in v)

    return ok, what


def _codes(v) -> bool:
    return (
        isinstance(v, dict)
        and _is_int(v.get("noise"), 0, 1 << 20)
        and _is_int(v.get("continuous"), 0, 1 << 16)
        and isinstance(v.get("categorical"), list)
        and 1 <= len(v["categorical"]) <= 64
        and all(_is_int(c, 1, 1 << 16) for c in v["categorical"])
    )


def _io(v) -> bool:
    def spec(s):
        return (
            isinstance(s, dict)
            and _is_str(s.get("name"))
            and isinstance(s.get("shape"), list)
            and len(s["shape"]) <= 16
            and all(_is_str(d) or _is_int(d, 0, 1 << 40) for d in s["shape"])
            and s.get("dtype") in _DTYPES
        )

    return isinstance(v, dict) and all(
        isinstance(v.get(k, []), list) and all(spec(s) for s in v.get(k, [])) for k in ("inputs", "outputs")
    )


_DTYPES = (
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
)
_BIG = 1 << 20  # latent sizes, hidden units
_PIXELS = 1 << 16  # a side in pixels

# key -> (check(value) -> bool, what it must be). Only keys present are checked; absent ones take each kind's default.
CONTRACT: dict[str, tuple] = {
    "kind": _string(),
    "version": _string(),
    "format": ((lambda v: _is_str(v) or _is_int(v, 0, 1 << 30)), "a string (or a bundle's format number)"),
    "description": _string(),
    "dataset": _string(),
    "latent_dim": _whole(1, _BIG),
    "latent_prior": ((lambda v: v in ("normal", "uniform")), '"normal" or "uniform"'),
    "latent_shape": _dims(1, 8, _BIG, f"a list of 1 to 8 whole numbers from 1 to {_BIG}"),
    "input_layout": _string(),
    "output_layout": _string(),
    "input_range": _range(),
    "output_range": _range(),
    "scale": _whole(1, 64),
    "config": ((lambda v: isinstance(v, dict)), "a JSON object"),
    "styles": _strings(),
    "multiple": _whole(1, 1024),
    "size": _whole(1, _PIXELS),
    "image_size": _dims(2, 2, _PIXELS, f"[height, width], whole numbers from 1 to {_PIXELS}"),
    "channels": _whole(1, 4),
    "classes": (
        (lambda v: isinstance(v, list) and all(_is_str(c) or _is_int(c, -(1 << 62), 1 << 62) for c in v)),
        "a list of class names",
    ),
    "codes": (_codes, 'an object {"noise": n, "categorical": [k, ...], "continuous": m} of whole numbers'),
    "hidden": _whole(1, _BIG),
    "image_shape": _dims(3, 3, _PIXELS, f"[channels, height, width], whole numbers from 1 to {_PIXELS}"),
    "feature_weight": ((lambda v: _is_number(v) and v >= 0), "a finite number >= 0"),
    "objective_inputs": _strings(),
    "objective_outputs": _strings(),
    "io": (_io, 'an object {"inputs": [...], "outputs": [...]} of {"name", "shape", "dtype"} specs'),
    "channel_order": ((lambda v: v in ("RGB", "BGR")), '"RGB" or "BGR"'),
    "style_input": _string(),
    "image_input": _string(),
    "mask_input": _string(),
    "adopted_from": _string(),
}


def validate(metadata, source, *, label: str = PREFIX) -> dict:
    """`metadata` itself once every key of :data:`CONTRACT` it has holds what genrt expects; else InvalidModelError
    naming `source`, the key (``label`` + key, e.g. ``genrt.scale``) and what was expected. Other keys are kept."""
    if not isinstance(metadata, dict):
        raise InvalidModelError(f"{source}: genrt metadata must be a JSON object, got {type(metadata).__name__}")
    for key, (ok, what) in CONTRACT.items():
        if key in metadata and not ok(metadata[key]):
            shown = repr(metadata[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise InvalidModelError(f"{source}: metadata {label}{key} must be {what}, got {shown}")
    return metadata


# --- byte sizes from the environment --------------------------------------------------------------------------

_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str, name: str) -> int:
    """``"8G"``, ``"512m"``, ``"1.5GiB"``, ``"4096"`` -> bytes (binary units); ArgumentError naming `name` else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
    if not m or (m.group(2) == "" and str(text).strip().lower().endswith("ib")):
        raise ArgumentError(f"{name}: expected a size in bytes such as 8G, 512M or 1073741824, got {text!r}")
    value = int(float(m.group(1)) * _SUFFIXES[m.group(2).lower()])
    if value < 1:
        raise ArgumentError(f"{name}: expected a positive size, got {text!r}")
    return value


def env_bytes(name: str, default: int) -> int:
    """The size in environment variable `name` (see :func:`parse_bytes`), or `default` where it is unset or empty."""
    text = os.environ.get(name, "").strip()
    return parse_bytes(text, name) if text else default
