"""The model contract: genrt's metadata keys, stored in ONNX ``metadata_props`` (and a JSON beside .pt2/.pt files).

Every value is stored JSON-encoded under a ``genrt.`` key, so numbers, lists and nested configs round-trip.
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

# Keys genrt itself reads; anything else the caller passes is kept as given.
KNOWN = {
    "kind": "what the model is; picks the class genrt.load returns",
    "version": "genrt version that exported it",
    "latent_dim": "generators: size of z",
    "latent_prior": "generators: 'normal' (N(0, 1)) or 'uniform' (U(-1, 1))",
    "input_layout": "e.g. 'NC' for latents, 'NCHW' for images",
    "output_layout": "e.g. 'NCHW'",
    "output_range": "[lo, hi] of image outputs, e.g. [-1, 1] for tanh",
    "input_range": "[lo, hi] that image inputs are expected in",
    "scale": "upscalers: the scale factor",
    "config": "the training config, when known",
    "format": "'native' (genrt-domain ops) or 'portable' (standard ONNX ops only)",
}


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
