"""An exported ONNX graph run as a frozen torch module, so training can build on a model it only has as ONNX.

iGAN (training/igan.py) trains an encoder against a bundled generator, of which only the ONNX file ships. This
runs that file's graph node by node with torch ops, weights as buffers, so gradients flow through it to its
input. It covers the ops genrt's exported generators and encoders use; any other op is an ExportError naming it.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from genrt.errors import ExportError


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(a: dict, ndim: int) -> list[int]:
    pads = list(a.get("pads", [0] * 2 * ndim))
    begin, end = pads[:ndim], pads[ndim:]
    if begin != end:
        raise ExportError(f"asymmetric pads {pads} are not supported")
    return begin


def _conv(x, w, b, a, transposed: bool):
    nd = w.dim() - 2
    kw = dict(stride=a.get("strides", [1] * nd), padding=_pads(a, nd), dilation=a.get("dilations", [1] * nd))
    kw["groups"] = a.get("group", 1)
    if transposed:
        return F.conv_transpose2d(x, w, b, output_padding=a.get("output_padding", [0] * nd), **kw)
    return F.conv2d(x, w, b, **kw)


def _gemm(a_, b_, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    a_ = a_.t() if transA else a_
    b_ = b_.t() if transB else b_
    y = alpha * (a_ @ b_)
    return y if c is None else y + beta * c


def _run(node: onnx.NodeProto, ins: list, a: dict):  # noqa: C901 (one branch per op)
    op = node.op_type
    if op == "Unsqueeze":
        x, axes = ins[0], [int(v) for v in (ins[1] if len(ins) > 1 else a["axes"])]
        for ax in sorted(ax % (x.dim() + len(axes)) for ax in axes):
            x = x.unsqueeze(ax)
        return x
    if op == "Reshape":
        shape = [int(s) for s in ins[1]]
        shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return ins[0].reshape(shape)
    if op == "Flatten":
        return ins[0].flatten(a.get("axis", 1))
    if op in ("Conv", "ConvTranspose"):
        return _conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a, op == "ConvTranspose")
    if op == "BatchNormalization":
        x, scale, bias, mean, var = ins
        return F.batch_norm(x, mean, var, scale, bias, False, 0.0, a.get("epsilon", 1e-5))
    if op == "Gemm":
        return _gemm(*ins, **a)
    simple = {
        "Relu": F.relu,
        "Tanh": torch.tanh,
        "Sigmoid": torch.sigmoid,
        "Identity": lambda x: x,
        "Add": torch.add,
        "Sub": torch.sub,
        "Mul": torch.mul,
        "Div": torch.div,
        "MatMul": torch.matmul,
    }
    if op in simple:
        return simple[op](*ins)
    if op == "LeakyRelu":
        return F.leaky_relu(ins[0], a.get("alpha", 0.01))
    raise ExportError(f"{node.name or op}: the ONNX op {op} is not supported by training.onnx_torch")


class OnnxModule(torch.nn.Module):
    """``OnnxModule(path)(*inputs)``: the graph's first output, computed with torch ops (differentiable)."""

    def __init__(self, path):
        super().__init__()
        model = onnx.load(str(path))
        graph = model.graph
        self.nodes = list(graph.node)
        for node in self.nodes:
            if node.domain not in ("", "ai.onnx"):
                raise ExportError(f"{path}: node {node.name} is in domain {node.domain!r}; export with standard ops")
        self._names: dict[str, str] = {}
        self._ints: dict[str, list] = {}  # integer constants (shapes, axes): python lists, static under tracing
        constants = [(t.name, numpy_helper.to_array(t)) for t in graph.initializer]
        constants += [
            (n.output[0], numpy_helper.to_array(_attrs(n)["value"])) for n in self.nodes if n.op_type == "Constant"
        ]
        for name, value in constants:
            if np.issubdtype(value.dtype, np.integer):
                self._ints[name] = value.tolist()
            else:
                key = f"w{len(self._names)}"
                self.register_buffer(key, torch.from_numpy(np.array(value)))
                self._names[name] = key
        self.nodes = [n for n in self.nodes if n.op_type != "Constant"]
        self.input_names = [v.name for v in graph.input if v.name not in self._names and v.name not in self._ints]
        self.output_name = graph.output[0].name
        self.requires_grad_(False)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        env = {name: getattr(self, buf) for name, buf in self._names.items()} | dict(self._ints)
        env.update(zip(self.input_names, inputs, strict=True))
        for node in self.nodes:
            out = _run(node, [env[i] for i in node.input if i], _attrs(node))
            env[node.output[0]] = out
        return env[self.output_name]


def state_dict(path, prefix: str = "net.") -> dict[str, torch.Tensor]:
    """The float32 weights of a genrt export whose initializers keep their torch names (``net.head.1.weight``, or
    ``...weight__float16`` for a float16 export), ``prefix`` removed: a bundled model's network to train on from."""
    out = {}
    for t in onnx.load(str(path)).graph.initializer:
        name = t.name.removesuffix("__float16")
        if name.startswith(prefix):
            out[name[len(prefix) :]] = torch.from_numpy(numpy_helper.to_array(t).astype(np.float32))
    if not out:
        raise ExportError(f"{path}: no initializer named {prefix}*: not a genrt export of a torch network")
    return out
