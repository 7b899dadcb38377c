"""Load-time rewrite of standard ONNX nodes into genrt's ops where genrt's kernel measured faster:

- ``ConvTranspose [-> BatchNormalization] [-> activation]`` -> ``genrt.ConvTranspose``;
- ``[Pad] -> Conv(kH x kW, strides) [-> Relu | LeakyRelu]`` -> ``genrt.Conv`` (Winograd for 3x3 stride 1, a direct
  implicit GEMM otherwise; the padding done in the kernel).

Which chains qualify is genrt.runtime.fuse_chains' to say. A chain is rewritten only where genrt's kernel measured
faster than ONNX Runtime running the original nodes, on that layer's shape, dtype, thread count and instruction
set. Each decision is measured once and kept in a JSON cache (``$GENRT_CACHE_DIR``, default ``~/.cache/genrt``),
one entry per layer shape, its key naming the nodes it replaces. The environment forces the choice per op (tests
and benchmarks use it): ``GENRT_CONV_TRANSPOSE=genrt|ort|auto`` for ConvTranspose chains and
``GENRT_CONV=genrt|ort|auto`` for Conv chains; the default is ``auto`` (measure), ``genrt`` rewrites every chain,
``ort`` none. A caller's explicit ``how`` overrides both.

What a decision costs (benchmarks/bench_first_load.py; it was 6-19 s per network, now 0.7-2.1 s): on the CPU a layer
is timed on an input of at most 256x256 pixels and 32 x 256 x 256 input elements (:func:`_measure_shape`: the
class's channels and aspect ratio kept, each side a whole multiple of the stride), not at its class's size. Smaller
still (128x128) flipped a layer that genrt wins at full size: activations that fit in the caches favour ONNX
Runtime's separate Pad. The two sides then run in turn after a warm-up run each (genrt's op packs its weights), each
figured by its fastest run (other work on a shared machine only ever adds time), and timing stops as soon as one
side is clearly ahead (:func:`_time_pair`). Layers of one shape share one decision (the key below).

Shape classes: a model's dynamic axes (batch, and the height and width of fully convolutional models) take any
size, so choices are made per class of sizes, not per size. The batch axis falls in one of two buckets (up to
4, and more); every other dynamic axis in the power of two nearest its size (clamped to 1..2048). Each class is
measured once, at its representative sizes (:func:`representative`), and every size in it reuses the choice.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper, shape_inference

import genrt
from genrt import onnx_ops
from genrt.runtime import fuse_chains
from genrt.runtime.fuse_chains import Chain

OPS = ("ConvTranspose", "Conv")  # the genrt ops the rewrite can write
CUDA_OPS = ("ConvTranspose",)  # those with a CUDA kernel (the rewrite on a GPU measures there)
_ENV = {"ConvTranspose": "GENRT_CONV_TRANSPOSE", "Conv": "GENRT_CONV"}
# Layer choices are measured per shape class (batch bucket and size classes): a model gets one session per
# distinct set of choices, and each call runs the session of its inputs' class (genrt/runtime/ort_runner.py).
BUCKETS = (1, 32)  # the batch size each bucket is measured at
_SMALL_BATCH_LIMIT = 4  # batches up to this size use the first bucket's choices
# Part of every cached decision's key: bumped when genrt's kernel gets faster (2: weights packed once per
# session; 3: the bfloat16 convolutions' faster input copies), so choices measured against an older kernel are
# measured again.
KERNEL_REVISION = 3


_MAX_SIZE_CLASS = 2048  # larger sizes share the 2048 class: past it, time per pixel no longer changes
_MEASURE_ELEMENTS = 1 << 22  # a large-batch measurement shrinks its batch to keep a layer's input under this
# On the CPU a layer is timed on at most this many pixels and this many input elements (32 channels at 256x256):
_MEASURE_PIXELS = 256 * 256
_MEASURE_CPU_ELEMENTS = 32 * 256 * 256
_MEASURE_BF16_ELEMENTS = 256 * 256 * 256  # a bfloat16 layer against the float32 winner: 256x256 up to 256 channels
_MIN_RUNS = 2  # timed rounds (one run of each side) at least, after a warm-up run of each
_MAX_RUNS = 12  # and at most
BF16_MARGIN = 1.1  # a bfloat16 layer replaces the float32 winner only where this much faster (near-equal timings
# flipped between runs, and a network of such mixed layers ran slower than all-float32: RRDBNet 0.88x)
_CLEAR = 1.2  # a side this much faster after _MIN_RUNS rounds decides at once (one round alone decided wrongly:
# a single slow run of either side, on a machine with other work, can put it 2x behind)
_TIME_BUDGET = 0.08  # seconds of timed rounds before a closer call is decided


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
            label = f"batch {'<=' if rep == BUCKETS[0] else '>'} {_SMALL_BATCH_LIMIT}"
            if label not in parts:  # one batch for all inputs (a part of a graph has several)
                parts.append(label)
        else:
            sizes.append(str(rep))
    if sizes:
        parts.append("~" + "x".join(sizes))
    return ", ".join(parts) or "static shapes"


_lock = threading.Lock()


def mode(op: str = "ConvTranspose") -> str:
    """How chains of genrt op `op` are chosen: $GENRT_CONV_TRANSPOSE / $GENRT_CONV, "auto" unless set."""
    value = os.environ.get(_ENV[op], "auto")
    return value if value in ("auto", "genrt", "ort") else "auto"


def modes(how: str | dict | None = None) -> dict[str, str]:
    """{op: "auto" | "genrt" | "ort"}: `how` for every op where given (a dict: per op), else each op's environment
    variable."""
    if isinstance(how, dict):
        return {op: how.get(op) or mode(op) for op in OPS}
    return {op: how or mode(op) for op in OPS}


def _cache_path() -> Path:
    root = os.environ.get("GENRT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "genrt")
    return Path(root) / "conv_transpose_choice.json"


_MAX_CACHE_BYTES = 16 << 20  # the cache holds a few hundred bytes per layer shape measured
_cache_warned: set = set()  # (path, mtime, size) of cache files already warned about


def _read_cache() -> dict:
    """The cached decisions {key: {"genrt": bool, ...}} and verdicts ({key: {"value": ...}}, :func:`cached`); a
    missing file is an empty cache, and a file that is not JSON, or JSON of another shape, is ignored with one
    warning (the next write replaces it), never a crash. Entries of the wrong shape are dropped, the rest kept."""
    from genrt.runtime import metadata as md

    path = _cache_path()
    try:
        stat = path.stat()
        if stat.st_size > _MAX_CACHE_BYTES:
            raise ValueError(f"{stat.st_size} bytes, over the {_MAX_CACHE_BYTES}-byte limit")
        data = path.read_bytes()
        if md.json_depth(data.decode("utf-8"), 4) > 3:
            raise ValueError("nested deeper than a cache is")
        cache = json.loads(data)
        if not isinstance(cache, dict):
            raise ValueError(f"a JSON {type(cache).__name__}, not an object")
    except FileNotFoundError:
        return {}
    except OSError:
        return {}  # unreadable: measuring again costs only time
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or another shape
        _warn_cache(path, stat, f"not a genrt cache ({exc})")
        return {}
    good = {
        k: v for k, v in cache.items() if isinstance(v, dict) and (isinstance(v.get("genrt"), bool) or "value" in v)
    }
    if len(good) != len(cache):
        _warn_cache(
            path, stat, f"{len(cache) - len(good)} malformed entr{'y' if len(cache) - len(good) == 1 else 'ies'}"
        )
    return good


def _warn_cache(path: Path, stat, what: str) -> None:
    import warnings

    tag = (str(path), stat.st_mtime_ns, stat.st_size)
    if tag not in _cache_warned:
        _cache_warned.add(tag)
        warnings.warn(
            f"genrt: ignoring kernel-choice cache {path}: {what}; it will be rewritten", RuntimeWarning, stacklevel=3
        )


def _write_cache(cache: dict) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs re-measuring next time


def cached(key: str):
    """The value kept under `key` in the decision cache (other load-time verdicts than layer choices: e.g.
    genrt.runtime.precision's), or None."""
    entry = _read_cache().get(key)
    return None if entry is None else entry.get("value")


def store(key: str, value) -> None:
    """Keeps `value` (JSON) under `key` in the decision cache."""
    with _lock:
        merged = _read_cache()
        merged[key] = {"value": value}
        _write_cache(merged)


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
    return has_candidates(model, ("ConvTranspose",))


def has_candidates(model: onnx.ModelProto, ops=OPS) -> bool:
    """Whether the graph has a standard node that may start a chain of an op in `ops`: any ConvTranspose, a Conv
    that genrt.Conv can run (see fuse_chains.conv_qualifies; cheap: a node scan, no shape inference)."""
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.domain not in fuse_chains.STANDARD or n.op_type not in ops:
            continue
        if n.op_type == "ConvTranspose":
            return True
        if len(n.input) >= 2 and fuse_chains.conv_qualifies(n, dims.get(n.input[1])):
            return True
    return False


def find_chains(model: onnx.ModelProto, input_shapes: dict | None = None, ops=OPS) -> list[Chain]:
    """The chains of standard nodes genrt's ops in `ops` can run, in graph order.

    Each chain's x_shape is inferred from the graph, with the graph inputs at `input_shapes` where given.
    """
    if not has_candidates(model, ops):
        return []  # shape inference (the slow part) only where there is something to find
    shapes = _inferred_shapes(with_input_shapes(model, input_shapes) if input_shapes else model)
    return fuse_chains.find(model, shapes, ops)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)


class _Residuals:
    """The Adds a chosen genrt.Conv takes over: Add(y, r) reading the chain's output y, its only reader, where r has
    y's inferred shape (no broadcasting) and is ready before the conv runs (a graph input, a constant, or the output
    of a node before the chain's). genrt.Conv adds r as it stores y (its input R), saving the Add's pass."""

    def __init__(self, model: onnx.ModelProto, shapes: dict):
        self.g = fuse_chains._Graph(model, shapes)
        self.index = {id(n): i for i, n in enumerate(model.graph.node)}

    def add_after(self, chain: Chain):
        add = self.g.only_consumer(chain.output) if chain.op == "Conv" else None
        if add is None or add.op_type != "Add" or add.domain not in fuse_chains.STANDARD:
            return None
        r = fuse_chains.other_input(add, chain.output)
        shape = self.g.shapes.get(chain.output)
        if r is None or r == chain.output or not shape or None in shape or self.g.shapes.get(r) != shape:
            return None
        writer = self.g.producer.get(r)  # None: a graph input or an initializer
        return add if writer is None or self.index[id(writer)] < self.index[id(chain.nodes[0])] else None

    @staticmethod
    def with_residual(node, add, y: str):
        """A copy of genrt node `node` reading Add `add`'s other input as R and writing its output."""
        out = onnx.NodeProto()
        out.CopyFrom(node)
        inputs = list(out.input) + [""] * (4 - len(out.input))
        del out.input[:]
        out.input.extend(inputs + [fuse_chains.other_input(add, y)])
        out.output[0] = add.output[0]
        return out


def _subgraph(chain: Chain, nodes, inits: dict, x_shape, dtype, opset: int) -> bytes:
    used = {name for n in nodes for name in n.input if name in inits}
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        list(nodes),
        "layer",
        [helper.make_tensor_value_info(chain.input, elem, x_shape)],
        [helper.make_tensor_value_info(chain.output, elem, None)],
        [numpy_helper.from_array(inits[name], name) for name in sorted(used)],
    )
    # The model's own opset: its BatchNormalization or activation may carry attributes of an older version.
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _session(model: bytes, threads: int, library: str | None, device: str):
    from genrt.runtime.onnx_session import Session, _log_severity, _providers  # onnx_session imports its users

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # The two sides run in turn: a pool left spinning after one side's run would take a core from the other's
    # (decisions flipped between processes: sr-x4 kept 2, 2 and 6 of its 10 layers in bf16 in three loads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = _log_severity()  # a layer that fails here is kept as ORT's, silently
    if library:
        options.register_custom_ops_library(library)
    return Session(model, options, providers=_providers(device, None))


def _time_pair(ort_model: bytes, genrt_model: bytes, x: np.ndarray, threads: int, library: str, device: str = "cpu"):
    """(ORT's seconds, genrt's seconds) for one run of the two layer models on `x`.

    On the CPU: after one warm-up run each (genrt's op packs its weights, ORT allocates), the two run in turn, so
    both see the same load from other work, and each side's figure is its fastest run (other work only ever adds
    time). Timing stops after `_MIN_RUNS` rounds where one side is ahead by more than `_CLEAR`, else once the
    rounds have taken `_TIME_BUDGET` seconds (or `_MAX_RUNS` rounds). On a GPU, each side's median, one after the
    other, with the input bound there once so that only the layer is timed.
    """
    # both with genrt's library: the first side is ORT's own nodes, or genrt's float32 node against a bfloat16 one
    sessions = [_session(ort_model, threads, library, device), _session(genrt_model, threads, library, device)]
    if device != "cpu":
        return tuple(_time_bound(session, x, device) for session in sessions)
    feeds = [{session.get_inputs()[0].name: x} for session in sessions]
    for session, feed in zip(sessions, feeds, strict=True):
        session.run(None, feed)
    times: list[list[float]] = [[], []]
    start = time.perf_counter()
    while len(times[0]) < _MAX_RUNS:
        for session, feed, ts in zip(sessions, feeds, times, strict=True):
            t0 = time.perf_counter()
            session.run(None, feed)
            ts.append(time.perf_counter() - t0)
        if len(times[0]) < _MIN_RUNS:
            continue
        ratio = min(times[1]) / min(times[0])
        if not 1 / _CLEAR < ratio < _CLEAR or time.perf_counter() - start >= _TIME_BUDGET:
            break
    return min(times[0]), min(times[1])


def _time_bound(session, x: np.ndarray, device: str) -> float:
    index = int(device.partition(":")[2] or 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input(session.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", index))
    binding.bind_output(session.get_outputs()[0].name, "cuda", index)
    session.run_with_iobinding(binding)
    times, start = [], time.perf_counter()
    while len(times) < 5 or (len(times) < 50 and time.perf_counter() - start < 0.2):
        t0 = time.perf_counter()
        session.run_with_iobinding(binding)  # returns once the device's work is done
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _measure_shape(chain: Chain, kernel, device: str = "cpu", elements: int = 0) -> list:
    """The input a chain is timed on: the class's batch (:func:`_measure_batch`); on the CPU, its height and width
    shrunk in proportion to at most `_MEASURE_PIXELS` pixels and `elements` (default `_MEASURE_CPU_ELEMENTS`) input
    elements, each a whole multiple of the stride and no less than the `kernel` (kH, kW) (so every padding mode
    still applies)."""
    batch, channels, height, width = chain.x_shape
    pixels = min(_MEASURE_PIXELS, (elements or _MEASURE_CPU_ELEMENTS) // channels)
    if device != "cpu" or height * width <= pixels:
        return [_measure_batch(chain.x_shape), channels, height, width]
    scale = (pixels / (height * width)) ** 0.5
    strides = list(chain.attrs.get("strides", [1, 1])) if chain.op == "Conv" else [1, 1]
    dims = []
    for size, stride, k in zip((height, width), strides, list(kernel), strict=True):
        shrunk = max(stride, int(size * scale) // stride * stride)
        dims.append(min(size, max(shrunk, k)))
    shape = [batch, channels, *dims]
    return [_measure_batch(shape), *shape[1:]]


def _measure_batch(x_shape: list) -> int:
    """The batch a layer is timed at: the class's, shrunk for big images (the large-batch bucket stays > 4)."""
    batch, per_sample = x_shape[0], int(np.prod(x_shape[1:]))
    if batch <= _SMALL_BATCH_LIMIT:
        return batch
    return max(_SMALL_BATCH_LIMIT + 1, min(batch, _MEASURE_ELEMENTS // max(per_sample, 1)))


def fuse(
    model: onnx.ModelProto,
    *,
    threads: int,
    library: str,
    input_shapes: dict,
    how: str | dict | None = None,
    device: str = "cpu",
    precision: str = "f32",
    shape_cache: dict | None = None,
) -> tuple[onnx.ModelProto, list[tuple[int, str, str]]]:
    """Rewrites the chains where genrt's kernel is faster for graph inputs of `input_shapes` ({name: dims}).

    `how` ("auto", "genrt", "ort", or a dict of them per op) applies where given, else each op follows its
    environment variable. precision "bf16": a chain may also become a bfloat16 genrt node (where
    Chain.bf16_capable); measured ("auto"),
    it is timed against the float32 winner (ORT's nodes or genrt's float32 node) and kept where faster; "genrt"
    takes it everywhere. Its label ends in " in bf16".
    Returns the model (the same object where nothing changed) and [(chain index, genrt op, description)] of the
    chains rewritten; the same indices give the same model, so callers can share one session between shape classes.
    `shape_cache`: a dict the caller keeps for one model and `input_shapes` (the float32 and bfloat16 passes of
    one shape class), so that the graph's shapes are inferred once.
    """
    how_of = modes(how)
    ops = tuple(op for op in OPS if how_of[op] != "ort")
    if not ops:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not has_candidates(out, ops):
        return model, []
    if shape_cache is not None and "shapes" in shape_cache:
        shapes = shape_cache["shapes"]
    else:
        shapes = _inferred_shapes(with_input_shapes(out, input_shapes) if input_shapes else out)
        if shape_cache is not None:
            shape_cache["shapes"] = shapes
    chains = fuse_chains.find(out, shapes, ops)
    if not chains:
        return model, []
    residuals = _Residuals(out, shapes)
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    opset = _default_opset(out)
    cache = _read_cache() if "auto" in how_of.values() else {}
    cache_dirty = False
    replaced, chosen, drop = {}, [], set()
    for index, chain in enumerate(chains):
        node = chain.genrt_node(threads)
        bf16 = chain.genrt_node(threads, "bf16") if precision == "bf16" and chain.bf16_capable(inits) else None
        use = bf16 or node
        if how_of[chain.op] == "auto":
            key = _key(chain, inits, threads, device)
            if key is None:
                continue  # no concrete shape or constant weight to measure on: keep ORT's nodes
            if key not in cache:
                cache[key] = _measure(chain, node, inits, opset, threads, library, device)
                cache_dirty = True
            use = node if cache[key]["genrt"] else None
            if bf16 is not None:  # bfloat16 against the float32 winner (ORT's nodes or genrt's float32 node)
                key16 = _key(chain, inits, threads, device, precision="bf16")
                if key16 not in cache:
                    # bfloat16 costs precision: kept only where clearly faster. A Conv is timed at up to 256x256
                    # whatever the channels (the ratio of the two Winograd kernels moves with the size: style-gravel's
                    # 128-channel layers at 1024x1024 run at 256x256; timed at 128x128, bf16 won them and at full
                    # size lost); a ConvTranspose (one algorithm either way) at float32's size, which keeps the first
                    # call's choosing under 2 s (style-gravel at 1024: 1.96 s with its two layers at 256x256)
                    cache[key16] = _measure(
                        chain, bf16, inits, opset, threads, library, device, against=use, margin=BF16_MARGIN,
                        elements=_MEASURE_BF16_ELEMENTS if chain.op == "Conv" else 0,
                    )  # fmt: skip
                    cache_dirty = True
                use = bf16 if cache[key16]["genrt"] else use
            if use is None:
                continue
        in_bf16, add = use is bf16, residuals.add_after(chain)
        if add is not None:  # the skip connection's Add, done as the conv stores its output
            use = residuals.with_residual(use, add, chain.output)
            drop.add(id(add))
        replaced[id(chain.main)] = use
        drop.update(id(n) for n in chain.nodes if n is not chain.main)
        out.graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in chain.new_inits)
        label = chain.label + (" + Add" if add is not None else "") + (" in bf16" if in_bf16 else "")
        chosen.append((index, chain.op, label))
    if cache_dirty:
        with _lock:
            merged = _read_cache()
            merged.update(cache)
            _write_cache(merged)
    if not replaced:
        return model, []
    nodes = [replaced.get(id(n), n) for n in out.graph.node if id(n) not in drop]
    return with_nodes(out, nodes), chosen


def genrt_or_ort(env: str) -> str:
    """How a load-time rewrite that is not timed runs on the CPU: "ort" where $env says so (the graph's nodes kept),
    else "genrt"."""
    return "ort" if os.environ.get(env) == "ort" else "genrt"


def with_nodes(out: onnx.ModelProto, nodes: list) -> onnx.ModelProto:
    """`out` (changed in place) running `nodes`, genrt's nodes among them: what they left unused dropped, the genrt
    opset declared."""
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    _drop_unused_constants(out)
    _drop_unused_initializers(out)
    if not any(o.domain == onnx_ops.DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.VERSION))
    return out


def _key(chain: Chain, inits: dict, threads: int, device: str = "cpu", precision: str = "f32") -> str | None:
    """The cache key of a chain's decision, or None where there is no concrete shape or constant weight to measure
    on. Its node types name the genrt op and what it replaces (ConvTranspose keys keep their earlier form); a
    bfloat16 decision's key ends in "bf16"."""
    weight = inits.get(chain.weight)
    if weight is None or any(d is None or d < 1 for d in chain.x_shape):
        return None
    if chain.op == "ConvTranspose":
        attrs = [(a.name, list(a.ints) or a.i) for a in chain.main.attribute]
    else:
        attrs = sorted(chain.attrs.items())
    layer = [str(weight.dtype), list(weight.shape), chain.x_shape[1:], [n.op_type for n in chain.nodes], attrs]
    batch = _measure_batch(chain.x_shape)
    where = [genrt.kernels.cpu_isa(), threads] if device == "cpu" else [device, _gpu_name(device)]
    return json.dumps(
        [genrt.__version__, KERNEL_REVISION, *where, batch] + layer + ([precision] * (precision != "f32"))
    )


@functools.cache
def _gpu_name(device: str) -> str:
    """The GPU's name where nvidia-smi can say it (the cache must not carry choices from one GPU to another)."""
    import subprocess

    index = device.partition(":")[2] or "0"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={index}", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return out.stdout.strip() or "unknown GPU"
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"


def _measure(
    chain: Chain,
    node,
    inits: dict,
    opset: int,
    threads: int,
    library: str,
    device: str = "cpu",
    against="ort",
    margin: float = 1.0,
    elements: int = 0,
) -> dict:
    """The cache entry of a chain: its nodes timed in ORT (or the genrt node `against`, where given) against the
    genrt node, on the class's batch and (on the CPU) a smaller height and width (:func:`_measure_shape` with
    `elements`, recorded as "measured_hw"). "genrt" says whether `node` was faster by `margin`; "ort_ms" is the
    other side's time."""
    weight = inits[chain.weight]
    all_inits = dict(inits, **dict(chain.new_inits))
    shape = _measure_shape(chain, weight.shape[2:], device, elements)
    x = np.random.default_rng(0).standard_normal(shape).astype(weight.dtype)
    base = chain.consts + chain.nodes if against in ("ort", None) else [against]
    ort_nodes = _subgraph(chain, base, all_inits, x.shape, weight.dtype, opset)
    genrt_node = _subgraph(chain, [node], all_inits, x.shape, weight.dtype, opset)
    try:
        ms_ort, ms_genrt = _time_pair(ort_nodes, genrt_node, x, threads, library, device)
    except Exception as exc:  # a layer ORT or genrt cannot run alone: keep the model's own nodes
        return {"genrt": False, "error": str(exc).splitlines()[0][:200]}
    entry = {"genrt": ms_genrt * margin < ms_ort, "ort_ms": ms_ort * 1e3, "genrt_ms": ms_genrt * 1e3}
    if against not in ("ort", None):
        entry["against"] = "genrt f32"
    if list(x.shape[2:]) != list(chain.x_shape[2:]):
        entry["measured_hw"] = list(x.shape[2:])
    return entry


def _drop_unused_constants(model: onnx.ModelProto) -> None:
    """Removes Constant nodes nothing reads any more (a merged Pad's pads)."""
    used = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    keep = [n for n in model.graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    if len(keep) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(keep)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    used |= {v.name for v in model.graph.input}  # an initializer that is also an input stays overridable
    keep = [t for t in model.graph.initializer if t.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
