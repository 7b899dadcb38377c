"""ONNX Runtime sessions for genrt models: genrt's custom-op library, its fallback, providers and threads."""

from __future__ import annotations

import glob
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from genrt import onnx_ops
from genrt.errors import ArgumentError, GenrtError, InvalidModelError
from genrt.runtime import fuse
from genrt.runtime import metadata as md

_LIB_GLOB = str(Path(__file__).resolve().parent.parent / "_ort_ops*.so")
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


def ort_ops_library() -> str | None:
    """Path of genrt's ORT custom-op library, or None where the build had no ORT headers."""
    found = sorted(glob.glob(_LIB_GLOB))
    return found[0] if found else None


@dataclass(frozen=True)
class IOSpec:
    """One graph input or output: name, shape (ints, or strings for dynamic axes) and numpy dtype."""

    name: str
    shape: tuple
    dtype: type

    def __str__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name}[{dims}]"


def load_onnx(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise InvalidModelError(f"{path}: not a readable ONNX model (truncated or another format?): {exc}") from None
    if not model.graph.node:
        raise InvalidModelError(f"{path}: the ONNX graph has no nodes")
    return model


def _providers(device: str, providers):
    if providers is not None:
        return list(providers)
    if not isinstance(device, str):
        raise ArgumentError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise ArgumentError(f"device: expected 'cuda' or 'cuda:N', got {device!r}")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise GenrtError(
                "device='cuda': this onnxruntime has no CUDA provider; install onnxruntime-gpu on a machine with a GPU"
            )
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    raise ArgumentError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")


def _with_threads(model: onnx.ModelProto, threads: int) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in onnx_ops.genrt_nodes(out):
        kept = [a for a in node.attribute if a.name != "threads"]
        del node.attribute[:]
        node.attribute.extend(kept + [onnx.helper.make_attribute("threads", threads)])
    return out


def prepare(
    model: onnx.ModelProto, threads: int, device: str, conv_transpose: str | None = None
) -> tuple[list, dict[str, str]]:
    """Makes the model ready for ORT: returns ([(bucket batch size, model, needs genrt's library)], kernels).

    With the library: ConvTranspose chains are rewritten to genrt's fused op where it measured faster (CPU only),
    once per batch bucket, and each genrt node gets the session's thread count as its `threads` attribute.
    Without it: genrt ops are defined as model-local functions of standard ops, and genrt says so once.
    `kernels` says how each genrt op runs, for `genrt info`.
    """
    global _warned_no_library
    used = sorted({n.op_type for n in onnx_ops.genrt_nodes(model)})
    library = ort_ops_library()
    if library is None:
        if used and not _warned_no_library:
            warnings.warn(
                "genrt's ONNX Runtime kernels are not built (no ORT headers at build time): running genrt ops as "
                "standard ONNX ops, which is slower. See scripts/fetch_ort_headers.sh.",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned_no_library = True
        how = "standard ONNX ops (genrt's ORT library not built)"
        ready = onnx_ops.inline_decompositions(model) if used else model
        return [(fuse.BUCKETS[-1], ready, False)], {op: how for op in used}
    kernels = {op: "genrt kernel" for op in used}
    variants, fused_by_bucket = [], {}
    for bucket in fuse.BUCKETS if device == "cpu" else fuse.BUCKETS[-1:]:
        rewritten, fused = (
            fuse.fuse(model, threads=threads, library=library, batch=bucket, how=conv_transpose)
            if device == "cpu"
            else (model, [])
        )
        if variants and fused == fused_by_bucket[variants[-1][0]]:
            variants[-1] = (bucket, variants[-1][1], variants[-1][2])  # same choices: one session serves both
            fused_by_bucket[bucket] = fused
            continue
        fused_by_bucket[bucket] = fused
        variants.append((bucket, _with_threads(rewritten, threads), bool(onnx_ops.genrt_nodes(rewritten))))
    descriptions = [f"batch {'<=' if b == fuse.BUCKETS[0] else '>'} {fuse._SMALL_BATCH_LIMIT}: {len(f)} layer(s)"
                    for b, f in fused_by_bucket.items() if f]  # fmt: skip
    if descriptions:
        kernels["ConvTranspose"] = "genrt fused kernel for " + "; ".join(descriptions)
    return variants, kernels


def create_session(
    model: onnx.ModelProto, path: Path, *, device: str, threads: int, providers, conv_transpose: str | None = None
):
    """Returns ([(bucket batch size, session)], {genrt op: how it runs})."""
    variants, kernels = prepare(model, threads, device if providers is None else "custom", conv_transpose)
    sessions = []
    for bucket, ready, native in variants:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if native:
            options.register_custom_ops_library(ort_ops_library())
        try:
            session = ort.InferenceSession(ready.SerializeToString(), options, providers=_providers(device, providers))
        except GenrtError:
            raise
        except Exception as exc:
            raise InvalidModelError(f"{path}: onnxruntime cannot load this model: {exc}") from None
        sessions.append((bucket, session))
    return sessions, kernels


def io_specs(args) -> list[IOSpec]:
    return [
        IOSpec(a.name, tuple(d if d is not None else "?" for d in a.shape), _NP_TYPES.get(a.type, object))
        for a in args
    ]


def onnx_metadata(model: onnx.ModelProto) -> dict:
    return md.decode({p.key: p.value for p in model.metadata_props})


def default_threads(threads) -> int:
    from genrt.kernels import _check_threads

    return _check_threads(threads)


__all__ = ["IOSpec", "create_session", "default_threads", "io_specs", "load_onnx", "onnx_metadata", "ort_ops_library"]
