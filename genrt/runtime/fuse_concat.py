"""Load-time rewrite of a channel Concat read only by bfloat16 convolutions into ``genrt.ConcatConv`` nodes.

Real-ESRGAN's dense blocks concatenate their input with every earlier layer's output before each convolution: 276
Concat nodes that wrote 99 of its 518 ms per 128x128 call on an AMX Xeon (BENCHMARKS.md). A convolution over a
concatenation needs no copy: genrt's bfloat16 direct and AMX kernels convert each input channel's rows to bfloat16
pairs themselves, and read them from wherever the concatenated inputs are (csrc/core/conv2d.h's
conv2d_concat_forward; the other kernel paths copy the concatenation first, as the Concat did).

A ``Concat(axis 1)`` whose output is no graph output and is read only by bfloat16 genrt.Conv nodes, each reading it as
X with a constant weight and no input affine, is removed; each of those convs becomes a genrt.ConcatConv reading the
Concat's inputs (and the conv's residual R, where it has one). Always applied to bfloat16 sessions on the CPU;
``GENRT_CONCAT_CONV=ort`` keeps the Concat nodes. Like genrt.runtime.fuse_norms, it changes only the models OrtRunner
gives its CPU sessions.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from genrt import onnx_ops
from genrt.runtime import fuse, fuse_chains
from genrt.runtime.fuse_chains import attr

ENV = "GENRT_CONCAT_CONV"
_KEPT = ("pads", "strides", "padding_mode", "activation", "alpha", "precision", "threads")


def mode() -> str:
    """Whether the rewrite runs: $GENRT_CONCAT_CONV, "genrt" (the default) or "ort"."""
    return fuse.genrt_or_ort(ENV)


def _reads_as_x(conv, name: str, weights: dict) -> bool:
    """Whether `conv` is a bfloat16 genrt.Conv reading `name` as X only, with a constant weight and no input affine."""
    return (
        conv.domain == onnx_ops.DOMAIN and conv.op_type == "Conv" and conv.input[0] == name
        and name not in conv.input[1:] and conv.input[1] in weights and len(conv.output) == 1
        and attr(conv, "precision", b"f32") in (b"bf16", "bf16") and not (len(conv.input) > 3 and conv.input[3])
    )  # fmt: skip


def apply(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with each channel Concat that only bfloat16 genrt.Conv nodes read folded into them as
    genrt.ConcatConv nodes (see the module's docstring); `model` where there is none or the rewrite is off."""
    if mode() == "ort":
        return model
    g = fuse_chains._Graph(model, {})
    concats = {
        n.output[0]: n
        for n in model.graph.node
        if n.op_type == "Concat" and n.domain in fuse_chains.STANDARD and attr(n, "axis", None) == 1
        and n.output[0] not in g.graph_outputs and g.consumers.get(n.output[0])
        and all(_reads_as_x(r, n.output[0], g.inits) for r in g.consumers[n.output[0]])
    }  # fmt: skip
    if not concats:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes, biases = [], []
    for n in out.graph.node:
        if n.op_type == "Concat" and n.output and n.output[0] in concats:
            continue
        if n.domain == onnx_ops.DOMAIN and n.op_type == "Conv" and n.input[0] in concats:
            bias = n.input[2] if len(n.input) > 2 and n.input[2] else ""
            if not bias:  # ConcatConv's B is required: zeros
                bias = f"{n.output[0]}_zero_bias"
                biases.append(numpy_helper.from_array(np.zeros(g.inits[n.input[1]].dims[0], np.float32), bias))
            residual = [n.input[4]] if len(n.input) > 4 and n.input[4] else []
            fused = helper.make_node("ConcatConv", [n.input[1], bias, *residual, *concats[n.input[0]].input],
                                     list(n.output), name=f"{n.name}_concat", domain=onnx_ops.DOMAIN)  # fmt: skip
            fused.attribute.extend(a for a in n.attribute if a.name in _KEPT)
            if residual:
                fused.attribute.append(helper.make_attribute("residual", 1))
            nodes.append(fused)
            continue
        nodes.append(n)
    out.graph.initializer.extend(biases)
    return fuse.with_nodes(out, nodes)
