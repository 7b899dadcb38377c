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
"""

from __future__ import annotations

import json
from typing import Any

from genrt.errors import ArgumentError

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
        if not key.startswith(PREFIX):
            continue
        try:
            out[key[len(PREFIX) :]] = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            out[key[len(PREFIX) :]] = text
    return out
