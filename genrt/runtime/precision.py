"""The precision genrt's convolutions run in: ``genrt.load(path, precision="f32" | "bf16" | "auto")``.

- ``"f32"`` (the library's default): exact float32, as the model was exported.
- ``"bf16"``: genrt.Conv and genrt.ConvTranspose (group 1) round their inputs and weights to bfloat16 and sum in
  float32 (TDPBF16PS tiles on a CPU with Intel AMX, VDPBF16PS on one with AVX512-BF16; the same rounding emulated,
  slower, elsewhere). Normalizations, activations and every op genrt does not
  run stay float32. Per layer, the faster of ORT's float32, genrt's float32 and genrt's bfloat16 is chosen.
- ``"auto"`` (the applications' default): bfloat16 where the CPU has bfloat16 instructions **and** the model passes a
  fidelity check when a shape class is first prepared: its output on a natural photo (scikit-image's astronaut,
  shipped as genrt/runtime/probe.jpg, resized to the class's size, at most 64x64 where height and width are
  dynamic, and scaled to the model's input range) must be
  within :data:`MIN_PSNR_DB` of the float32 output (PSNR, peak = the float32 output's range). Float32 otherwise.
  The verdict is measured once per model, shape class and CPU, and kept with the kernel decisions (genrt.runtime.fuse's
  cache). ``Model.kernels["precision"]`` (and ``genrt info``) say which was chosen and why.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

import genrt
from genrt.errors import ArgumentError

CHOICES = ("f32", "bf16", "auto")
MIN_PSNR_DB = 45.0  # "auto" takes bfloat16 only at or above this PSNR against float32
PROBE_SIDE = 64  # the check runs at most this high and wide where a model's height and width are dynamic
NATIVE_ISAS = ("avx512bf16", "amx")  # genrt.kernels.cpu_isa() values with bfloat16 dot-product instructions
_PROBE = Path(__file__).with_name("probe.jpg")


def check(precision) -> str:
    if precision not in CHOICES:
        raise ArgumentError(f"precision: expected one of {', '.join(CHOICES)}, got {precision!r}")
    return precision


def native_bf16() -> bool:
    """Whether genrt's kernels run bfloat16 with the CPU's own instructions (not emulated)."""
    return genrt.kernels.cpu_isa() in NATIVE_ISAS


@functools.cache
def _photo():
    """The probe photo (PIL, RGB), read once."""
    from PIL import Image

    with Image.open(_PROBE) as im:
        return im.convert("RGB")


def _resized(height: int, width: int, channels: int) -> np.ndarray:
    """The probe photo as (channels, height, width) in [0, 1]; grey is its mean, a fourth channel opaque."""
    from PIL import Image

    rgb = np.asarray(_photo().resize((width, height), Image.BICUBIC), dtype=np.float32).transpose(2, 0, 1) / 255.0
    if channels == 1:
        return rgb.mean(0, keepdims=True)
    if channels == 4:
        return np.concatenate([rgb, np.ones_like(rgb[:1])])
    return rgb[:channels]


def probe_feeds(inputs, shapes: dict, input_range=None) -> dict:
    """Feeds for `inputs` (onnx ValueInfos) at `shapes` ({name: dims}): the photo for image-like float inputs (rank
    4, 1 to 4 channels), scaled to `input_range` ([lo, hi], default [0, 1]); an even mix (1/n) for a rank-2 float
    input (a multi-style network's style weights); seeded normal values for other float inputs; zeros otherwise."""
    from onnx import helper

    lo, hi = input_range or (0.0, 1.0)
    rng = np.random.default_rng(0)
    feeds = {}
    for value in inputs:
        dims = [int(d) for d in shapes[value.name]]
        dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if np.issubdtype(dtype, np.floating) and len(dims) == 4 and 1 <= dims[1] <= 4:
            image = lo + (hi - lo) * _resized(dims[2], dims[3], dims[1])
            feeds[value.name] = np.broadcast_to(image, dims).astype(dtype)
        elif np.issubdtype(dtype, np.floating) and len(dims) == 2:
            feeds[value.name] = np.full(dims, 1.0 / max(1, dims[1]), dtype=dtype)
        elif np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[value.name] = np.zeros(dims, dtype=dtype)
    return feeds


def psnr(reference: list, output: list) -> float:
    """The lowest PSNR in dB over the outputs, peak = each float32 output's range (inf where equal). Over the
    float32 output's finite values; a value that is finite there but not in `output` gives -inf."""
    worst = float("inf")
    for ref, out in zip(reference, output, strict=True):
        ref, out = np.asarray(ref, dtype=np.float64), np.asarray(out, dtype=np.float64)
        finite = np.isfinite(ref)
        ref, out = ref[finite], out[finite]
        if not np.isfinite(out).all():
            return float("-inf")
        mse = float(np.mean((ref - out) ** 2)) if ref.size else 0.0
        peak = float(ref.max() - ref.min()) if ref.size else 0.0
        if mse > 0:
            worst = min(worst, 10 * np.log10(max(peak, 1e-12) ** 2 / mse))
    return worst


def model_digest(model) -> str:
    return hashlib.sha256(model.SerializeToString()).hexdigest()[:20]


def verdict_key(digest: str, class_key: tuple, threads: int) -> str:
    return json.dumps(["precision", genrt.__version__, digest, list(class_key), genrt.kernels.cpu_isa(), threads])


def describe(choice: str, db: float | None, reason: str = "") -> str:
    """One line for Model.kernels["precision"]."""
    if reason:
        return f"{choice}: {reason}"
    shown = "identical" if db == float("inf") else "not finite" if db == float("-inf") else f"{db:.1f} dB"
    verdict = ">=" if choice == "bf16" else "<"
    return f"{choice}: output {shown} PSNR against float32 on the probe photo ({verdict} {MIN_PSNR_DB:g} dB)"
