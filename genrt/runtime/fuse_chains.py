"""The chains of standard ONNX nodes that genrt's ops can run, one finder per op (used by genrt.runtime.fuse).

- ``ConvTranspose [-> BatchNormalization] [-> activation]`` -> ``genrt.ConvTranspose`` (the BatchNormalization
  folded into per-channel scale and shift);
- ``[Pad(constant 0 | reflect | edge)] -> Conv(kH x kW up to 16 x 16, strides up to 8, dilation 1, group 1)
  [-> Relu | LeakyRelu]`` -> ``genrt.Conv``, the Pad (on H and W only, each side at most the kernel size - 1) done
  inside the kernel, merged with the Conv's own pads when the Pad pads with zeros. A Conv with its own nonzero pads
  after a reflect or edge Pad is left to ONNX Runtime.

A node joins a chain only where the previous node's output has it as its only consumer and is no graph output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from genrt import onnx_ops

ACTIVATIONS = {"Relu": "relu", "LeakyRelu": "leaky_relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}
STANDARD = ("", "ai.onnx")
_MAX_KERNEL = 16  # genrt.Conv's kernel sizes: 1..this
_MAX_STRIDE = 8  # and strides: 1..this
_PAD_MODES = {"constant": "zeros", "reflect": "reflect", "edge": "edge"}


@dataclass
class Chain:
    op: str  # the genrt op that replaces the chain: "ConvTranspose" or "Conv"
    main: onnx.NodeProto  # the ConvTranspose or Conv node; the genrt node takes its place in the graph
    nodes: list[onnx.NodeProto]  # every node replaced, in graph order
    x_shape: list  # the chain's input, (N, C, H, W), ints or None
    inputs: list[str]  # the genrt node's inputs
    attrs: dict  # the genrt node's attributes, but threads
    new_inits: list = field(default_factory=list)  # [(name, array)] the genrt node reads besides the model's
    consts: list = field(default_factory=list)  # Constant nodes the replaced nodes read (e.g. a Pad's pads)

    @property
    def input(self) -> str:
        return self.nodes[0].input[0]

    @property
    def output(self) -> str:
        return self.nodes[-1].output[0]

    @property
    def weight(self) -> str:
        return self.main.input[1]

    @property
    def label(self) -> str:
        return f"{self.main.name or self.op} {tuple(self.x_shape[1:])} -> {'+'.join(n.op_type for n in self.nodes)}"

    def bf16_capable(self, inits: dict) -> bool:
        """Whether genrt's op has a bfloat16 kernel for this chain (`inits`: the model's constants by name): every
        float32 Conv chain, and float32 ConvTranspose chains of group 1 with kernels up to 16 rows high."""
        weight = inits.get(self.weight)
        if weight is None or weight.dtype != np.float32:
            return False
        return self.op == "Conv" or (self.attrs["group"] == 1 and weight.shape[2] <= _MAX_KERNEL)

    def genrt_node(self, threads: int, precision: str = "f32") -> onnx.NodeProto:
        """The genrt node in the chain's place; precision "bf16" (where :meth:`bf16_capable`) rounds its operands to
        bfloat16."""
        extra = {"precision": precision} if precision != "f32" else {}
        return helper.make_node(
            self.op,
            self.inputs,
            [self.output],
            name=(self.main.name or self.output) + "_genrt",  # an unnamed node: its output's name is unique
            domain=onnx_ops.DOMAIN,
            threads=threads,
            **self.attrs,
            **extra,
        )


def attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def other_input(node, name: str) -> str | None:
    """The other input of a binary node, one of whose inputs is `name` (`name` itself where both are)."""
    if len(node.input) != 2:
        return None
    a, b = node.input
    return b if a == name else a if b == name else None


class _Graph:
    """What the finders ask of a graph: producers, sole consumers, constant values, inferred shapes."""

    def __init__(self, model: onnx.ModelProto, shapes: dict):
        graph = model.graph
        self.shapes = shapes
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in graph.output}

    def only_consumer(self, name: str):
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.graph_outputs else None

    def constant(self, name: str):
        """(value, Constant node or None) of an initializer or a Constant node's output; (None, None) otherwise."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name]), None
        node = self.producer.get(name)
        if node is None or node.op_type != "Constant" or node.domain not in STANDARD:
            return None, None
        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t), node
            if a.name in ("value_ints", "value_int", "value_floats", "value_float"):
                return np.asarray(helper.get_attribute_value(a)), node
        return None, None


def find(model: onnx.ModelProto, shapes: dict, ops) -> list[Chain]:
    """The chains of the genrt ops in `ops` ("ConvTranspose", "Conv"), in graph order."""
    g = _Graph(model, shapes)
    finders = {"ConvTranspose": _conv_transpose_chain, "Conv": _conv_chain}
    chains = []
    for node in model.graph.node:
        if node.domain in STANDARD and node.op_type in ops:
            chain = finders[node.op_type](node, g)
            if chain is not None:
                chains.append(chain)
    return chains


def _conv_transpose_chain(node, g: _Graph) -> Chain | None:
    pads = list(attr(node, "pads", [0, 0, 0, 0]))
    if (
        attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        or attr(node, "output_shape", None) is not None
        or len(pads) != 4
        or pads[0] != pads[2]
        or pads[1] != pads[3]
        or len(g.shapes.get(node.input[0], [])) != 4
    ):
        return None
    nodes, bn, act = [node], None, None
    nxt = g.only_consumer(node.output[0])
    if (
        nxt is not None
        and nxt.op_type == "BatchNormalization"
        and len(nxt.output) == 1
        and all(name in g.inits for name in nxt.input[1:5])
    ):
        bn = nxt
        nodes.append(bn)
        nxt = g.only_consumer(nxt.output[0])
    if nxt is not None and nxt.op_type in ACTIVATIONS and nxt.domain in STANDARD:
        act = nxt
        nodes.append(act)
    inputs = [node.input[0], node.input[1], node.input[2] if len(node.input) > 2 else ""]
    new_inits = []
    if bn is not None:
        gamma, beta, mean, var = (numpy_helper.to_array(g.inits[name]) for name in bn.input[1:5])
        scale = gamma / np.sqrt(var + float(attr(bn, "epsilon", 1e-5)))
        weight = g.inits.get(node.input[1])
        dtype = numpy_helper.to_array(weight).dtype if weight is not None else np.float32
        base = f"{node.name or 'conv_transpose'}_{node.output[0]}_genrt"
        new_inits = [(f"{base}_scale", scale.astype(dtype)), (f"{base}_shift", (beta - mean * scale).astype(dtype))]
        inputs += [name for name, _ in new_inits]
    while inputs and inputs[-1] == "":
        inputs.pop()
    attrs = dict(
        strides=list(attr(node, "strides", [1, 1])),
        pads=pads,
        output_padding=list(attr(node, "output_padding", [0, 0])),
        dilations=list(attr(node, "dilations", [1, 1])),
        group=int(attr(node, "group", 1)),
        activation="none" if act is None else ACTIVATIONS[act.op_type],
        alpha=float(attr(act, "alpha", 0.01)) if act is not None else 0.01,
    )
    return Chain("ConvTranspose", node, nodes, g.shapes[node.input[0]], inputs, attrs, new_inits)


def _pad_spec(pad, g: _Graph):
    """(mode, [top, left, bottom, right], Constant nodes read) of a Pad genrt.Conv can do, else None."""
    mode = attr(pad, "mode", b"constant")
    mode = _PAD_MODES.get(mode.decode() if isinstance(mode, bytes) else mode)
    consts = []
    if len(pad.input) > 3 and pad.input[3]:
        return None  # explicit axes: rare, left to ONNX Runtime
    if len(pad.input) > 1 and pad.input[1]:  # opset >= 11: pads (and the fill value) are inputs
        pads, node = g.constant(pad.input[1])
        consts += [node] if node is not None else []
        value = 0.0
        if len(pad.input) > 2 and pad.input[2]:
            value, node = g.constant(pad.input[2])
            consts += [node] if node is not None else []
    else:  # opset < 11: attributes
        pads, value = attr(pad, "pads", None), attr(pad, "value", 0.0)
    if mode is None or pads is None or value is None:
        return None
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    if mode == "zeros" and np.any(np.asarray(value) != 0):
        return None
    if len(pads) != 8 or any(pads[i] != 0 for i in (0, 1, 4, 5)) or min(pads) < 0:
        return None  # padding of the batch or channels, or cropping
    return mode, [pads[2], pads[3], pads[6], pads[7]], consts


def conv_qualifies(node, w_shape) -> bool:
    """Whether a Conv node with weights of shape `w_shape` (or None: unknown) is one genrt.Conv can run, ignoring
    padding: a 2-D kernel of 1..16 per side, strides 1..8, dilation 1, group 1, explicit pads. Needs no shape
    inference."""
    kernel = list(attr(node, "kernel_shape", w_shape[2:] if w_shape and len(w_shape) == 4 else []))
    strides = list(attr(node, "strides", [1, 1]))
    return (
        len(node.input) >= 2
        and len(kernel) == 2
        and all(1 <= k <= _MAX_KERNEL for k in kernel)
        and (w_shape is None or (len(w_shape) == 4 and list(w_shape[2:]) == kernel))
        and len(strides) == 2
        and all(1 <= s <= _MAX_STRIDE for s in strides)
        and list(attr(node, "dilations", [1, 1])) == [1, 1]
        and int(attr(node, "group", 1)) == 1
        and attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


def _pads_fit(pads, kernel) -> bool:
    """Whether [top, left, bottom, right] pads are within genrt.Conv's limits for a kH x kW kernel."""
    kh, kw = kernel
    return all(0 <= p <= k - 1 for p, k in zip(pads, (kh, kw, kh, kw), strict=True))


def _conv_chain(node, g: _Graph) -> Chain | None:
    if len(node.input) < 2:
        return None
    weight = g.inits.get(node.input[1])
    w_shape = list(weight.dims) if weight is not None else g.shapes.get(node.input[1])
    if not w_shape or len(w_shape) != 4 or not conv_qualifies(node, w_shape):
        return None
    own = [int(p) for p in attr(node, "pads", [0, 0, 0, 0])]  # [top, left, bottom, right]
    if len(own) != 4:
        return None
    nodes, mode, pads, consts = [node], "zeros", own, []
    pad = g.producer.get(node.input[0])
    if pad is not None and pad.op_type == "Pad" and pad.domain in STANDARD and g.only_consumer(pad.output[0]) is node:
        spec = _pad_spec(pad, g)
        if spec is not None and spec[0] != "zeros" and any(own):
            return None  # reflect/edge padding then zero padding: not one padding mode
        kernel = list(w_shape[2:])
        merged = [a + b for a, b in zip(spec[1], own, strict=True)] if spec is not None else None
        if merged is not None and _pads_fit(merged, kernel):
            mode, pads, consts = spec[0], merged, spec[2]
            nodes.insert(0, pad)
    if not _pads_fit(pads, w_shape[2:]) or len(g.shapes.get(nodes[0].input[0], [])) != 4:
        return None
    act = g.only_consumer(node.output[0])
    if act is not None and act.op_type in ("Relu", "LeakyRelu") and act.domain in STANDARD:
        nodes.append(act)
    else:
        act = None
    inputs = [nodes[0].input[0], node.input[1]] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    new_inits = _scale_into_weights(nodes, act, weight, g, inputs, consts)
    attrs = dict(
        pads=pads,
        strides=[int(v) for v in attr(node, "strides", [1, 1])],
        padding_mode=mode,
        activation="none" if act is None else ACTIVATIONS[act.op_type],
        **({"alpha": float(attr(act, "alpha", 0.01))} if act is not None and act.op_type == "LeakyRelu" else {}),
    )
    return Chain("Conv", node, nodes, g.shapes[nodes[0].input[0]], inputs, attrs, new_inits, consts)


def _scale_into_weights(nodes: list, act, weight, g: _Graph, inputs: list, consts: list) -> list:
    """A Mul by a constant scalar c after the conv chain `nodes` (Real-ESRGAN's 0.2 residual scaling), folded into
    its constant weight and bias: act(conv(x, W) + B) c = act(conv(x, W c) + B c) for the activations genrt.Conv
    fuses (relu and leaky relu where c > 0). Appends the Mul to `nodes` (and a Constant node it reads to `consts`),
    points `inputs` at the scaled constants and returns them as [(name, array)]; [] where there is no such Mul."""
    mul = g.only_consumer(nodes[-1].output[0])
    if weight is None or mul is None or mul.op_type != "Mul" or mul.domain not in STANDARD:
        return []
    c, const = g.constant(other_input(mul, nodes[-1].output[0]) or "")
    if c is None or c.size != 1 or not np.isfinite(c).all() or (act is not None and not float(c.reshape(-1)[0]) > 0):
        return []
    w = numpy_helper.to_array(weight)
    bias = inputs[2] if len(inputs) > 2 else None
    if bias is not None and bias not in g.inits:
        return []
    c = float(c.reshape(-1)[0])
    base = f"{nodes[-1].output[0]}_scaled"
    scaled = [(f"{base}_w", (w * c).astype(w.dtype))]
    if bias is not None:
        scaled.append((f"{base}_b", (numpy_helper.to_array(g.inits[bias]) * c).astype(w.dtype)))
    nodes.append(mul)
    consts += [const] if const is not None else []
    inputs[1:] = [name for name, _ in scaled]
    return scaled
