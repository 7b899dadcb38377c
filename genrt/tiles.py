"""Overlapping tiles with feathered blending, and whole-image statistics for instance normalization.

Images larger than a tile run as overlapping tiles, so the network's peak memory follows the tile, not the image.
Along each axis the image is cut into cells; a tile is its cell widened by ``margin`` pixels on each side (less at
the image's edges), and each tile's output counts fully inside its cell and fades linearly across a band of
``2 * feather`` pixels centred on each cell boundary, where the neighbour fades in: the weights sum to one
everywhere, and every pixel comes from tiles that saw at least ``margin - feather`` pixels around it.

Instance normalization (Ulyanov et al. 2016, used by every fast style-transfer network) normalizes each channel
by the mean and variance over the whole image, so a tile normalizing by its own statistics changes the result.
genrt rewrites each InstanceNormalization node to take its statistics as inputs, cuts the graph before each of
them, and runs the parts in turn over all tiles (:class:`Tiler`): part k, given the statistics of the norms
before it, yields norm k's input on every tile, whose mean and variance over the tiles' cells are norm k's
whole-image statistics. What a part leaves for the next waits on disk, so memory follows the tile. The tiled
result then equals the untiled one up to the receptive field that reaches past ``margin`` (a few grey levels at
most; see the tests), for about the cost of one run of the network.

Instance norms written out in elementary ops (conditional instance norms of multi-style networks, Dumoulin et al.
2017, and exporters that decompose the op) are recognised by their reductions (:func:`written_norms`): a
ReduceMean over H and W of a tensor x (keepdims, axes as attribute or, from opset 18, as a constant input; negative
axes too), paired with one of the same x's second moment, either

- the variance: ReduceMean((x - mean)^2), the square as Pow(d, 2) or Mul(d, d), d = Sub(x, mean) or Sub(mean, x);
- the mean of squares: ReduceMean(x^2) (x^2 as Pow(x, 2) or Mul(x, x)), the graph forming E[x^2] - E[x]^2.

Those ReduceMeans become graph inputs fed with x's whole-image mean and variance (or mean of squares), and the
graph is cut before the first node that reads them. What follows stays as written, whatever its form: epsilon inside
or outside the square root, Sqrt or Pow(v, 0.5), Div, Reciprocal, an affine whose scale and shift come from a style
vector. A ReduceMean over H, W without such a partner (global average pooling) is still refused, as are reductions
by ReduceSum and a division by the pixel count, and centring written as Add(x, Neg(mean)).

Networks without instance norms (super-resolution) need no statistics: :func:`stitch` runs the tiles and hands
each cell to the caller, unblended, and with ``margin`` at least the network's :func:`receptive_field` (read off
the graph) every cell is exactly what the whole image gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from genrt import workspace
from genrt.errors import ArgumentError, ShapeError

# Ops that compute each output pixel from a neighbourhood of input pixels (or per channel): graphs of these (plus
# InstanceNormalization, handled below) can run in tiles. Anything else (global pooling, flattening, fixed-size
# resizes) would see only its tile.
LOCAL_OPS = {
    "Abs", "Add", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv", "ConvTranspose",
    "DepthToSpace", "Div", "Elu", "Exp", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "Log", "Max", "Min",
    "Mish", "Mul", "Neg", "Pad", "PRelu", "Pow", "Reciprocal", "Relu", "Selu", "Sigmoid", "Softplus", "SpaceToDepth",
    "Sqrt", "Sub", "Tanh", "Upsample", "Where",
}  # fmt: skip
_STAT_PREFIX = "genrt_instance_norm"


@dataclass(frozen=True)
class Span:
    """One tile along one axis: the cell [cell0, cell1) it owns and the pixels [tile0, tile1) it sees."""

    cell0: int
    cell1: int
    tile0: int
    tile1: int


def spans(size: int, tile: int, margin: int, multiple: int = 1) -> list[Span]:
    """Cuts an axis of `size` pixels into tiles of at most `tile` pixels, each seeing `margin` around its cell.

    Cell boundaries fall on multiples of `multiple` (the network's total stride), so that every layer sees them
    at whole pixels.
    """
    if tile < 1 or margin < 0 or multiple < 1:
        raise ArgumentError(f"tile, margin, multiple: expected >= 1, >= 0, >= 1, got {tile}, {margin}, {multiple}")
    if size <= tile:
        return [Span(0, size, 0, size)]
    cell = (tile - 2 * margin) // multiple * multiple
    if cell < multiple:
        raise ArgumentError(f"tile: {tile} leaves no room for a cell inside a margin of {margin} on each side")
    units = math.ceil(size / multiple)  # the axis on the stride grid; the last unit may be partial
    count = math.ceil(units / (cell // multiple))
    bounds = [round(i * units / count) * multiple for i in range(count)] + [size]
    return [Span(a, b, max(0, a - margin), min(size, b + margin)) for a, b in zip(bounds, bounds[1:], strict=False)]


def pad_to(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Planes (C, H, W) padded at the bottom and right to (C, height, width) for a network that needs that size (its
    stride's multiple, its smallest input): reflected where the image is large enough, else its edge pixels
    repeated (a 1x1 image has nothing to reflect)."""
    _, h, w = x.shape
    ph, pw = height - h, width - w
    if ph < 0 or pw < 0:
        raise ArgumentError(f"pad_to: {height}x{width} is smaller than the image's {h}x{w}")
    return np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect" if ph < h and pw < w else "edge")


def _ramp(span: Span, size: int, feather: float, scale: float) -> np.ndarray:
    """The blending weight of one tile along one axis, in output pixels (tile0 * scale ...)."""
    lo, hi = span.tile0 * scale, span.tile1 * scale
    centres = np.arange(round(lo), round(hi)) + 0.5
    w = np.ones_like(centres)
    f = feather * scale
    if span.cell0 > 0 and f > 0:
        w = np.minimum(w, np.clip((centres - (span.cell0 * scale - f)) / (2 * f), 0, 1))
    elif span.cell0 > 0:
        w = np.minimum(w, (centres >= span.cell0 * scale).astype(np.float64))
    if span.cell1 < size and f > 0:
        w = np.minimum(w, np.clip(((span.cell1 * scale + f) - centres) / (2 * f), 0, 1))
    elif span.cell1 < size:
        w = np.minimum(w, (centres < span.cell1 * scale).astype(np.float64))
    return w


def blend(run_tile, x: np.ndarray, *, tile: int, margin: int, multiple: int = 1, feather: int | None = None):
    """Runs ``run_tile`` on overlapping tiles of x (N, C, H, W) and blends the outputs with feathered windows.

    ``run_tile(tile_x, (y0, y1, x0, x1))`` returns the network's output for that tile: (N, C', h * s, w * s) for
    a scale s that is the same for every tile (1 for style transfer, 4 for a x4 upscaler). ``feather`` (default
    margin // 4, at most margin) is half the width of the band where neighbouring tiles cross-fade.
    """
    n, _, h, w = x.shape
    feather = margin // 4 if feather is None else min(feather, margin)
    rows, cols = spans(h, tile, margin, multiple), spans(w, tile, margin, multiple)
    # Each cell holds both of its fades only if they do not meet: then the weights sum to one everywhere.
    feather = min([feather] + [(s.cell1 - s.cell0) // 2 for s in rows + cols])
    out = scale = None
    for r in rows:
        for c in cols:
            y = run_tile(x[:, :, r.tile0 : r.tile1, c.tile0 : c.tile1], (r.tile0, r.tile1, c.tile0, c.tile1))
            if out is None:
                scale = y.shape[2] / (r.tile1 - r.tile0)
                if y.shape[3] != round((c.tile1 - c.tile0) * scale):
                    raise ShapeError(f"tiles: the network scales height by {scale} but width differently")
                out = np.zeros((n, y.shape[1], round(h * scale), round(w * scale)), np.float32)
            weight = np.outer(_ramp(r, h, feather, scale), _ramp(c, w, feather, scale)).astype(np.float32)
            oy, ox = round(r.tile0 * scale), round(c.tile0 * scale)
            if y.shape[2:] != weight.shape:
                raise ShapeError(f"tiles: a tile's output is {y.shape[2:]}, expected {weight.shape}")
            out[:, :, oy : oy + weight.shape[0], ox : ox + weight.shape[1]] += y * weight
    return out


def stitch(run_tile, x: np.ndarray, *, tile: int, margin: int, put, multiple: int = 1) -> None:
    """Runs ``run_tile`` on overlapping tiles of x (N, C, H, W) and hands each tile's cell to ``put``, no blending.

    ``run_tile(tile_x)`` returns (N, C', h * s, w * s) for a scale s; ``put(cell_y, (y0, y1, x0, x1))`` receives the
    part of it inside the tile's cell and where that lies in the output. With ``margin`` at least the network's
    receptive field (:func:`receptive_field`) the cells are exactly what the whole image gives, so the caller can
    write them straight into its final output (e.g. 8-bit pixels): memory follows the tile and that output.
    """
    h, w = x.shape[2:]
    for r in spans(h, tile, margin, multiple):
        for c in spans(w, tile, margin, multiple):
            y = run_tile(np.ascontiguousarray(x[:, :, r.tile0 : r.tile1, c.tile0 : c.tile1]))
            sy, sx = y.shape[2] / (r.tile1 - r.tile0), y.shape[3] / (c.tile1 - c.tile0)
            if sy != sx or sy * (r.tile1 - r.tile0) != round(sy * (r.tile1 - r.tile0)):
                raise ShapeError(f"tiles: a tile of {r.tile1 - r.tile0}x{c.tile1 - c.tile0} gave {y.shape[2:]}")
            box = [round(v * sy) for v in (r.cell0, r.cell1, c.cell0, c.cell1)]
            oy, ox = round(r.tile0 * sy), round(c.tile0 * sx)
            put(y[:, :, box[0] - oy : box[1] - oy, box[2] - ox : box[3] - ox], tuple(box))


# --- receptive field ------------------------------------------------------------------------------------------


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def receptive_field(model: onnx.ModelProto) -> int | None:
    """How far, in input pixels, an output pixel of an image model can see: the radius of its receptive field.

    Follows the graph from the first 4-D input: each convolution, pooling or transposed convolution widens the
    radius by half its (dilated) kernel at its input's scale, resizes by their interpolation's reach, and pointwise
    ops add nothing; where branches meet (residual blocks, skips) the widest counts. Instance norms count as
    pointwise (their statistics are whole-image; genrt.tiles handles them). Rounded up; None when the graph holds
    an op whose reach is not local or not known (a tiled run of such a model cannot be exact).
    """
    return _walk(model)


def min_side(model: onnx.ModelProto) -> int:
    """The smallest height and width an image model's input may have: what its reflection pads and unpadded
    kernels need at the scale they see (a reflect pad of p needs p + 1 pixels; ONNX Runtime refuses fewer; a layer
    behind a stride s needs s times as many input pixels). 1 where nothing limits it (or the graph is not followed
    that far: the needs found up to that point still count)."""
    from genrt.runtime.fuse_norms import fold_constants  # pads a constant subgraph computes become readable

    needs: list[float] = []
    _walk(fold_constants(model), needs)
    return max([1] + [math.ceil(n - 1e-9) for n in needs])


def _walk(model: onnx.ModelProto, needs: list | None = None) -> int | None:
    """receptive_field's walk; with ``needs``, appends the input side each reflect Pad and unpadded kernel needs."""
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    images = [v.name for v in model.graph.input if len(v.type.tensor_type.shape.dim) == 4 and v.name not in inits]
    if not images:
        return None
    reach: dict[str, tuple[float, float]] = {images[0]: (0.0, 1.0)}  # tensor -> (radius, input pixels per pixel)
    padded = {n.output[0] for n in model.graph.node if n.op_type == "Pad"}  # tensors a Pad made

    def kernel(node) -> list[int] | None:
        k = _attr(node, "kernel_shape", None)
        if k is None and len(node.input) > 1 and node.input[1] in inits:
            k = list(inits[node.input[1]].dims[2:])
        return k

    def scales(node) -> list[float] | None:
        for name in node.input[1:]:
            t = inits.get(name) or (consts[name].attribute[0].t if name in consts else None)
            if t is not None and t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
                v = numpy_helper.to_array(t).ravel()
                if v.size == 4:
                    return [float(v[2]), float(v[3])]
        return None

    # A written-out instance norm's reductions are pointwise for the reach: their whole-image values come fed in,
    # so what they feed depends on no pixel's neighbourhood (and on the stats' side needs no op to be local).
    statistics = {o for norm in written_norms(model) for i in norm.reductions for o in model.graph.node[i].output}
    for node in model.graph.node:
        seen = [reach[i] for i in node.input if i in reach]
        if not seen or node.output[0] in statistics:
            continue
        r, t = max(s[0] for s in seen), seen[0][1]
        op = node.op_type
        if needs is not None:
            needs.extend(length * t for length in _needed(node, inits, consts, kernel, padded))
        if op in ("Conv", "MaxPool", "AveragePool", "ConvTranspose"):
            k = kernel(node)
            if k is None:
                return None
            d = list(_attr(node, "dilations", [1] * len(k)))
            s = list(_attr(node, "strides", [1] * len(k)))
            spread = max((ki - 1) * di for ki, di in zip(k, d, strict=False)) / 2
            if op == "ConvTranspose":
                r, t = r + (spread / min(s) + 0.5) * t, t / max(s)
            else:
                r, t = r + spread * t, t * max(s)
        elif op in ("Resize", "Upsample"):
            f = scales(node)
            if f is None:
                return None
            mode = _attr(node, "mode", b"nearest").decode()
            r, t = r + {"cubic": 2.0, "linear": 1.0}.get(mode, 0.5) * t, t / max(f)
        elif op == "DepthToSpace":
            r, t = r + 0.5 * t, t / _attr(node, "blocksize", 1)
        elif op == "SpaceToDepth":
            b = _attr(node, "blocksize", 1)
            r, t = r + (b - 1) / 2 * t, t * b
        elif op not in LOCAL_OPS and op != "InstanceNormalization":
            return None
        for o in node.output:
            reach[o] = (r, t)
    out = model.graph.output[0].name
    return math.ceil(reach[out][0] - 1e-9) if out in reach else None


def _needed(node, inits: dict, consts: dict, kernel, padded: set) -> list[int]:
    """The axis lengths (H, W) a node needs of its input: a reflect Pad of p needs p + 1, a convolution or pooling its
    dilated kernel less its padding (nothing where a Pad made its input: that Pad's own need covers it)."""
    if node.op_type == "Pad" and _attr(node, "mode", b"constant") == b"reflect":
        pads = _attr(node, "pads", None)
        if pads is None and len(node.input) > 1:
            t = inits.get(node.input[1]) or (consts[node.input[1]].attribute[0].t if node.input[1] in consts else None)
            pads = None if t is None else numpy_helper.to_array(t).ravel().tolist()
        if pads is None or len(pads) != 8:
            return []
        return [max(pads[2], pads[6]) + 1, max(pads[3], pads[7]) + 1]
    if node.op_type in ("Conv", "MaxPool", "AveragePool") and node.input[0] not in padded:
        k = kernel(node)
        if not k or len(k) != 2:
            return []
        d = list(_attr(node, "dilations", [1, 1]))
        p = list(_attr(node, "pads", [0, 0, 0, 0]))
        return [(k[0] - 1) * d[0] + 1 - p[0] - p[2], (k[1] - 1) * d[1] + 1 - p[1] - p[3]]
    return []


# --- instance normalization with given statistics -------------------------------------------------------------


def activation_bytes(model: onnx.ModelProto, size: int = 32) -> float | None:
    """Bytes per input pixel of the two largest intermediate tensors of a one-image-input graph run at size x size
    (ONNX shape inference; float16 tensors count 2 bytes): how a tile's peak memory grows with its area, since ONNX
    Runtime frees each tensor once its last reader has run. None if the shapes do not all infer."""
    from onnx import TensorProto, shape_inference

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    dims = probe.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        return None
    for d, v in zip(dims, (1, None, size, size), strict=True):
        if v is not None:
            d.Clear()
            d.dim_value = v
    try:
        inferred = shape_inference.infer_shapes(probe, strict_mode=False)
    except Exception:  # an op shape inference does not know: no estimate
        return None
    sizes = []
    for info in inferred.graph.value_info:
        t = info.type.tensor_type
        if not t.shape.dim or any(not d.HasField("dim_value") for d in t.shape.dim):
            continue
        n = 1
        for d in t.shape.dim:
            n *= d.dim_value
        sizes.append(n * (2 if t.elem_type == TensorProto.FLOAT16 else 4))
    if len(sizes) < 2:
        return None
    return sum(sorted(sizes)[-2:]) / (size * size)


@dataclass(frozen=True)
class WrittenNorm:
    """An instance norm written out in elementary ops (:func:`written_norms`): the tensor it normalizes and the
    indices, in the graph's node list, of its ReduceMeans over H and W, by what each yields of x."""

    probe: str  # x, the norm's input (N, C, H, W)
    means: tuple[int, ...]  # ReduceMean(x)
    variances: tuple[int, ...]  # ReduceMean((x - mean)^2)
    squares: tuple[int, ...]  # ReduceMean(x^2)

    @property
    def reductions(self) -> tuple[int, ...]:
        return tuple(sorted(self.means + self.variances + self.squares))


def _constant(name: str, inits: dict, consts: dict) -> np.ndarray | None:
    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = consts.get(name)
    if node is None or not node.attribute:
        return None
    a = node.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    if a.name in ("value_float", "value_floats", "value_int", "value_ints"):
        return np.asarray(helper.get_attribute_value(a))
    return None


def _plain(node) -> bool:
    return node.domain in ("", "ai.onnx")


def _spatial_mean(node, inits: dict, consts: dict, rank) -> bool:
    """Whether `node` is a ReduceMean over axes 2 and 3 (H, W) that keeps its dims: (N, C, H, W) -> (N, C, 1, 1)."""
    if node.op_type != "ReduceMean" or not _plain(node) or _attr(node, "keepdims", 1) != 1:
        return False
    axes = _attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = _constant(node.input[1], inits, consts)
    if axes is None:
        return False  # every axis (or, with noop_with_empty_axes, none)
    axes = [int(a) for a in np.asarray(axes).ravel()]
    if any(a < 0 for a in axes):  # from the end: only of a 4-D tensor are -2, -1 H and W
        if rank(node.input[0]) not in (None, 4):
            return False
        axes = [a % 4 for a in axes]
    return sorted(axes) == [2, 3]


def _square_of(name: str, producers: dict, inits: dict, consts: dict) -> str | None:
    """u where `name` is Mul(u, u) or Pow(u, 2); else None."""
    node = producers.get(name, (None, None))[1]
    if node is None or not _plain(node):
        return None
    if node.op_type == "Mul" and node.input[0] == node.input[1]:
        return node.input[0]
    if node.op_type == "Pow":
        exponent = _constant(node.input[1], inits, consts)
        if exponent is not None and exponent.size == 1 and float(exponent.ravel()[0]) == 2.0:
            return node.input[0]
    return None


def written_norms(model: onnx.ModelProto) -> list[WrittenNorm]:
    """The instance norms written out in elementary ops (the module's docstring lists the forms), in graph order of
    their first reduction: each pairs ReduceMeans over H, W of one tensor x with one of its variance or its mean of
    squares. Global average pooling (a mean of x alone) is not one."""
    graph = model.graph
    nodes = list(graph.node)
    if not any(n.op_type == "ReduceMean" for n in nodes):
        return []
    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in nodes if n.op_type == "Constant"}
    producers = {o: (i, n) for i, n in enumerate(nodes) for o in n.output}
    ranks: dict[str, int] | None = None

    def rank(name: str) -> int | None:
        nonlocal ranks
        if ranks is None:
            try:
                typed = shape_inference.infer_shapes(model, strict_mode=False).graph
            except Exception:  # an op shape inference does not know: ranks unknown, axes read as (N, C, H, W)'s
                typed = graph
            ranks = {
                v.name: len(v.type.tensor_type.shape.dim)
                for v in list(typed.value_info) + list(typed.input)
                if v.type.tensor_type.HasField("shape")
            }
        return ranks.get(name)

    means: dict[str, list[int]] = {}  # x -> its ReduceMeans over H, W
    reductions = [i for i, n in enumerate(nodes) if _spatial_mean(n, inits, consts, rank)]
    for i in reductions:
        means.setdefault(nodes[i].input[0], []).append(i)
    variances: dict[str, list[int]] = {}
    squares: dict[str, list[int]] = {}
    for i in reductions:
        u = _square_of(nodes[i].input[0], producers, inits, consts)
        if u is None:
            continue
        sub = producers.get(u, (None, None))[1]
        if sub is not None and sub.op_type == "Sub" and _plain(sub):
            a, b = sub.input
            x = next((x for x, m in ((a, b), (b, a)) if m in producers and producers[m][0] in means.get(x, ())), None)
            if x is not None:  # ReduceMean((x - mean(x))^2)
                variances.setdefault(x, []).append(i)
                continue
        if u in means:  # ReduceMean(x^2)
            squares.setdefault(u, []).append(i)
    found = [
        WrittenNorm(x, tuple(means[x]), tuple(variances.get(x, ())), tuple(squares.get(x, ())))
        for x in set(variances) | set(squares)
    ]
    return sorted(found, key=lambda norm: norm.reductions[0])


def instance_norm_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """One node per instance norm that tiles must give whole-image statistics, in graph order: each
    InstanceNormalization node, and the first ReduceMean of each norm written out in elementary ops
    (:func:`written_norms`). Empty: the graph runs in tiles as it is."""
    nodes = model.graph.node
    found = [i for i, n in enumerate(nodes) if n.op_type == "InstanceNormalization" and _plain(n)]
    found += [norm.means[0] for norm in written_norms(model)]
    return [nodes[i] for i in sorted(found)]


def check_tileable(model: onnx.ModelProto) -> None:
    """ArgumentError naming the first op on the image's path that sees more than a neighbourhood (tiles would
    change its result), or when the first output does not depend on the image pixel by pixel. Nodes that do not
    depend on the image (e.g. mixing a multi-style model's style weights) may be anything, and so may those that
    depend on it only through an instance norm's statistics, which tiles get whole-image (as the op or written out:
    :func:`written_norms`)."""
    images = [v.name for v in model.graph.input if len(v.type.tensor_type.shape.dim) == 4][:1]
    statistics = {o for norm in written_norms(model) for i in norm.reductions for o in model.graph.node[i].output}
    spatial = set(images)
    for node in model.graph.node:
        if not spatial.intersection(node.input) or node.output[0] in statistics:
            continue
        spatial.update(node.output)
        local = node.op_type in LOCAL_OPS or node.op_type == "InstanceNormalization"
        if node.domain not in ("", "ai.onnx"):
            local = node.domain == "genrt" and node.op_type == "ConvTranspose"
        if node.op_type == "Resize":
            local = True  # scales, not sizes: checked at run time by the output's shape
        if not local:
            raise ArgumentError(
                f"tile: this model cannot run in tiles: its node {node.name or node.op_type!r} ({node.op_type}) "
                "is not a local operation; call it without tiles"
            )
    if images and model.graph.output and model.graph.output[0].name not in spatial:
        raise ArgumentError(
            f"tile: this model cannot run in tiles: its output {model.graph.output[0].name!r} is not an image made "
            "pixel by pixel from its input; call it without tiles"
        )


def stat_names(index: int) -> tuple[str, str]:
    """The inputs that carry InstanceNormalization node `index`'s statistics: (mean, rstd) (N, C, 1, 1)."""
    return f"{_STAT_PREFIX}_{index}_mean", f"{_STAT_PREFIX}_{index}_rstd"


def with_given_statistics(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[dict]]:
    """The model with each instance norm's statistics as graph inputs (N, C, 1, 1), and where to cut before each.

    An InstanceNormalization becomes (x - mean) * rstd * scale + bias, with inputs mean and rstd (named by
    :func:`stat_names`); a norm written out (:func:`written_norms`) loses its ReduceMeans, whose readers read inputs
    ``genrt_instance_norm_<k>_mean`` and ``..._var`` (the variance) or ``..._meansq`` (the mean of squares)
    instead. Nodes left without readers (the squares those reductions summed) go too. Norms are numbered in
    graph order of the op, or of the first reduction.

    Returns the model and, per norm in the order the graph reads them: {"probe": its input's name, "cut": the name
    of the first node that reads its statistics, "stats": {input name: "mean", "rstd", "var" or "meansq"},
    "epsilon": float (the op's; None written out: the graph adds its own), "channels": C or None, "dtype": numpy
    dtype of the inputs}.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    written = written_norms(out)
    inits = {t.name: t for t in graph.initializer}
    typed = {}
    if written:
        try:
            inferred = shape_inference.infer_shapes(out, strict_mode=False).graph
            typed = {v.name: v.type.tensor_type for v in inferred.value_info}
        except Exception:  # shapes unknown: inputs of float32 with a named channel axis
            pass
    first = {norm.reductions[0]: norm for norm in written}
    dropped = {i for norm in written for i in norm.reductions}
    renamed: dict[str, str] = {}  # a dropped reduction's output -> the input that replaces it
    layers, nodes, inputs = [], [], []
    for i, node in enumerate(graph.node):
        if i in first:  # a written-out norm: its statistics become inputs
            norm, index = first[i], len(layers)
            base = f"{_STAT_PREFIX}_{index}"
            stats = {}
            for kind, found in (("mean", norm.means), ("var", norm.variances), ("meansq", norm.squares)):
                if not found:
                    continue
                stats[f"{base}_{kind}"] = kind
                renamed.update((graph.node[j].output[0], f"{base}_{kind}") for j in found)
            t = typed.get(graph.node[norm.means[0]].output[0])
            dims = [d for d in t.shape.dim] if t is not None and t.HasField("shape") else []
            known = len(dims) == 4 and dims[1].HasField("dim_value")
            channels = dims[1].dim_value if known else None
            elem = t.elem_type if t is not None and t.elem_type else onnx.TensorProto.FLOAT
            inputs += [
                helper.make_tensor_value_info(name, elem, ["batch", channels or f"{base}_channels", 1, 1])
                for name in stats
            ]
            dtype = helper.tensor_dtype_to_np_dtype(elem)
            layers.append({"probe": norm.probe, "stats": stats, "epsilon": None, "channels": channels, "dtype": dtype})
        if i in dropped:
            continue
        if node.op_type != "InstanceNormalization" or not _plain(node):
            if renamed.keys() & set(node.input):
                node = onnx.NodeProto.FromString(node.SerializeToString())
                node.input[:] = [renamed.get(n, n) for n in node.input]
            nodes.append(node)
            continue
        index = len(layers)
        x, scale_name, bias_name = node.input
        if scale_name not in inits or bias_name not in inits:
            raise ArgumentError(f"tile: instance norm {node.name!r} has non-constant scale or bias")
        scale, bias = (numpy_helper.to_array(inits[n]).astype(np.float32) for n in (scale_name, bias_name))
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        mean, rstd = stat_names(index)
        base = f"{_STAT_PREFIX}_{index}"
        graph.initializer.extend(
            [
                numpy_helper.from_array(scale.reshape(1, -1, 1, 1), f"{base}_scale"),
                numpy_helper.from_array(bias.reshape(1, -1, 1, 1), f"{base}_bias"),
            ]
        )
        nodes += [
            helper.make_node("Sub", [x, mean], [f"{base}_centred"], name=f"{base}_sub"),
            helper.make_node("Mul", [f"{base}_centred", rstd], [f"{base}_normed"], name=f"{base}_mul"),
            helper.make_node("Mul", [f"{base}_normed", f"{base}_scale"], [f"{base}_scaled"], name=f"{base}_mul2"),
            helper.make_node("Add", [f"{base}_scaled", f"{base}_bias"], [node.output[0]], name=f"{base}_add"),
        ]
        channels = scale.shape[0]
        elem = onnx.TensorProto.FLOAT
        inputs += [helper.make_tensor_value_info(n, elem, ["batch", channels, 1, 1]) for n in (mean, rstd)]
        layers.append(
            {
                "probe": x,
                "stats": {mean: "mean", rstd: "rstd"},
                "epsilon": float(eps),
                "channels": int(channels),
                "dtype": np.dtype(np.float32),
            }
        )
    for o in graph.output:  # a reduction that is itself an output (hardly ever): the input passed through
        if o.name in renamed:
            nodes.append(helper.make_node("Identity", [renamed[o.name]], [o.name], name=f"{o.name}_given"))
    nodes = _live(nodes, {o.name for o in graph.output})
    # Where to cut: before the first node reading a norm's statistics; those of later norms read later.
    taken = [n.name for n in nodes]
    for layer in layers:
        k = next((j for j, n in enumerate(nodes) if layer["stats"].keys() & set(n.input)), None)
        layer["position"] = k
        if k is None:
            continue
        if not nodes[k].name or taken.count(nodes[k].name) > 1:
            nodes[k] = onnx.NodeProto.FromString(nodes[k].SerializeToString())
            nodes[k].name = f"{next(iter(layer['stats']))}_cut"
            taken[k] = nodes[k].name
        layer["cut"] = nodes[k].name
    used = [layer for layer in layers if layer["position"] is not None]  # a norm whose result nothing reads
    used.sort(key=lambda layer: layer["position"])
    if len({layer["position"] for layer in used}) < len(used):
        raise ArgumentError("tile: this model cannot run in tiles: one node reads two instance norms' statistics")
    wanted = {name for layer in used for name in layer["stats"]}
    for layer in used:
        del layer["position"]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.extend(v for v in inputs if v.name in wanted)
    return out, used


def _live(nodes: list, outputs: set) -> list:
    """The nodes that the graph's outputs need, in their order."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_inner_reads(node))
    return keep[::-1]


def _inner_reads(node) -> set:
    """The names a node's subgraphs (If, Loop, Scan) read: outer tensors among them must stay."""
    reads = set()
    for a in node.attribute:
        for g in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
            for inner in g.node:
                reads.update(inner.input)
                reads |= _inner_reads(inner)
    return reads


def segments(model: onnx.ModelProto, cuts: list[str]) -> list[tuple[onnx.ModelProto, list[str], list[str]]]:
    """Cuts the graph before each node named in `cuts` (in graph order): [(part, outputs, keep)].

    Part k runs the nodes from cut k-1 to cut k. Its inputs are the graph inputs it uses plus what earlier parts
    left that it uses; its outputs are what it makes that later nodes use (the next instance norm's input, a
    residual block's skip connection, ...); `keep` names what earlier parts left that later parts still need.
    The last part's outputs are the graph's.
    """
    nodes = list(model.graph.node)
    names = [n.name for n in nodes]
    bounds = [0] + [names.index(c) for c in cuts] + [len(nodes)]
    inits = {t.name: t for t in model.graph.initializer}
    graph_inputs = {v.name: v for v in model.graph.input}
    try:
        typed = shape_inference.infer_shapes(model)
        values = {v.name: v for v in list(typed.graph.value_info) + list(typed.graph.input)}
    except Exception:
        values = {}

    def value(name: str) -> onnx.ValueInfoProto:
        """A part's input or output `name` with its inferred type and shape; an axis of unknown size gets a name of its
        own, so the part's runner sees it as dynamic and still chooses genrt's kernels per size class."""
        known = values.get(name)
        if known is None or not known.type.tensor_type.HasField("shape"):
            return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        dims = [
            d.dim_value if d.HasField("dim_value") else d.dim_param or f"{name}_{axis}"
            for axis, d in enumerate(known.type.tensor_type.shape.dim)
        ]
        return helper.make_tensor_value_info(name, known.type.tensor_type.elem_type, dims)

    later_uses: list[set] = [set() for _ in bounds]  # names used by nodes from bound b on
    for b in range(len(bounds) - 2, -1, -1):
        used = {i for n in nodes[bounds[b] : bounds[b + 1]] for i in n.input if i}
        later_uses[b] = used | later_uses[b + 1]
    parts, carried = [], []
    for b in range(len(bounds) - 1):
        body = nodes[bounds[b] : bounds[b + 1]]
        used = {i for n in body for i in n.input if i}
        here = {o for n in body for o in n.output}
        if b == len(bounds) - 2:
            passes, keep = [o.name for o in model.graph.output], []
        else:  # made here and used later; what came in and is still needed later stays where it is
            passes = sorted(here & later_uses[b + 1])
            keep = sorted(set(carried) & later_uses[b + 1])
        inputs = [graph_inputs[n] for n in graph_inputs if n in used and n not in inits]
        inputs += [value(n) for n in carried if n in used]
        graph = helper.make_graph(
            body,
            f"part{b}",
            inputs,
            [value(n) for n in passes],
            [inits[n] for n in sorted(used & set(inits))],
        )
        part = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
        parts.append((part, passes, keep))
        carried = passes + keep
    return parts


class _Moments:
    """Per-(sample, channel) mean and variance merged over cells (Chan et al.'s pairwise update, in float64)."""

    def __init__(self):
        self.count = 0
        self.mean = self.m2 = None

    def add(self, x: np.ndarray) -> None:  # (N, C, h, w)
        n = x.shape[2] * x.shape[3]
        if n == 0:
            return
        # float64 sums over float32 data (numpy casts in buffered chunks, summing pairwise): no float64 copy of x.
        mean = x.mean(axis=(2, 3), dtype=np.float64)
        d = x - mean.astype(np.float32)[:, :, None, None]
        np.square(d, out=d)
        m2 = d.sum(axis=(2, 3), dtype=np.float64)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def given(self, layer: dict) -> dict[str, np.ndarray]:
        """The inputs that carry a norm's statistics (:func:`with_given_statistics`'s layer), each (N, C, 1, 1)."""
        var = self.m2 / self.count
        shape = self.mean.shape + (1, 1)
        values = {"mean": lambda: self.mean, "var": lambda: var, "meansq": lambda: var + self.mean**2}
        values["rstd"] = lambda: 1.0 / np.sqrt(var + layer["epsilon"])
        return {name: values[kind]().reshape(shape).astype(layer["dtype"]) for name, kind in layer["stats"].items()}


class Tiler:
    """Runs a loaded model's graph in tiles, with whole-image instance-norm statistics; thread-safe.

    Built once per model (its sessions are kept): ``Tiler(model)(feeds, "input", tile=512, margin=64)``.
    Inputs other than the image (e.g. a style-weights vector) go to every tile unchanged.

    With instance norms (the op, or written out: :func:`written_norms`), the graph is cut before each of them into
    parts (:func:`segments`, :func:`with_given_statistics`). Part k runs on every
    tile, from what part k-1 left for that tile, with the statistics of norms before k known; it accumulates the
    mean and variance of norm k's input over the tiles' cells, and leaves its own results for the tile in a
    scratch folder (genrt.workspace.scratch: under genrt's cache, named by this process, removed at the end and,
    after a kill -9, by the next tiled run; memory follows the tile; disk holds one part's results for the whole
    image). Every part runs once per tile, so a tiled run costs about one run of the network, plus the overlap and
    the disk traffic.
    """

    def __init__(self, model, *, multiple: int = 1):
        runner = getattr(model, "_runner", model)
        if not hasattr(runner, "derived"):
            raise ArgumentError("tile: tiles need an ONNX model (.onnx); this one runs through torch")
        graph = runner.graph
        check_tileable(graph)
        self.multiple = multiple
        self._runner = runner
        self._layers: list[dict] = []
        self._parts: list[tuple] = []
        if instance_norm_nodes(graph):  # InstanceNormalization nodes, or norms written out (written_norms)
            fed, self._layers = with_given_statistics(graph)
        if self._layers:
            cuts = [layer["cut"] for layer in self._layers]
            # One arena for all parts: a dozen sessions each keeping its own peak would hold many tiles' worth.
            self._parts = [
                (runner.derived(part, f"part {k}", arena="shared"), outputs, keep)
                for k, (part, outputs, keep) in enumerate(segments(fed, cuts))
            ]

    @property
    def instance_norms(self) -> int:
        return len(self._layers)

    def __call__(self, feeds: dict, image: str, *, tile: int, margin: int, feather: int | None = None) -> np.ndarray:
        """The model's first output for `feeds`, computed in tiles of at most `tile` pixels of `image`."""
        return self.run(feeds, image, tile=tile, margin=margin, feather=feather)[0]

    def run(self, feeds: dict, image: str, *, tile: int, margin: int, feather: int | None = None):
        """(the first output, {statistic input name: (N, C, 1, 1) whole-image statistic of each instance norm}): mean
        and rstd for an InstanceNormalization node, mean and var or meansq for one written out."""
        x = feeds[image]
        kwargs = dict(tile=tile, margin=margin, multiple=self.multiple, feather=feather)
        if not self._layers:
            return blend(
                lambda t, _: self._runner.run(_only(self._runner, {**feeds, image: _c(t)}))[0], x, **kwargs
            ), {}
        rows, cols = spans(x.shape[2], tile, margin, self.multiple), spans(x.shape[3], tile, margin, self.multiple)
        boxes = [(r, c) for r in rows for c in cols]
        stats: dict[str, np.ndarray] = {}
        with workspace.scratch("tiles") as store:  # under genrt's cache, named by PID: a kill -9 leaks nothing
            for k, (part, outputs, keep) in enumerate(self._parts[:-1]):
                moments = _Moments()
                for t, (r, c) in enumerate(boxes):
                    earlier = _load(store, t)
                    tile_feeds = {**feeds, **stats, **earlier}
                    if k == 0:
                        tile_feeds[image] = _c(x[:, :, r.tile0 : r.tile1, c.tile0 : c.tile1])
                    made = dict(zip(outputs, part.run(_only(part, tile_feeds)), strict=True))
                    moments.add(_cell({**tile_feeds, **made}[self._layers[k]["probe"]], r, c))
                    _save(store, t, {**{n: earlier[n] for n in keep}, **made})
                stats.update(moments.given(self._layers[k]))
            last = self._parts[-1][0]
            index = {(r.tile0, r.tile1, c.tile0, c.tile1): t for t, (r, c) in enumerate(boxes)}

            def run_tile(_x, box):
                return last.run(_only(last, {**feeds, **stats, **_load(store, index[box])}))[0]

            return blend(run_tile, x, **kwargs), stats


def _c(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


def _save(store: Path, tile: int, tensors: dict) -> None:
    # One raw .npy per tensor (np.savez would copy everything through zipfile); the names file lists them.
    for i, value in enumerate(tensors.values()):
        np.save(store / f"{tile}-{i}.npy", value)
    (store / f"{tile}.names").write_text("\n".join(tensors))


def _load(store: Path, tile: int) -> dict:
    names = store / f"{tile}.names"
    if not names.exists():
        return {}
    return {name: np.load(store / f"{tile}-{i}.npy") for i, name in enumerate(names.read_text().split("\n"))}


def _only(runner, feeds: dict) -> dict:
    names = {spec.name for spec in runner.inputs}
    return {k: v for k, v in feeds.items() if k in names}


def _cell(probe: np.ndarray, r: Span, c: Span) -> np.ndarray:
    """The part of a layer's output (N, C, h, w) on a tile that lies in the tile's cell."""
    sy, sx = probe.shape[2] / (r.tile1 - r.tile0), probe.shape[3] / (c.tile1 - c.tile0)
    bounds = [(r.cell0 - r.tile0) * sy, (r.cell1 - r.tile0) * sy, (c.cell0 - c.tile0) * sx, (c.cell1 - c.tile0) * sx]
    if any(abs(b - round(b)) > 1e-6 for b in bounds):
        raise ArgumentError(
            "tile: cell boundaries fall between a layer's pixels; give the network's total stride as `multiple`"
        )
    y0, y1, x0, x1 = (round(b) for b in bounds)
    return probe[:, :, y0:y1, x0:x1]
