"""Load-time rewrite of ONNX Resize nodes in linear, cubic or nearest mode into ``genrt.Resize`` nodes.

ONNX Runtime's cubic Resize runs about a pixel per 50 ns: in sr-x4, whose graph adds a bicubic 4x upscale of its
input to the network's output, that one node took 176 of 276 ms per 256x256 -> 1024x1024 call on an AMX Xeon
(BENCHMARKS.md). genrt's resize kernel (csrc/core/resize.h) filters the rows, then the columns, with vectors, and
threads over planes and row blocks. It computes what ONNX Resize computes for 4-D float32 inputs scaled in H and W by
constant scales, in linear or cubic mode with the half_pixel, pytorch_half_pixel, align_corners or asymmetric
coordinates, no antialias and exclude_outside 0 (the taps read clamped indices), and in nearest mode (opset 11 on)
with any nearest_mode (Real-ESRGAN's 2x upsamplings: ORT's took 13.5 of its 405 ms); other Resize nodes stay ONNX
Runtime's. Always applied on the CPU; ``GENRT_RESIZE=ort`` keeps the graph's nodes. Like genrt.runtime.fuse_norms,
it changes only the models OrtRunner gives its CPU sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper, shape_inference

from genrt import onnx_ops
from genrt.runtime import fuse, fuse_chains, fuse_norms
from genrt.runtime.fuse_chains import attr

STANDARD = ("", "ai.onnx")
ENV = "GENRT_RESIZE"
COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def mode() -> str:
    """How Resize runs on the CPU: $GENRT_RESIZE, "genrt" (the default) or "ort"."""
    return fuse.genrt_or_ort(ENV)


@dataclass
class Resize:
    """One Resize node genrt.Resize computes: input `x` to `output`, scaled by `scales` (h, w)."""

    x: str
    output: str
    scales: tuple[float, float]
    kind: str  # "linear", "cubic" or "nearest"
    coordinates: str
    cubic_a: float
    nearest: str = "round_prefer_floor"  # nearest mode's rounding

    def node(self, threads: int) -> onnx.NodeProto:
        return helper.make_node(
            "Resize", [self.x], [self.output], name=f"{self.output}_genrt_resize", domain=onnx_ops.DOMAIN,
            scales=list(self.scales), mode=self.kind, coordinate_transformation_mode=self.coordinates,
            cubic_coeff_a=self.cubic_a, nearest_mode=self.nearest, threads=threads,
        )  # fmt: skip


def _text(node, name: str, default: str) -> str:
    value = attr(node, name, default)
    return value.decode() if isinstance(value, bytes) else value


def _resize(node, g: fuse_chains._Graph, opset: int, shapes: dict) -> Resize | None:
    kind = _text(node, "mode", "nearest")
    nearest = _text(node, "nearest_mode", "round_prefer_floor")
    if kind not in ("linear", "cubic", "nearest") or attr(node, "antialias", 0) or attr(node, "exclude_outside", 0):
        return None
    if nearest not in NEAREST or (kind == "nearest" and opset < 11):
        return None  # Resize-10's nearest rounds differently
    coordinates = "asymmetric" if opset < 11 else _text(node, "coordinate_transformation_mode", "half_pixel")
    if coordinates not in COORDINATES:
        return None
    # Resize-10: (X, scales); later: (X, roi, scales, sizes), sizes absent
    index = 1 if opset < 11 else 2
    if len(node.input) <= index or not node.input[index] or (len(node.input) > 3 and node.input[3]):
        return None
    scales, _ = g.constant(node.input[index])
    x_shape = shapes.get(node.input[0])
    if scales is None or x_shape is None or len(x_shape) != 4:
        return None
    scales = [float(s) for s in scales.reshape(-1)]
    axes = attr(node, "axes", None)
    if axes is not None:  # opset 18: scales for these axes only
        axes = [a % 4 for a in axes]
        if sorted(axes) != [2, 3] or len(scales) != 2:
            return None
        scales = [1.0, 1.0, scales[axes.index(2)], scales[axes.index(3)]]
    if len(scales) != 4 or scales[:2] != [1.0, 1.0] or min(scales[2:]) <= 0:
        return None
    return Resize(node.input[0], node.output[0], (scales[2], scales[3]), kind, coordinates,
                  float(attr(node, "cubic_coeff_a", -0.75)), nearest)  # fmt: skip


def find(model: onnx.ModelProto) -> list[Resize]:
    """The Resize nodes genrt.Resize can run (4-D float32 inputs), in graph order."""
    nodes = [n for n in model.graph.node if n.op_type == "Resize" and n.domain in STANDARD]
    if not nodes:
        return []
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:
        return []
    values = list(inferred.graph.value_info) + list(inferred.graph.input)
    shapes = {v.name: [None] * len(v.type.tensor_type.shape.dim) for v in values}  # only the rank matters here
    floats = {v.name for v in values if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    g = fuse_chains._Graph(model, shapes)
    opset = fuse_norms._opset(model)
    found = (_resize(n, g, opset, shapes) for n in nodes if n.input[0] in floats)
    return [r for r in found if r is not None]


def apply(model: onnx.ModelProto, nodes: list[Resize], threads: int = 0) -> onnx.ModelProto:
    """A copy of `model` with each Resize in `nodes` as a genrt.Resize node; `model` where nodes is empty."""
    if not nodes:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_output = {r.output: r for r in nodes}
    kept = [
        by_output[n.output[0]].node(threads)
        if n.op_type == "Resize" and n.domain in STANDARD and n.output[0] in by_output
        else n
        for n in out.graph.node
    ]
    return fuse.with_nodes(out, kept)


def describe(nodes: list[Resize]) -> str:
    kinds = sorted({r.kind for r in nodes})
    return f"genrt resize kernel for {len(nodes)} node(s) ({', '.join(kinds)})"
