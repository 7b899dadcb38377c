"""Load-time rewrite: ConvTranspose [-> BatchNormalization] [-> activation] -> genrt.ConvTranspose.

A chain is rewritten only where genrt's fused kernel measured faster than ONNX Runtime running the original
nodes, on that layer's shape, dtype, thread count and instruction set. Each decision is measured once and kept
in a JSON cache (``$GENRT_CACHE_DIR``, default ``~/.cache/genrt``). ``GENRT_CONV_TRANSPOSE=genrt|ort`` forces
the choice (tests and benchmarks use it); the default is ``auto``.

Shape classes: a model's dynamic axes (batch, and the height and width of fully convolutional models) take any
size, so choices are made per class of sizes, not per size. The batch axis falls in one of two buckets (up to
4, and more); every other dynamic axis in the power of two nearest its size (clamped to 1..2048). Each class is
measured once, at its representative sizes (:func:`representative`), and every size in it reuses the choice.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper, shape_inference

import genrt
from genrt import onnx_ops

ACTIVATIONS = {"Relu": "relu", "LeakyRelu": "leaky_relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}
# Layer choices are measured per shape class (batch bucket and size classes): a model gets one session per
# distinct set of choices, and each call runs the session of its inputs' class (genrt/runtime/ort_runner.py).
BUCKETS = (1, 32)  # the batch size each bucket is measured at
_SMALL_BATCH_LIMIT = 4  # batches up to this size use the first bucket's choices
# Part of every cached decision's key: bumped when genrt's kernel gets faster (2: weights packed once per
# session), so choices measured against an older kernel are measured again.
KERNEL_REVISION = 2


_MAX_SIZE_CLASS = 2048  # larger sizes share the 2048 class: past it, time per pixel no longer changes
_MEASURE_ELEMENTS = 1 << 22  # a large-batch measurement shrinks its batch to keep a layer's input under this


def bucket_for(batch: int) -> int:
    return BUCKETS[0] if batch <= _SMALL_BATCH_LIMIT else BUCKETS[1]


def size_class(size: int) -> int:
    """The class of a dynamic non-batch axis of this size: the nearest power of two (geometrically), 1..2048."""
    if size <= 1:
        return 1
    return int(min(_MAX_SIZE_CLASS, 2 ** round(np.log2(size))))


def class_of(axis: int, size: int) -> int:
    """The representative size of `size` on a dynamic axis: a batch bucket on axis 0, else size_class."""
    return bucket_for(size) if axis == 0 else size_class(size)


def class_label(dynamic_axes, key) -> str:
    """'batch <= 4, 256x256' for a class key (one representative per dynamic (input, axis))."""
    parts, sizes = [], []
    for (_, axis), rep in zip(dynamic_axes, key, strict=True):
        if axis == 0:
            parts.append(f"batch {'<=' if rep == BUCKETS[0] else '>'} {_SMALL_BATCH_LIMIT}")
        else:
            sizes.append(str(rep))
    if sizes:
        parts.append("~" + "x".join(sizes))
    return ", ".join(parts) or "static shapes"


_lock = threading.Lock()


@dataclass
class Chain:
    conv: onnx.NodeProto
    bn: onnx.NodeProto | None = None
    act: onnx.NodeProto | None = None
    x_shape: list = field(default_factory=list)  # (N, C, H, W), ints or None

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return [n for n in (self.conv, self.bn, self.act) if n is not None]

    @property
    def output(self) -> str:
        return self.nodes[-1].output[0]


def mode() -> str:
    value = os.environ.get("GENRT_CONV_TRANSPOSE", "auto")
    return value if value in ("auto", "genrt", "ort") else "auto"


def _cache_path() -> Path:
    root = os.environ.get("GENRT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "genrt")
    return Path(root) / "conv_transpose_choice.json"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_cache(cache: dict) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs re-measuring next time


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def with_input_shapes(model: onnx.ModelProto, input_shapes: dict) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs have the given concrete shapes {name: [dims]}."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for value in out.graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, input_shapes[value.name], strict=False):
                dim.Clear()
                dim.dim_value = int(size)
    return out


def _inferred_shapes(model: onnx.ModelProto) -> dict:
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        return {}
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in list(inferred.graph.value_info) + list(inferred.graph.input)
    }


def has_conv_transpose(model: onnx.ModelProto) -> bool:
    """Whether the graph has a standard ConvTranspose node at all (cheap: no shape inference)."""
    return any(n.op_type == "ConvTranspose" and n.domain in ("", "ai.onnx") for n in model.graph.node)


def find_chains(model: onnx.ModelProto, input_shapes: dict | None = None) -> list[Chain]:
    """ConvTranspose nodes genrt's kernel can run, with the BatchNormalization and activation that follow.

    Each chain's x_shape is inferred from the graph, with the graph inputs at `input_shapes` where given.
    """
    if not has_conv_transpose(model):
        return []  # shape inference (the slow part) only where there is something to find
    shapes = _inferred_shapes(with_input_shapes(model, input_shapes) if input_shapes else model)
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def only_consumer(name):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in graph_outputs else None

    chains = []
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type != "ConvTranspose":
            continue
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        if (
            _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or _attr(node, "output_shape", None) is not None
            or len(pads) != 4
            or pads[0] != pads[2]
            or pads[1] != pads[3]
            or len(shapes.get(node.input[0], [])) != 4
        ):
            continue
        chain = Chain(node, x_shape=shapes[node.input[0]])
        nxt = only_consumer(node.output[0])
        if (
            nxt is not None
            and nxt.op_type == "BatchNormalization"
            and len(nxt.output) == 1
            and all(name in inits for name in nxt.input[1:5])
        ):
            chain.bn = nxt
            nxt = only_consumer(nxt.output[0])
        if nxt is not None and nxt.op_type in ACTIVATIONS and nxt.domain in ("", "ai.onnx"):
            chain.act = nxt
        chains.append(chain)
    return chains


def _genrt_node(chain: Chain, extra_inputs: list[str], threads: int) -> onnx.NodeProto:
    conv = chain.conv
    act = "none" if chain.act is None else ACTIVATIONS[chain.act.op_type]
    inputs = [conv.input[0], conv.input[1], conv.input[2] if len(conv.input) > 2 else ""] + extra_inputs
    while inputs and inputs[-1] == "":
        inputs.pop()
    return helper.make_node(
        "ConvTranspose",
        inputs,
        [chain.output],
        name=(conv.name or "conv_transpose") + "_genrt",
        domain=onnx_ops.DOMAIN,
        strides=list(_attr(conv, "strides", [1, 1])),
        pads=list(_attr(conv, "pads", [0, 0, 0, 0])),
        output_padding=list(_attr(conv, "output_padding", [0, 0])),
        dilations=list(_attr(conv, "dilations", [1, 1])),
        group=int(_attr(conv, "group", 1)),
        activation=act,
        alpha=float(_attr(chain.act, "alpha", 0.01)) if chain.act is not None else 0.01,
        threads=threads,
    )


def _fold_bn(chain: Chain, inits: dict) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (inits[name] for name in chain.bn.input[1:5])
    eps = float(_attr(chain.bn, "epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)


def _subgraph(chain: Chain, nodes, inits: dict, x_shape, dtype, opset: int) -> bytes:
    used = {name for n in nodes for name in n.input if name in inits}
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        list(nodes),
        "layer",
        [helper.make_tensor_value_info(chain.conv.input[0], elem, x_shape)],
        [helper.make_tensor_value_info(chain.output, elem, None)],
        [numpy_helper.from_array(inits[name], name) for name in sorted(used)],
    )
    # The model's own opset: its BatchNormalization or activation may carry attributes of an older version.
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _time(model: bytes, x: np.ndarray, threads: int, library: str | None) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if library:
        options.register_custom_ops_library(library)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    times, start = [], time.perf_counter()
    while len(times) < 5 or (len(times) < 50 and time.perf_counter() - start < 0.2):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _measure_batch(x_shape: list) -> int:
    """The batch a layer is timed at: the class's, shrunk for big images (the large-batch bucket stays > 4)."""
    batch, per_sample = x_shape[0], int(np.prod(x_shape[1:]))
    if batch <= _SMALL_BATCH_LIMIT:
        return batch
    return max(_SMALL_BATCH_LIMIT + 1, min(batch, _MEASURE_ELEMENTS // max(per_sample, 1)))


def fuse(
    model: onnx.ModelProto, *, threads: int, library: str, input_shapes: dict, how: str | None = None
) -> tuple[onnx.ModelProto, list[tuple[int, str]]]:
    """Rewrites the chains where genrt's kernel is faster for graph inputs of `input_shapes` ({name: dims}).

    Returns the model (the same object where nothing changed) and [(chain index, description)] of the chains
    rewritten; the same indices give the same model, so callers can share one session between shape classes.
    """
    how = how or mode()
    if how == "ort":
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    chains = find_chains(out, input_shapes)
    if not chains:
        return model, []
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    opset = _default_opset(out)
    cache = _read_cache() if how == "auto" else {}
    cache_dirty = False
    replaced, chosen, drop = {}, [], set()
    for index, chain in enumerate(chains):
        weight = inits.get(chain.conv.input[1])
        extra, new_inits = [], []
        if chain.bn is not None:
            scale, shift = _fold_bn(chain, inits)
            dtype = weight.dtype if weight is not None else np.float32
            base = f"{chain.conv.name or 'conv_transpose'}_{index}_genrt"
            new_inits = [(f"{base}_scale", scale.astype(dtype)), (f"{base}_shift", shift.astype(dtype))]
            extra = [name for name, _ in new_inits]
        node = _genrt_node(chain, extra, threads)
        label = (
            f"{chain.conv.name or 'ConvTranspose'} {tuple(chain.x_shape[1:])} -> "
            f"{'+'.join(n.op_type for n in chain.nodes)}"
        )
        if how == "auto":
            if weight is None or any(d is None or d < 1 for d in chain.x_shape):
                continue  # no concrete shape to measure on: keep ORT's nodes
            batch = _measure_batch(chain.x_shape)
            attrs = [(a.name, list(a.ints) or a.i) for a in chain.conv.attribute]
            layer = [str(weight.dtype), list(weight.shape), chain.x_shape[1:], [n.op_type for n in chain.nodes], attrs]
            key = json.dumps([genrt.__version__, KERNEL_REVISION, genrt.kernels.cpu_isa(), threads, batch] + layer)
            if key not in cache:
                all_inits = dict(inits, **dict(new_inits))
                x = np.random.default_rng(0).standard_normal([batch] + chain.x_shape[1:]).astype(weight.dtype)
                ort_nodes = _subgraph(chain, chain.nodes, all_inits, x.shape, weight.dtype, opset)
                genrt_node = _subgraph(chain, [node], all_inits, x.shape, weight.dtype, opset)
                try:
                    ms_ort, ms_genrt = _time(ort_nodes, x, threads, None), _time(genrt_node, x, threads, library)
                except Exception as exc:  # a layer ORT or genrt cannot run alone: keep the model's own nodes
                    cache[key] = {"genrt": False, "error": str(exc).splitlines()[0][:200]}
                else:
                    cache[key] = {"genrt": ms_genrt < ms_ort, "ort_ms": ms_ort * 1e3, "genrt_ms": ms_genrt * 1e3}
                cache_dirty = True
            if not cache[key]["genrt"]:
                continue
        replaced[id(chain.conv)] = node
        drop.update(id(n) for n in chain.nodes[1:])
        out.graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in new_inits)
        chosen.append((index, label))
    if cache_dirty:
        with _lock:
            merged = _read_cache()
            merged.update(cache)
            _write_cache(merged)
    if not replaced:
        return model, []
    nodes = [replaced.get(id(n), n) for n in out.graph.node if id(n) not in drop]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    _drop_unused_initializers(out)
    if not any(o.domain == onnx_ops.DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION))
    return out, chosen


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
