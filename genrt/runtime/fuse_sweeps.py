"""Load-time rewrite of the sweeps of an in-graph hole fill into ``genrt.FillSweeps`` nodes.

genrt's inpainters start from a smooth fill their graph computes (training/context_encoder.py's harmonic_fill and
biharmonic_fill): a push-pull multigrid with Jacobi sweeps at each level, which the export spells out node by node
(y the fill, V the level's known values, A its unknown share, W a depthwise stencil; Mul's and Add's operands in
either order)::

    replace (harmonic):   s = Conv(Pad(y, edge, r), W, group C)        y' = Add(V, Mul(A, s))
    relax (biharmonic):   u = Div(s, divisor)   t = Mul(Sub(u, y), damping)   y' = Add(V, Mul(A, Add(y, t)))

inpaint-photos spells out 677 sweeps in some 5,700 nodes, and at its coarse levels (1x1 to 32x32) each node's fixed
cost is most of the time: a window took three times as long as with the harmonic fill alone (BENCHMARKS.md). Here a
run of consecutive sweeps with the same V, A, W, mode and constants becomes one node, genrt's fill_sweeps kernel,
which does each sweep's arithmetic in the graph's order (only the stencil's sum may be ordered differently from ONNX
Runtime's Conv). Every intermediate must be read only by its sweep, and each sweep's output only by the next one.
Always applied on the CPU (the kernel does what the nodes do, in one call); ``GENRT_FILL_SWEEPS=ort`` keeps the
graph's nodes. Like genrt.runtime.fuse_norms, it changes only the models OrtRunner gives its CPU sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper

from genrt import onnx_ops
from genrt.runtime import fuse, fuse_chains
from genrt.runtime.fuse_chains import attr, other_input

STANDARD = ("", "ai.onnx")
ENV = "GENRT_FILL_SWEEPS"


def mode() -> str:
    """How fill sweeps run on the CPU: $GENRT_FILL_SWEEPS, "genrt" (the default) or "ort"."""
    return fuse.genrt_or_ort(ENV)


@dataclass
class Sweeps:
    """A run of `count` sweeps: from fill `x` to `output`, replacing the nodes that compute `outputs`."""

    x: str
    output: str
    v: str
    a: str
    w: str
    kind: str  # "replace" or "relax"
    divisor: float
    damping: float
    count: int
    outputs: list[str]  # first outputs of every node replaced

    def node(self, threads: int) -> onnx.NodeProto:
        attrs = {"count": self.count, "mode": self.kind}
        if self.kind == "relax":
            attrs.update(divisor=self.divisor, damping=self.damping)
        return helper.make_node(
            "FillSweeps", [self.x, self.v, self.a, self.w], [self.output], name=f"{self.output}_genrt_sweeps",
            domain=onnx_ops.DOMAIN, threads=threads, **attrs,
        )  # fmt: skip


class _Graph(fuse_chains._Graph):
    """fuse_chains' graph queries, with the shapes inferred here and the constants read as numbers."""

    def __init__(self, model: onnx.ModelProto):
        shapes = fuse._inferred_shapes(model)
        shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
        super().__init__(model, shapes)

    def only(self, name: str, op: str):
        """The single consumer of `name` if it is a standard `op` node (and `name` no graph output), else None."""
        node = self.only_consumer(name)
        ok = node is not None and node.op_type == op and node.domain in STANDARD and len(node.output) == 1
        return node if ok else None

    def scalar(self, name: str) -> float | None:
        """The value of a one-element constant (initializer or Constant node), else None."""
        value, _ = self.constant(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def ints(self, name: str) -> list[int] | None:
        value, _ = self.constant(name)
        return None if value is None else [int(v) for v in value.reshape(-1)]


def _sweep(pad, g: _Graph) -> tuple | None:
    """(y, y', V, A, W, mode, divisor, damping, node outputs) of the sweep starting at this Pad, or None."""
    if attr(pad, "mode", b"constant") not in (b"edge", "edge") or len(pad.input) < 2 or len(pad.input) > 3:
        return None
    if len(pad.input) == 3 and pad.input[2]:
        return None
    y = pad.input[0]
    conv = g.only(pad.output[0], "Conv")
    if conv is None or conv.input[0] != pad.output[0] or len(conv.input) != 2:
        return None
    k = list(attr(conv, "kernel_shape", []))
    if len(k) != 2 or k[0] != k[1] or k[0] % 2 == 0 or k[0] > 15:
        return None
    r = k[0] // 2
    plain = (
        list(attr(conv, "strides", [1, 1])) == [1, 1]
        and list(attr(conv, "dilations", [1, 1])) == [1, 1]
        and not any(attr(conv, "pads", [0, 0, 0, 0]))
        and attr(conv, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )
    if not plain or g.ints(pad.input[1]) != [0, 0, r, r, 0, 0, r, r]:
        return None
    s = conv.output[0]
    nodes = [pad, conv]
    kind, divisor, damping, g_in = "replace", 1.0, 1.0, s
    div = g.only(s, "Div")
    if div is not None:  # relax: u = s / divisor; t = (u - y) * damping; y + t
        divisor = g.scalar(div.input[1]) if div.input[0] == s else None
        sub = g.only(div.output[0], "Sub")
        if divisor is None or sub is None or list(sub.input) != [div.output[0], y]:
            return None
        mul = g.only(sub.output[0], "Mul")
        damping = g.scalar(other_input(mul, sub.output[0]) or "") if mul is not None else None
        add = g.only(mul.output[0], "Add") if mul is not None else None
        if damping is None or add is None or other_input(add, mul.output[0]) != y:
            return None
        kind, g_in = "relax", add.output[0]
        nodes += [div, sub, mul, add]
    mul_a = g.only(g_in, "Mul")
    a = other_input(mul_a, g_in) if mul_a is not None else None
    add_v = g.only(mul_a.output[0], "Add") if a not in (None, g_in) else None
    v = other_input(add_v, mul_a.output[0]) if add_v is not None else None
    if v in (None, mul_a.output[0]) or y in (a, v):
        return None
    nodes += [mul_a, add_v]
    if not _shapes_fit(g, y, s, v, a, conv.input[1], attr(conv, "group", 1), k[0]):
        return None
    return y, add_v.output[0], v, a, conv.input[1], kind, divisor, damping, [n.output[0] for n in nodes], nodes


def _shapes_fit(g: _Graph, y, s, v, a, w, group, k) -> bool:
    """Whether the inferred shapes are the kernel's: y, s and V one (N, C, H, W), A (N | 1, C | 1, H, W), W (C, 1, k,
    k) with C the Conv's group (depthwise), C, H and W known (the batch may be dynamic)."""
    ys, ss, vs, as_, ws = (g.shapes.get(n) for n in (y, s, v, a, w))
    if any(t is None or len(t) != 4 for t in (ys, ss, vs, as_, ws)):
        return False
    if ys != ss or ys != vs or None in ys[1:] or ys[1] != group:
        return False
    return (as_[0] in (1, ys[0]) and as_[1] in (1, ys[1]) and as_[2:] == ys[2:]
            and ws == [group, 1, k, k])  # fmt: skip


def find(model: onnx.ModelProto) -> list[Sweeps]:
    """The runs of fill sweeps genrt.FillSweeps can run, in graph order."""
    nodes = model.graph.node
    edge = (n for n in nodes if n.op_type == "Pad" and n.domain in STANDARD)
    if not any(attr(n, "mode", b"") in (b"edge", "edge") for n in edge):
        return []  # no edge Pad, no sweep: spare the shape inference
    g = _Graph(model)
    sweeps: dict[str, tuple] = {}  # by the fill each sweep reads
    for node in nodes:
        if node.op_type == "Pad" and node.domain in STANDARD:
            found = _sweep(node, g)
            if found is not None:
                sweeps[found[0]] = found
    by_output = {s[1]: s for s in sweeps.values()}

    def joins(s) -> bool:  # s continues the run of the sweep that wrote its input
        p = by_output.get(s[0])
        return p is not None and p[2:8] == s[2:8] and _continues(sweeps, s[0], g)

    runs = []
    for first in sweeps.values():
        if joins(first):
            continue
        run = [first]
        while run[-1][1] in sweeps and joins(sweeps[run[-1][1]]):
            run.append(sweeps[run[-1][1]])
        outputs = [o for s in run for o in s[8]]
        runs.append(Sweeps(first[0], run[-1][1], *first[2:8], count=len(run), outputs=outputs))
    return runs


def _continues(sweeps: dict, y: str, g: _Graph) -> bool:
    """Whether the sweep starting at `y` may join the run that produced `y`: y read only by that sweep's nodes."""
    own = {id(n) for n in sweeps[y][9]}
    return y not in g.graph_outputs and all(id(n) in own for n in g.consumers.get(y, []))


def apply(model: onnx.ModelProto, runs: list[Sweeps], threads: int = 0) -> onnx.ModelProto:
    """A copy of `model` with each run replaced by one genrt.FillSweeps node where its last node was; `model` where
    runs is empty."""
    if not runs:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {n.output[0] for n in out.graph.node}
    at, replaced = {}, set()
    for run in runs:
        if not all(name in present for name in run.outputs):
            continue  # another rewrite took one of its nodes: keep ORT's
        replaced.update(run.outputs)
        at[run.output] = run.node(threads)
    if not at:
        return model
    kept = [at.get(n.output[0], n) for n in out.graph.node if n.output[0] in at or n.output[0] not in replaced]
    return fuse.with_nodes(out, kept)


def describe(runs: list[Sweeps]) -> str:
    count = sum(r.count for r in runs)
    kinds = sorted({r.kind for r in runs})
    return f"genrt fill_sweeps kernel for {len(runs)} run(s) of {count} sweep(s) ({', '.join(kinds)})"
