"""ONNX Runtime sessions for genrt models: genrt's custom-op library, its fallback, providers and threads."""

from __future__ import annotations

import glob
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import external_data_helper, numpy_helper

from genrt import onnx_ops
from genrt.errors import ArgumentError, GenrtError, InvalidModelError, RunError
from genrt.runtime import metadata as md

_PACKAGE = Path(__file__).resolve().parent.parent
_LIB_GLOB = str(_PACKAGE / "_ort_ops.*so")  # CPU kernels
_CUDA_LIB_GLOB = str(_PACKAGE / "_ort_ops_cuda.*so")  # the same, plus CUDA execution-provider kernels
_warned_no_library = False

# ONNX element types -> numpy
_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def is_cuda(device) -> bool:
    return isinstance(device, str) and (device == "cuda" or device.startswith("cuda:"))


def ort_ops_library(device: str = "cpu") -> str | None:
    """Path of genrt's ORT custom-op library, or None where the build had no ORT headers.

    For a CUDA device, the library that also holds genrt's CUDA kernels where this build has it (nvcc was there);
    else the CPU one, whose kernels ORT then runs on the CPU beside the CUDA nodes.
    """
    found = sorted(glob.glob(_CUDA_LIB_GLOB)) if is_cuda(device) else []
    found = found or sorted(glob.glob(_LIB_GLOB))
    return found[0] if found else None


def has_cuda_kernels(device: str) -> bool:
    """Whether genrt's ORT library for `device` has CUDA kernels (a CUDA device and a CUDA build)."""
    library = ort_ops_library(device)
    return is_cuda(device) and library is not None and "_ort_ops_cuda" in Path(library).name


@dataclass(frozen=True)
class IOSpec:
    """One graph input or output: name, shape (ints, or strings for dynamic axes) and numpy dtype."""

    name: str
    shape: tuple
    dtype: type

    def __str__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name}[{dims}]"


def _tensors(graph: onnx.GraphProto):
    """Every tensor a graph holds: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def load_onnx(path: Path) -> onnx.ModelProto:
    """The model at `path`, with the tensors it keeps in external data files beside it loaded in."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise InvalidModelError(f"{path}: not a readable ONNX model (truncated or another format?): {exc}") from None
    if not model.graph.node:
        raise InvalidModelError(f"{path}: the ONNX graph has no nodes")
    external = [t for t in _tensors(model.graph) if external_data_helper.uses_external_data(t)]
    if external:
        folder = Path(path).resolve().parent
        for tensor in external:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            target = (folder / location).resolve()
            if not location or Path(location).is_absolute() or folder not in target.parents:
                raise InvalidModelError(
                    f"{path}: tensor {tensor.name!r} points at external data {location!r} outside the model's folder"
                )
            if not target.is_file():
                raise InvalidModelError(
                    f"{path}: tensor {tensor.name!r} is stored in {location!r} beside the model, which is missing; "
                    "copy the model together with its data files"
                )
        try:
            external_data_helper.load_external_data_for_model(model, str(folder))
        except Exception as exc:
            raise InvalidModelError(f"{path}: cannot read its external data: {exc}") from None
    fold_stored_casts(model)
    return model


def fold_stored_casts(model: onnx.ModelProto) -> int:
    """Replaces each Cast of a float16 / bfloat16 initializer to float32 by a float32 initializer, in place.

    Files that store their weights in 16 bits (genrt.export(weights="float16"), onnxconverter-common's
    keep_io_types) cast them back at the top of the graph; folded at load, the weights are constants again, so
    genrt's load-time rewrites (which need constant weights) apply and nothing is cast per run. Returns how many
    Casts were folded.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    for value in graph.input:  # an initializer that is also a graph input may be fed a value: not a constant
        inits.pop(value.name, None)
    narrow = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    folded, keep = {}, []
    for node in graph.node:
        source = inits.get(node.input[0]) if node.op_type == "Cast" and node.domain in ("", "ai.onnx") else None
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        widened = source is not None and source.data_type in narrow and to == onnx.TensorProto.FLOAT
        if not widened or node.output[0] in outputs:
            keep.append(node)
            continue
        value = numpy_helper.to_array(source).astype(np.float32)
        folded[node.output[0]] = numpy_helper.from_array(value, node.output[0])
    if not folded:
        return 0
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(folded.values())
    used = {name for n in graph.node for name in n.input} | outputs
    still = [t for t in graph.initializer if t.name in used or t.name in folded]
    del graph.initializer[:]
    graph.initializer.extend(still)
    return len(folded)


def _providers(device: str, providers):
    if providers is not None:
        return list(providers)
    if not isinstance(device, str):
        raise ArgumentError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if is_cuda(device):
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise ArgumentError(f"device: expected 'cuda' or 'cuda:N', got {device!r}")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise GenrtError(
                "device='cuda': this onnxruntime has no CUDA provider; pip install 'genrt[gpu]' (onnxruntime-gpu) "
                "on a machine with a GPU"
            )
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    raise ArgumentError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")


def base_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool, dict[str, str]]:
    """The model as ORT will run it before any ConvTranspose rewrite: (model, needs genrt's library, kernels).

    Without genrt's library, genrt ops are defined as model-local functions of standard ops, and genrt says so
    once. `kernels` says how each genrt op the file uses runs, for `genrt info`.
    """
    global _warned_no_library
    used = sorted({n.op_type for n in onnx_ops.genrt_nodes(model)})
    if ort_ops_library() is None:
        if used and not _warned_no_library:
            warnings.warn(
                "genrt's ONNX Runtime kernels are not built (no ORT headers at build time): running genrt ops as "
                "standard ONNX ops, which is slower. See scripts/fetch_ort_headers.sh.",
                RuntimeWarning,
                stacklevel=5,  # base_model < OrtRunner < _load < load < the caller
            )
            _warned_no_library = True
        how = "standard ONNX ops (genrt's ORT library not built)"
        return (onnx_ops.inline_decompositions(model) if used else model), False, {op: how for op in used}
    return model, bool(used), {op: "genrt kernel" for op in used}


def _log_severity() -> int:
    # ORT prints failed runs as coloured error lines on stderr; genrt raises them as RunError instead, so by
    # default only fatal lines get through. GENRT_ORT_LOG_LEVEL=0..4 (verbose..fatal) shows more.
    value = os.environ.get("GENRT_ORT_LOG_LEVEL", "4")
    return int(value) if value in ("0", "1", "2", "3", "4") else 4


def run_options() -> ort.RunOptions:
    options = ort.RunOptions()
    options.log_severity_level = _log_severity()
    return options


_shared_arena_lock = threading.Lock()
_shared_arena = False


def _register_shared_arena() -> None:
    global _shared_arena
    with _shared_arena_lock:
        if not _shared_arena:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
            _shared_arena = True


class Session(ort.InferenceSession):
    """onnxruntime's InferenceSession without its provider fallback: where a session cannot be made, onnxruntime
    prints an "EP Error" banner to stdout and retries with other providers; genrt chooses the providers itself and
    turns the failure into an error of its own, so nothing reaches the terminal."""

    def _create_inference_session(self, *args, **kwargs):
        self._enable_fallback = False
        return super()._create_inference_session(*args, **kwargs)


def new_session(model: onnx.ModelProto, path: Path, *, device: str, threads: int, providers, native: bool, arena=True):
    """An InferenceSession for `model` with genrt's thread, logging and library settings.

    ``arena="shared"``: the session allocates from one CPU arena shared by every such session of the process,
    so the many part sessions of a tiled run keep one peak between them, not one each. (False: no arena.)
    """
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = bool(arena)
    if arena == "shared":
        _register_shared_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = _log_severity()
    profile = os.environ.get("GENRT_ORT_PROFILE")  # a folder: ORT's per-node JSON profile, written on release
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(profile, "genrt-profile")
    if native:
        options.register_custom_ops_library(ort_ops_library(device))
    for node in onnx_ops.genrt_nodes(model):  # each genrt node runs on the session's thread count
        kept = [a for a in node.attribute if a.name != "threads"]
        del node.attribute[:]
        node.attribute.extend(kept + [onnx.helper.make_attribute("threads", threads)])
    try:
        return Session(model.SerializeToString(), options, providers=_providers(device, providers))
    except GenrtError:
        raise
    except Exception as exc:
        raise InvalidModelError(f"{path}: onnxruntime cannot load this model: {describe_ort_error(exc)}") from None


_NODE_FAILED = re.compile(r"running (\S+) node\. Name:'([^']*)' Status Message: (.*)", re.S)


def _strip_source_location(message: str) -> str:
    # ORT's status messages may start with "/path/file.cc:47 ns::Func(args) cond was false. " before the reason.
    message = message.strip()
    m = re.match(r"\S+\.(?:cc|h|cpp|hpp):\d+ ", message)
    if m:
        rest, depth = message[m.end() :], 0
        for i, ch in enumerate(rest):  # skip the function signature, parentheses balanced
            depth += ch == "("
            depth -= ch == ")"
            if ch == ")" and depth == 0:
                message = rest[i + 1 :].strip()
                break
        message = re.sub(r"^.*? was false\. ", "", message)
    return message


def describe_ort_error(exc: BaseException) -> str:
    """onnxruntime's exception text without its '[ONNXRuntimeError] : 1 : FAIL :' prefix and source locations."""
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(exc).strip())
    return _strip_source_location(text)


def run_error(exc: BaseException, path) -> RunError:
    """A RunError naming the node that failed inside ORT (when ORT says which) and why."""
    text = describe_ort_error(exc)
    m = _NODE_FAILED.search(text)
    if m:
        op_type, node, reason = m.group(1), m.group(2), _strip_source_location(m.group(3))
        message = f"{path}: node {node!r} ({op_type}) failed: {reason}"
        return RunError(message, node=node, op_type=op_type, reason=reason)
    return RunError(f"{path}: onnxruntime failed to run the model: {text}", reason=text)


def io_specs(args, path=None) -> list[IOSpec]:
    """IOSpecs of a session's get_inputs() or get_outputs(); InvalidModelError where a name or a dimension's name is
    not UTF-8 (onnxruntime keeps the file's bytes, and decodes them only here)."""
    try:
        return [
            IOSpec(a.name, tuple(d if d is not None else "?" for d in a.shape), _NP_TYPES.get(a.type, object))
            for a in args
        ]
    except UnicodeDecodeError:
        raise InvalidModelError(f"{path}: a graph input's or output's name is not UTF-8 text") from None


def onnx_metadata(model: onnx.ModelProto, path=None) -> dict:
    """The model's genrt metadata, its size, nesting and contract checked (InvalidModelError naming `path`)."""
    return md.decode_checked({p.key: p.value for p in model.metadata_props}, path or "model")


def default_threads(threads) -> int:
    from genrt.kernels import _check_threads

    return _check_threads(threads)


__all__ = [
    "IOSpec",
    "base_model",
    "default_threads",
    "io_specs",
    "load_onnx",
    "new_session",
    "onnx_metadata",
    "ort_ops_library",
    "run_error",
]
