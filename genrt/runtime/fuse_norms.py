"""Load-time rewrite of instance norms into one ``genrt.InstanceNorm`` node each, and constant folding.

Instance norms come in two forms, both rewritten, each with an Add of a residual (a residual block's skip
connection) and then a ReLU that read only the norm's output folded in:

- the op: ``InstanceNormalization(x, scale, B) [-> Add(residual)] [-> Relu]`` of a 4-D x (genrt's bundled style
  models, pytorch/examples' TransformerNet);
- written out in elementary ops, as multi-style networks with a conditional affine export it (Magenta's
  26-style network, Dumoulin et al. 2017)::

      m = ReduceMean(x, axes [2, 3], keepdims)        d = Sub(x, m)
      v = ReduceMean(Pow(d, 2) | Mul(d, d), [2, 3])   s = Sqrt(Add(v, eps)) | Pow(Add(v, eps), 0.5)
      n = Div(d, s) | Mul(d, r), r = Reciprocal(s) | Div(1, s) | Pow(Add(v, eps), -0.5)
      y = [Add]([Mul](n, gamma), beta) [-> Add(residual)] [-> Relu]

  with gamma and beta constants of 1 or C values, or (1, C, 1, 1) tensors the graph computes from inputs that
  are not the image (a style vector mixed through a table): those subgraphs stay ORT nodes and feed the genrt node.
  Every intermediate must be read only inside the pattern (a mean used elsewhere too leaves the norm as it is).

The norm's statistics are taken in float64 where float32 would lose digits (see csrc/core/instance_norm_kernel.cpp),
so the result matches ONNX Runtime's to float32 rounding. genrt's kernel reads each plane twice and writes it once,
where ONNX Runtime's written-out form makes some ten passes, and ORT's op form needs separate passes for the Relu
and the residual Add. Measured per node against ONNX Runtime (2 threads, AMD EPYC Zen 4, BENCHMARKS.md): the
written-out form 1.5-11x faster on every shape tried, the op with a Relu or a residual 2-7x (1.0x on 4-microsecond
tensors), the bare op 0.75-2.9x (parity at worst, on a shared machine; none of the networks measured has one).
So the rewrite is not timed per layer: ``GENRT_INSTANCE_NORM=genrt`` (the default) rewrites every norm found,
``ort`` none.

:func:`fold_constants` first evaluates the nodes whose inputs are all constants (the reflect Pads of the 26-style
network take their pads from Constant -> ConstantOfShape -> Concat -> Reshape -> Slice -> Transpose -> Reshape ->
Cast), so that genrt.runtime.fuse sees those pads as constants and can merge each Pad into its genrt.Conv.

With precision bf16, :func:`fold_into_convs` folds a norm that only bfloat16 convs read into them (each conv applies
the norm's affine as it converts its input rows), and :func:`stats_from_convs` has the bfloat16 conv that writes a
norm's input hand it that input's statistics (the AMX kernel sums them as it writes its rows), so the norm reads its
input once, or not at all.

Both apply only to the models OrtRunner gives its CPU sessions: ``runner.graph`` (which genrt.tiles cuts) is never
changed, and a part graph whose norms read given statistics has no ReduceMean left to match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from genrt import onnx_ops
from genrt.runtime import fuse_chains
from genrt.runtime.fuse import _drop_unused_initializers, genrt_or_ort, with_nodes
from genrt.runtime.fuse_chains import attr, other_input

STANDARD = ("", "ai.onnx")
ENV = "GENRT_INSTANCE_NORM"
# Ops folded when all their inputs are constants: those that build shapes and pads. Each result must stay small.
_FOLDABLE = {
    "Cast", "Concat", "Constant", "ConstantOfShape", "Gather", "Identity", "Reshape", "Slice", "Squeeze",
    "Transpose", "Unsqueeze", "Range", "Add", "Sub", "Mul", "Div", "Neg", "Expand", "Tile", "Flatten",
}  # fmt: skip
_MAX_FOLDED = 1 << 16  # elements of one folded value


def mode() -> str:
    """How instance norms run on the CPU: $GENRT_INSTANCE_NORM, "genrt" (the default) or "ort"."""
    return genrt_or_ort(ENV)


# --- constant folding ---------------------------------------------------------------------------------------------


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in STANDARD), onnx_ops.STANDARD_OPSET)


def _eval(node: onnx.NodeProto, values: list, opset: int) -> list | None:
    """The outputs of one node on constant inputs (onnx's reference implementation); None where it cannot run."""
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" for i in range(len(node.input))]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for n, v in zip(names, values, strict=True)]  # fmt: skip
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.input[:] = [n if node.input[i] else "" for i, n in enumerate(names)]
    copy.output[:] = [f"out{i}" for i in range(len(node.output))]
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in copy.output]
    graph = helper.make_graph([copy], "fold", [v for v, n in zip(inputs, node.input, strict=True) if n], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        feeds = {n: v for n, v, orig in zip(names, values, node.input, strict=True) if orig}
        return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, feeds)]
    except Exception:
        return None


def _constant_value(node) -> np.ndarray | None:
    a = node.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    if a.name in ("value_float", "value_floats"):
        return np.asarray(helper.get_attribute_value(a), np.float32)
    if a.name in ("value_int", "value_ints"):
        return np.asarray(helper.get_attribute_value(a), np.int64)
    return None


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` in which the small shape-building nodes (_FOLDABLE) whose inputs are all constants are
    replaced by initializers; `model` itself where there is nothing to fold."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    values: dict[str, np.ndarray] = {}
    inputs = {v.name for v in graph.input if v.name not in inits}
    folded: set[int] = set()
    opset = _opset(model)
    for i, node in enumerate(graph.node):
        if node.op_type == "Constant" and node.domain in STANDARD and len(node.attribute) == 1:
            value = _constant_value(node)
            if value is not None and value.size <= _MAX_FOLDED:
                values[node.output[0]] = value
                folded.add(i)
            continue
        subgraphs = any(a.type == a.GRAPH for a in node.attribute)
        if node.domain not in STANDARD or node.op_type not in _FOLDABLE or subgraphs:
            continue
        args = []
        for name in node.input:
            if not name:
                args.append(None)
            elif name in values:
                args.append(values[name])
            elif name in inits and name not in inputs and inits[name].data_location != onnx.TensorProto.EXTERNAL:
                value = numpy_helper.to_array(inits[name])
                if value.size > _MAX_FOLDED:
                    break
                args.append(value)
            else:
                break
        else:
            out = _eval(node, [a if a is not None else np.zeros(0, np.float32) for a in args], opset)
            if out is None or any(v.size > _MAX_FOLDED or v.dtype == object for v in out):
                continue
            values.update(zip(node.output, out, strict=False))
            folded.add(i)
    graph_outputs = {o.name for o in graph.output}
    if not folded or all(graph.node[i].op_type == "Constant" for i in folded):
        return model  # ORT folds Constant nodes itself; nothing for genrt to gain
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [n for i, n in enumerate(out.graph.node) if i not in folded or set(n.output) & graph_outputs]
    used = {name for n in keep for name in n.input} | graph_outputs
    produced = {o for n in keep for o in n.output}
    new = [numpy_helper.from_array(v, name) for name, v in values.items() if name in used and name not in produced]
    del out.graph.node[:]
    out.graph.node.extend(keep)
    out.graph.initializer.extend(new)
    _drop_unused_initializers(out)
    return out


# --- finding instance norms ---------------------------------------------------------------------------------------


@dataclass
class Norm:
    """One instance norm: the output names of the nodes it replaces and the genrt node's inputs and attributes."""

    outputs: list[str]  # the first output of every node replaced, in graph order
    x: str
    scale: str  # "" where absent
    bias: str
    epsilon: float
    relu: bool
    form: str  # "op" or "written"
    new_inits: list = field(default_factory=list)  # [(name, array)]
    residual: str = ""  # a tensor added before the activation (a residual block's skip connection)

    @property
    def output(self) -> str:
        return self.outputs[-1]

    def node(self, threads: int = 0) -> onnx.NodeProto:
        inputs = [self.x, self.scale, self.bias, self.residual]
        while inputs[-1] == "":
            inputs.pop()
        return helper.make_node(
            "InstanceNorm", inputs, [self.output], name=f"{self.output}_genrt_instance_norm", domain=onnx_ops.DOMAIN,
            epsilon=float(self.epsilon), activation="relu" if self.relu else "none", threads=threads,
        )  # fmt: skip


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        graph = model.graph
        self.model = model
        self.inits = {t.name: t for t in graph.initializer}
        self.inputs = {v.name for v in graph.input if v.name not in self.inits}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for name in dict.fromkeys(n.input):
                if name:
                    self.consumers.setdefault(name, []).append(n)
        self.outputs = {o.name for o in graph.output}
        self._types = None
        self._spatial = None

    def sole(self, name: str, op_types=None):
        """The one node that reads `name` (none of the graph's outputs), of one of `op_types` where given."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or name in self.outputs:
            return None
        node = users[0]
        if node.domain not in STANDARD or (op_types is not None and node.op_type not in op_types):
            return None
        return node

    def readers(self, name: str) -> list:
        return [] if name in self.outputs else self.consumers.get(name, [])

    def constant(self, name: str):
        if name in self.inits and name not in self.inputs:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is None or node.op_type != "Constant" or node.domain not in STANDARD:
            return None
        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name in ("value_float", "value_floats", "value_int", "value_ints"):
                return np.asarray(helper.get_attribute_value(a))
        return None

    def scalar(self, name: str) -> float | None:
        value = self.constant(name)
        return float(value.ravel()[0]) if value is not None and value.size == 1 else None

    def type_of(self, name: str):
        """(element type, [dims: int, str or None]) from shape inference, or None."""
        if self._types is None:
            try:
                typed = shape_inference.infer_shapes(self.model, strict_mode=False).graph
            except Exception:
                typed = self.model.graph
            self._types = {}
            for v in list(typed.value_info) + list(typed.input) + list(typed.output):
                t = v.type.tensor_type
                if t.HasField("shape"):
                    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
                    self._types[v.name] = (t.elem_type, dims)
            for t in self.model.graph.initializer:
                self._types.setdefault(t.name, (t.data_type, list(t.dims)))
        return self._types.get(name)

    def spatial(self) -> set[str]:
        """The tensors that depend on a graph input of rank 3 or more (an image, not a style vector)."""
        if self._spatial is None:
            seen = set()
            for v in self.model.graph.input:
                if v.name in self.inputs and len(v.type.tensor_type.shape.dim) >= 3:
                    seen.add(v.name)
            for n in self.model.graph.node:
                if seen.intersection(n.input):
                    seen.update(n.output)
            self._spatial = seen
        return self._spatial


_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)


def _x_info(g: _Graph, x: str):
    """(numpy dtype, C) of a 4-D float32/float64 x whose channel count is known; else None."""
    info = g.type_of(x)
    if info is None or info[0] not in _FLOATS or len(info[1]) != 4 or not isinstance(info[1][1], int):
        return None
    return helper.tensor_dtype_to_np_dtype(info[0]), info[1][1]


def _spatial_mean(node, g: _Graph) -> bool:
    if node.op_type != "ReduceMean" or node.domain not in STANDARD or int(attr(node, "keepdims", 1)) != 1:
        return False
    axes = attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = g.constant(node.input[1])
    if axes is None:
        return False
    axes = sorted(int(a) % 4 for a in np.asarray(axes).ravel())  # x is 4-D (checked by the caller)
    return axes == [2, 3]


def _affine(g: _Graph, name: str, dtype, channels: int, x: str, base: str, kind: str):
    """(input name, [(new init name, value)]) for an affine operand: a constant of 1 or C values, or a (1 | N, C, 1, 1)
    tensor that does not depend on the image; None otherwise."""
    value = g.constant(name)
    if value is not None:
        if value.ndim > 4 or value.dtype.kind not in "fiu":
            return None
        shape = (1,) * (4 - value.ndim) + value.shape  # as broadcast against x (N, C, H, W)
        if value.size == 1:
            value = np.full(channels, value.ravel()[0])
        elif shape == (1, channels, 1, 1):
            value = value.reshape(channels)
        else:
            return None  # along H or W (a (C,) vector broadcasts along W), or not one value per channel
        new = f"{base}_{kind}"
        return new, [(new, value.astype(dtype))]
    if name in g.spatial():
        return None
    info = g.type_of(name)
    if info is None or info[0] != helper.np_dtype_to_tensor_dtype(np.dtype(dtype)):
        return None
    dims = info[1]
    if len(dims) != 4 or dims[1] != channels or dims[2] != 1 or dims[3] != 1 or dims[0] != 1:
        return None  # a per-sample affine (N > 1) broadcasts too, but its batch is not known to match x's here
    return name, []


def _residual(g: _Graph, name: str, x: str) -> bool:
    """Whether `name` can be a norm's residual: an image-dependent tensor of x's element type, rank and channels,
    whose known sizes are x's or 1 (genrt.InstanceNorm broadcasts it to x's shape, and refuses at run time a shape
    that would not broadcast, where ONNX Runtime's Add would have made a larger output)."""
    if name not in g.spatial() or g.constant(name) is not None:
        return False
    mine, theirs = g.type_of(name), g.type_of(x)
    if mine is None or theirs is None or mine[0] != theirs[0] or len(mine[1]) != 4 or mine[1][1] != theirs[1][1]:
        return False
    for r, d in zip(mine[1], theirs[1], strict=True):
        if isinstance(r, int) and r != 1 and (isinstance(d, int) and d != r):
            return False
        if d == 1 and r != 1:
            return False  # x is 1 there: the sum would be the residual's size
    return True


def _tail(g: _Graph, out: str, nodes: list, x: str, dtype, channels: int, base: str):
    """Extends a norm past its normalized output `out`: [Mul(gamma)] [Add(beta)] [Add(residual)] [Relu]. Returns
    (scale, bias, residual, relu, new inits); appends the nodes taken to `nodes`."""
    scale = bias = residual = ""
    new_inits = []
    nxt = g.sole(out, ("Mul",))
    if nxt is not None:
        found = _affine(g, other_input(nxt, out), dtype, channels, x, base, "scale") if other_input(nxt, out) else None
        if found is not None:
            scale, inits = found
            new_inits += inits
            nodes.append(nxt)
            out = nxt.output[0]
    nxt = g.sole(out, ("Add",))
    if nxt is not None:
        found = _affine(g, other_input(nxt, out), dtype, channels, x, base, "bias") if other_input(nxt, out) else None
        if found is not None:
            bias, inits = found
            new_inits += inits
            nodes.append(nxt)
            out = nxt.output[0]
    residual, out = _residual_add(g, out, nodes, x)
    relu = g.sole(out, ("Relu",))
    if relu is not None:
        nodes.append(relu)
    return scale, bias, residual, relu is not None, new_inits


def _residual_add(g: _Graph, out: str, nodes: list, x: str) -> tuple[str, str]:
    """(residual, new output) where `out` is read only by an Add of a residual (appended to `nodes`); else
    ("", out)."""
    add = g.sole(out, ("Add",))
    other = other_input(add, out) if add is not None else None
    if other is None or other == out or not _residual(g, other, x):
        return "", out
    nodes.append(add)
    return other, add.output[0]


def _op_norm(node, g: _Graph) -> Norm | None:
    if len(node.input) != 3 or len(node.output) != 1:
        return None
    x, scale, bias = node.input
    info = _x_info(g, x)
    if info is None:
        return None
    dtype, channels = info
    nodes = [node]
    residual, out = _residual_add(g, node.output[0], nodes, x)
    relu = g.sole(out, ("Relu",))
    if relu is not None:
        nodes.append(relu)
    eps = float(attr(node, "epsilon", 1e-5))
    return Norm([n.output[0] for n in nodes], x, scale, bias, eps, relu is not None, "op", residual=residual)


def _written_norm(mean, g: _Graph) -> Norm | None:
    x = mean.input[0]
    info = _x_info(g, x)
    if info is None or not _spatial_mean(mean, g):
        return None
    dtype, channels = info
    sub = g.sole(mean.output[0], ("Sub",))
    if sub is None or list(sub.input) != [x, mean.output[0]]:
        return None
    d = sub.output[0]
    readers = g.readers(d)
    if len(readers) != 2 or any(r.domain not in STANDARD for r in readers):
        return None
    square = next((r for r in readers if _is_square(r, d, g)), None)
    if square is None:
        return None
    use = next(r for r in readers if r is not square)
    var = g.sole(square.output[0], ("ReduceMean",))
    if var is None or not _spatial_mean(var, g):
        return None
    add = g.sole(var.output[0], ("Add",))
    eps = g.scalar(other_input(add, var.output[0]) or "") if add is not None else None
    if eps is None or not eps >= 0:
        return None
    nodes = [mean, sub, square, var, add]
    ve = add.output[0]
    root = g.sole(ve, ("Sqrt", "Pow"))
    if root is None:
        return None
    exponent = g.scalar(root.input[1]) if root.op_type == "Pow" and root.input[0] == ve else None
    if root.op_type == "Pow" and exponent not in (0.5, -0.5):
        return None
    nodes.append(root)
    if root.op_type == "Pow" and exponent == -0.5:
        rstd = root.output[0]
    else:
        s = root.output[0]
        inv = g.sole(s)
        if inv is None:
            return None
        if inv is use and inv.op_type == "Div" and list(inv.input) == [d, s]:  # d / s
            rstd = None
        elif inv.op_type == "Reciprocal":
            rstd = inv.output[0]
            nodes.append(inv)
        elif inv.op_type == "Div" and inv.input[1] == s and g.scalar(inv.input[0]) == 1.0:
            rstd = inv.output[0]
            nodes.append(inv)
        else:
            return None
    if rstd is not None:
        if use.op_type != "Mul" or other_input(use, d) != rstd or g.sole(rstd) is not use:
            return None
    nodes.append(use)
    base = f"{use.output[0]}_genrt"
    scale, bias, residual, relu, new_inits = _tail(g, use.output[0], nodes, x, dtype, channels, base)
    return Norm([n.output[0] for n in nodes], x, scale, bias, eps, relu, "written", new_inits, residual)


def _is_square(node, d: str, g: _Graph) -> bool:
    if node.op_type == "Mul" and list(node.input) == [d, d]:
        return True
    return node.op_type == "Pow" and node.input[0] == d and g.scalar(node.input[1]) == 2.0


def find(model: onnx.ModelProto) -> list[Norm]:
    """The instance norms of a graph of standard ops that genrt.InstanceNorm can run, in graph order."""
    nodes = model.graph.node
    if not any(n.op_type in ("InstanceNormalization", "ReduceMean") and n.domain in STANDARD for n in nodes):
        return []
    g = _Graph(model)
    found, taken = [], set()
    for node in nodes:
        if node.domain not in STANDARD or node.output[0] in taken:
            continue
        norm = None
        if node.op_type == "InstanceNormalization":
            norm = _op_norm(node, g)
        elif node.op_type == "ReduceMean":
            norm = _written_norm(node, g)
        if norm is not None and not taken.intersection(norm.outputs):
            taken.update(norm.outputs)
            found.append(norm)
    return found


def apply(model: onnx.ModelProto, norms: list[Norm], threads: int = 0) -> onnx.ModelProto:
    """A copy of `model` with each of `norms` (found on it, or on the model it was rewritten from without touching
    those nodes) replaced by one genrt.InstanceNorm node where its last node was; `model` where norms is empty."""
    if not norms:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_output = {n.output[0]: n for n in out.graph.node}
    nodes = list(out.graph.node)
    replaced, at = set(), {}
    for norm in norms:
        if not all(name in by_output for name in norm.outputs):
            continue  # another rewrite took one of its nodes: keep ORT's
        replaced.update(norm.outputs)
        at[norm.output] = norm.node(threads)
        out.graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in norm.new_inits)
    if not at:
        return model
    kept = []
    for n in nodes:
        if n.output[0] in at:
            kept.append(at[n.output[0]])
        elif n.output[0] not in replaced:
            kept.append(n)
    return with_nodes(out, kept)


def _applies_affine(conv, model: onnx.ModelProto, isa: str) -> bool:
    """Whether genrt.Conv node `conv` converts its input rows itself, so that it applies an input affine as it goes:
    precision bf16 on AMX tiles (every shape) or in the direct bfloat16 kernel (all but 3x3 stride 1, which take
    Winograd's; they would apply it to a copy of the input first, costing what the norm's own write does)."""
    if attr(conv, "precision", b"f32") not in (b"bf16", "bf16") or len(conv.input) > 3 and conv.input[3]:
        return False
    if isa == "amx":
        return True
    w = next((t for t in model.graph.initializer if t.name == conv.input[1]), None)
    winograd = w is not None and list(w.dims[2:]) == [3, 3] and list(attr(conv, "strides", [1, 1])) == [1, 1]
    return isa == "avx512bf16" and w is not None and not winograd


def fold_into_convs(model: onnx.ModelProto, isa: str) -> onnx.ModelProto:
    """A copy of `model` in which each genrt.InstanceNorm without a residual whose output only bfloat16 genrt.Conv
    nodes read (as their input X, where they apply it themselves: _applies_affine) becomes a
    genrt.InstanceNormAffine node feeding those convs their input's (a, b) per plane, and the convs read the norm's
    input: the normalized tensor is never written (an instance norm's output is as large as its input, and the norm
    reads its input twice and writes once). `model` where there is none."""
    graph = model.graph
    consumers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    outputs = {o.name for o in graph.output}
    folds = {}
    for n in graph.node:
        if n.domain != onnx_ops.DOMAIN or n.op_type != "InstanceNorm" or (len(n.input) > 3 and n.input[3]):
            continue
        readers = consumers.get(n.output[0], [])
        if n.output[0] in outputs or not readers:
            continue
        if all(
            r.domain == onnx_ops.DOMAIN and r.op_type == "Conv" and r.input[0] == n.output[0]
            and n.output[0] not in r.input[1:] and _applies_affine(r, model, isa)
            for r in readers
        ):  # fmt: skip
            folds[n.output[0]] = n
    if not folds:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for n in out.graph.node:
        if n.domain == onnx_ops.DOMAIN and n.op_type == "InstanceNorm" and n.output[0] in folds:
            kept = [a for a in n.attribute if a.name in ("epsilon", "threads")]
            affine = helper.make_node("InstanceNormAffine", list(n.input[:3]), [f"{n.output[0]}_affine"],
                                      name=f"{n.name}_affine", domain=onnx_ops.DOMAIN)  # fmt: skip
            affine.attribute.extend(kept)
            nodes.append(affine)
            continue
        if n.domain == onnx_ops.DOMAIN and n.op_type == "Conv" and n.input and n.input[0] in folds:
            norm = folds[n.input[0]]
            relu = attr(norm, "activation", b"none") in (b"relu", "relu")
            inputs = list(n.input) + [""] * (3 - len(n.input))
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            n = copy
            del n.input[:]
            n.input.extend([norm.input[0], *inputs[1:3], f"{norm.output[0]}_affine"])
            n.attribute.append(helper.make_attribute("input_activation", "relu" if relu else "none"))
        nodes.append(n)
    return with_nodes(out, nodes)


def stats_from_convs(model: onnx.ModelProto, isa: str) -> onnx.ModelProto:
    """A copy of `model` in which each genrt.InstanceNorm or genrt.InstanceNormAffine whose input a bfloat16
    genrt.Conv writes takes that input's per-plane statistics from the conv (its second output, S), which the AMX
    kernel sums as it writes its result tiles: the norm then reads its input once (the affine form not at all)
    instead of once more for the statistics. At the amx level only: elsewhere the conv would read its output again
    to compute them, which is what the norm does. `model` where there is none."""
    if isa != "amx":
        return model
    graph = model.graph
    producers = fuse_chains._Graph(model, {}).producer
    norm_stats = {"InstanceNorm": 4, "InstanceNormAffine": 3}  # the stats input's index
    feeds = set()
    for n in graph.node:
        conv = producers.get(n.input[0]) if n.domain == onnx_ops.DOMAIN and n.op_type in norm_stats else None
        if (
            conv is not None and conv.domain == onnx_ops.DOMAIN and conv.op_type == "Conv" and len(conv.output) == 1
            and attr(conv, "precision", b"f32") in (b"bf16", "bf16") and len(n.input) <= norm_stats[n.op_type]
        ):  # fmt: skip
            feeds.add(conv.output[0])
    if not feeds:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for n in out.graph.node:
        if n.domain != onnx_ops.DOMAIN:
            continue
        if n.op_type == "Conv" and n.output[0] in feeds:
            n.output.append(f"{n.output[0]}_stats")
        elif n.op_type in norm_stats and n.input[0] in feeds:
            n.input.extend([""] * (norm_stats[n.op_type] - len(n.input)) + [f"{n.input[0]}_stats"])
    return out
