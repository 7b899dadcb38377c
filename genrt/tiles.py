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
    kernels need at the scale they see (a reflect pad of p needs p + 1 pixels; ONNX Runtime refuses fewer), with
    one pixel of the deepest such layer to spare. 1 where nothing limits it (or the graph is not followed that far:
    the needs found up to that point still count)."""
    needs: list[float] = []
    _walk(model, needs)
    return max([1] + [math.ceil(n - 1e-9) for n in needs])


def _walk(model: onnx.ModelProto, needs: list | None = None) -> int | None:
    """receptive_field's walk; with ``needs``, appends the input side each reflect Pad and unpadded kernel needs."""
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    images = [v.name for v in model.graph.input if len(v.type.tensor_type.shape.dim) == 4 and v.name not in inits]
    if not images:
        return None
    reach: dict[str, tuple[float, float]] = {images[0]: (0.0, 1.0)}  # tensor -> (radius, input pixels per pixel)

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

    for node in model.graph.node:
        seen = [reach[i] for i in node.input if i in reach]
        if not seen:
            continue
        r, t = max(s[0] for s in seen), seen[0][1]
        op = node.op_type
        if needs is not None:
            needs.extend((length + 1) * t for length in _needed(node, inits, consts, kernel))
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


def _needed(node, inits: dict, consts: dict, kernel) -> list[int]:
    """The axis lengths (H, W) a node needs of its input: a reflect Pad of p needs p + 1, a convolution or pooling its
    dilated kernel less its padding."""
    if node.op_type == "Pad" and _attr(node, "mode", b"constant") == b"reflect":
        pads = _attr(node, "pads", None)
        if pads is None and len(node.input) > 1:
            t = inits.get(node.input[1]) or (consts[node.input[1]].attribute[0].t if node.input[1] in consts else None)
            pads = None if t is None else numpy_helper.to_array(t).ravel().tolist()
        if pads is None or len(pads) != 8:
            return []
        return [max(pads[2], pads[6]) + 1, max(pads[3], pads[7]) + 1]
    if node.op_type in ("Conv", "MaxPool", "AveragePool"):
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


def instance_norm_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "InstanceNormalization" and n.domain in ("", "ai.onnx")]


def check_tileable(model: onnx.ModelProto) -> None:
    """ArgumentError naming the first op on the image's path that sees more than a neighbourhood (tiles would
    change its result). Nodes that do not depend on the image (e.g. mixing a multi-style model's style weights)
    may be anything."""
    images = [v.name for v in model.graph.input if len(v.type.tensor_type.shape.dim) == 4][:1]
    spatial = set(images)
    for node in model.graph.node:
        if not spatial.intersection(node.input):
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


def stat_names(index: int) -> tuple[str, str]:
    return f"{_STAT_PREFIX}_{index}_mean", f"{_STAT_PREFIX}_{index}_rstd"


def with_given_statistics(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[dict]]:
    """The model with every InstanceNormalization replaced by (x - mean) * rstd * scale + bias, mean and rstd
    (N, C, 1, 1) becoming graph inputs (named by :func:`stat_names`).

    Returns the model and, per norm in graph order: {"probe": its input's name, "epsilon": float, "channels": C}.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    layers, nodes = [], []
    elem = onnx.TensorProto.FLOAT
    for node in graph.node:
        if node.op_type != "InstanceNormalization" or node.domain not in ("", "ai.onnx"):
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
        graph.input.extend(helper.make_tensor_value_info(n, elem, ["batch", channels, 1, 1]) for n in (mean, rstd))
        layers.append({"probe": x, "epsilon": float(eps), "channels": int(channels)})
    del graph.node[:]
    graph.node.extend(nodes)
    return out, layers


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

    def result(self, eps: float) -> tuple[np.ndarray, np.ndarray]:
        var = self.m2 / self.count
        shape = self.mean.shape + (1, 1)
        return self.mean.reshape(shape).astype(np.float32), (1.0 / np.sqrt(var + eps)).reshape(shape).astype(
            np.float32
        )


class Tiler:
    """Runs a loaded model's graph in tiles, with whole-image instance-norm statistics; thread-safe.

    Built once per model (its sessions are kept): ``Tiler(model)(feeds, "input", tile=512, margin=64)``.
    Inputs other than the image (e.g. a style-weights vector) go to every tile unchanged.

    With instance norms, the graph is cut before each of them into parts (:func:`segments`). Part k runs on every
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
        if instance_norm_nodes(graph):
            fed, self._layers = with_given_statistics(graph)
            cuts = [f"{_STAT_PREFIX}_{k}_sub" for k in range(len(self._layers))]
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
        """(the first output, {mean/rstd input name: (N, C, 1, 1) whole-image statistic of each instance norm})."""
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
                    moments.add(_cell(made[self._layers[k]["probe"]], r, c))
                    _save(store, t, {**{n: earlier[n] for n in keep}, **made})
                stats[stat_names(k)[0]], stats[stat_names(k)[1]] = moments.result(self._layers[k]["epsilon"])
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
