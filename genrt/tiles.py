"""Overlapping tiles with feathered blending, and whole-image statistics for instance normalization.

Images larger than a tile run as overlapping tiles, so the network's peak memory follows the tile, not the image.
Along each axis the image is cut into cells; a tile is its cell widened by ``margin`` pixels on each side (less at
the image's edges), and each tile's output counts fully inside its cell and fades linearly across a band of
``2 * feather`` pixels centred on each cell boundary, where the neighbour fades in: the weights sum to one
everywhere, and every pixel comes from tiles that saw at least ``margin - feather`` pixels around it.

Instance normalization (Ulyanov et al. 2016, used by every fast style-transfer network) normalizes each channel
by the mean and variance over the whole image, so a tile normalizing by its own statistics changes the result.
genrt rewrites each InstanceNormalization node to take its statistics as inputs and gathers them over the whole
image first, layer by layer: pass k runs the graph up to the k-th instance norm on every tile, with the statistics
of the earlier ones fixed, and accumulates the mean and variance of that layer's input over the tiles' cells.
A last pass runs the whole graph on the tiles with every statistic given. The tiled result then equals the
untiled one up to the receptive field that reaches past ``margin`` (a few grey levels at most; see the tests),
at the cost of running the network's prefixes once per instance norm (about L/2 + 1 full passes for L layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

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


# --- instance normalization with given statistics -------------------------------------------------------------


def instance_norm_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "InstanceNormalization" and n.domain in ("", "ai.onnx")]


def check_tileable(model: onnx.ModelProto) -> None:
    """ArgumentError naming the first op that sees more than a neighbourhood (so tiles would change the result)."""
    for node in model.graph.node:
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
    (N, C, 1, 1) becoming graph inputs; each norm's input is also a graph output (its probe).

    Returns the model and, per norm in graph order: {"probe": input name, "epsilon": float, "channels": C}.
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
        graph.output.append(helper.make_tensor_value_info(x, elem, None))
        layers.append({"probe": x, "epsilon": float(eps), "channels": int(channels)})
    del graph.node[:]
    graph.node.extend(nodes)
    return out, layers


def prefix(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """The part of `model` that computes `outputs` (ONNX Runtime would run the whole graph otherwise)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    needed, stack, keep = set(), list(outputs), set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producers.get(name)
        if node is not None and id(node) not in keep:
            keep.add(id(node))
            stack.extend(i for i in node.input if i)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    nodes = [n for n, m in zip(graph.node, model.graph.node, strict=True) if id(m) in keep]
    del graph.node[:]
    graph.node.extend(nodes)
    inputs = [v for v in graph.input if v.name in needed]
    del graph.input[:]
    graph.input.extend(inputs)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outputs)
    return out


class _Moments:
    """Per-(sample, channel) mean and variance merged over cells (Chan et al.'s pairwise update, in float64)."""

    def __init__(self):
        self.count = 0
        self.mean = self.m2 = None

    def add(self, x: np.ndarray) -> None:  # (N, C, h, w)
        n = x.shape[2] * x.shape[3]
        if n == 0:
            return
        x = x.astype(np.float64)
        mean = x.mean(axis=(2, 3))
        m2 = ((x - mean[:, :, None, None]) ** 2).sum(axis=(2, 3))
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

    Built once per model (its sessions are kept): ``Tiler(model)(feeds, image="input", tile=512, margin=32)``.
    Inputs other than the image (e.g. a style-weights vector) go to every tile unchanged.
    """

    def __init__(self, model, *, multiple: int = 1):
        runner = getattr(model, "_runner", model)
        if not hasattr(runner, "derived"):
            raise ArgumentError("tile: tiles need an ONNX model (.onnx); this one runs through torch")
        graph = runner.graph
        check_tileable(graph)
        self.multiple = multiple
        self._outputs = [o.name for o in graph.graph.output]
        self._layers: list[dict] = []
        if instance_norm_nodes(graph):
            fed, self._layers = with_given_statistics(graph)
            # Arenas off: a dozen prefix sessions each keeping its peak would hold many tiles' worth of memory.
            for k, layer in enumerate(self._layers):
                layer["runner"] = runner.derived(prefix(fed, [layer["probe"]]), f"instance norm {k}", arena=False)
            self._final = runner.derived(prefix(fed, self._outputs), "with given statistics", arena=False)
        else:
            self._final = runner

    @property
    def instance_norms(self) -> int:
        return len(self._layers)

    def statistics(self, feeds: dict, image: str, *, tile: int, margin: int) -> dict[str, np.ndarray]:
        """{mean/rstd input name: (N, C, 1, 1)} of every instance norm over the whole image, gathered in tiles."""
        x = feeds[image]
        h, w = x.shape[2:]
        rows, cols = spans(h, tile, margin, self.multiple), spans(w, tile, margin, self.multiple)
        stats: dict[str, np.ndarray] = {}
        for k, layer in enumerate(self._layers):
            moments = _Moments()
            for r in rows:
                for c in cols:
                    tile_feeds = dict(feeds, **stats)
                    tile_feeds[image] = np.ascontiguousarray(x[:, :, r.tile0 : r.tile1, c.tile0 : c.tile1])
                    (probe,) = layer["runner"].run(_only(layer["runner"], tile_feeds))
                    moments.add(_cell(probe, r, c))
            stats[stat_names(k)[0]], stats[stat_names(k)[1]] = moments.result(layer["epsilon"])
        return stats

    def __call__(self, feeds: dict, image: str, *, tile: int, margin: int, feather: int | None = None) -> np.ndarray:
        """The model's first output for `feeds`, computed in tiles of at most `tile` pixels of `image`."""
        stats = self.statistics(feeds, image, tile=tile, margin=margin) if self._layers else {}

        def run_tile(x_tile, _box):
            tile_feeds = dict(feeds, **stats)
            tile_feeds[image] = np.ascontiguousarray(x_tile)
            return self._final.run(_only(self._final, tile_feeds))[0]

        return blend(run_tile, feeds[image], tile=tile, margin=margin, multiple=self.multiple, feather=feather)


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
