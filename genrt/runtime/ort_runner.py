"""Runs an ONNX model in ONNX Runtime with genrt's kernels chosen per shape class of the inputs.

A model whose ConvTranspose or Conv chains genrt's kernels could run (genrt.runtime.fuse) gets one session per
distinct set of layer choices.
Which set a call uses depends on the class of its input sizes (genrt.runtime.fuse: batch buckets, and power-of-two
classes for other dynamic axes such as height and width). Models whose only dynamic axis is the batch are decided
at load, for both batch buckets; models with other dynamic axes decide each class on its first call (or on
``Model.prepare``). A decision is measured once per layer shape and kept in genrt's cache, so no size is ever
timed twice, and sizes of one class share one session.
"""

from __future__ import annotations

import threading

import onnx

import genrt
from genrt.errors import RunError
from genrt.runtime import fuse, fuse_concat, fuse_norms, fuse_resize, fuse_sweeps, precision
from genrt.runtime.onnx_session import (
    base_model,
    has_cuda_kernels,
    io_specs,
    new_session,
    ort_ops_library,
    run_error,
    run_options,
)


def dynamic_axes(model: onnx.ModelProto) -> list[tuple[str, int]]:
    """(input name, axis) of every graph-input axis without a fixed size."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if not (dim.HasField("dim_value") and dim.dim_value > 0):
                out.append((value.name, axis))
    return out


class OrtRunner:
    """``run(feeds)`` picks (or builds, once) the session of the feeds' shape class; thread-safe."""

    def __init__(
        self,
        model: onnx.ModelProto,
        path,
        *,
        device: str,
        threads: int,
        providers,
        how: str | None,
        arena=True,
        precision: str = "f32",
        probe_range=None,
    ):
        self._path = path
        self._settings = dict(
            device=device, threads=threads, providers=providers, how=how, precision=precision, probe_range=probe_range
        )
        self._precision = precision if device == "cpu" else "f32"  # genrt's bfloat16 kernels are CPU kernels
        self._notes: dict[tuple, str] = {}  # class key -> the precision chosen and why
        self._probe_range = probe_range  # [lo, hi] the probe photo of precision="auto" is scaled to
        self._arena = arena
        self._threads = threads
        self._base, self._native, self._op_kernels = base_model(model)
        self._how = fuse.modes(how)  # per op; `how` given: for every op, else the environment's, read now
        self._library = ort_ops_library(device)
        # What the CPU sessions run: the base model with its shape-building constants folded (so the Conv rewrite
        # sees every Pad's pads), its instance norms as genrt.InstanceNorm nodes (genrt.runtime.fuse_norms), an
        # inpainter's fill sweeps as genrt.FillSweeps nodes (genrt.runtime.fuse_sweeps) and its linear and cubic
        # Resize nodes as genrt.Resize nodes (genrt.runtime.fuse_resize).
        # self._base, what `graph` returns and genrt.tiles cuts, stays as it is.
        cpu = self._library is not None and providers is None and device == "cpu"
        self._prepared = fuse_norms.fold_constants(self._base) if cpu else self._base
        self._norms = fuse_norms.find(self._prepared) if cpu and fuse_norms.mode() == "genrt" else []
        self._sweeps = fuse_sweeps.find(self._prepared) if cpu and fuse_sweeps.mode() == "genrt" else []
        self._resizes = fuse_resize.find(self._prepared) if cpu and fuse_resize.mode() == "genrt" else []
        self._dynamic = dynamic_axes(self._base)
        self._options = run_options()
        self._lock = threading.Lock()
        self._sessions: dict[tuple, object] = {}  # chosen chain indices -> session
        self._graphs: dict[tuple, onnx.ModelProto] = {}  # chosen chain indices -> the model its session runs
        self._classes: dict[tuple, tuple] = {}  # class key -> (session, [(chain index, label)])
        # Ops that may be rewritten: a node scan; which chains qualify is fuse()'s to say.
        # On a GPU only ConvTranspose has a genrt kernel, and only in a CUDA build.
        device_ops = fuse.OPS if device == "cpu" else fuse.CUDA_OPS if has_cuda_kernels(device) else ()
        self._ops = tuple(
            op
            for op, how_op in self._how.items()
            if how_op != "ort" and op in device_ops and fuse.has_candidates(self._prepared, (op,))
        )
        rewrite = self._library is not None and providers is None and bool(self._ops)
        base = self._session(())
        self.inputs = io_specs(base.get_inputs(), path)
        self.outputs = io_specs(base.get_outputs(), path)
        self._single = None if rewrite else base
        self._eligible = rewrite
        if rewrite and all(axis == 0 for _, axis in self._dynamic):
            for bucket in fuse.BUCKETS if self._dynamic else fuse.BUCKETS[:1]:  # decided now, for `genrt info`
                self._for_class((bucket,) * len(self._dynamic))

    @property
    def graph(self) -> onnx.ModelProto:
        """The ONNX model this runner runs (before genrt's ConvTranspose and Conv rewrite); do not modify it."""
        return self._base

    def derived(self, model: onnx.ModelProto, label: str, *, arena=True) -> OrtRunner:
        """A runner for another graph (e.g. a part of this one) with the same device, threads, precision and kernel
        choice."""
        return OrtRunner(model, f"{self._path} ({label})", arena=arena, **self._settings)

    @property
    def kernels(self) -> dict[str, str]:
        """How each genrt op runs; for ConvTranspose and Conv, the genrt layers chosen in each shape class decided so
        far (an op is absent where no decided class runs a genrt layer of it)."""
        kernels = dict(self._op_kernels)
        decided = sorted(self._classes.items())
        if self._norms:
            relu, residual = (sum(bool(getattr(norm, k)) for norm in self._norms) for k in ("relu", "residual"))
            count = len(self._norms)
            kernels["InstanceNorm"] = (
                f"genrt instance_norm kernel for {count} norm(s), {relu} with relu, {residual} with a residual"
            )
        if self._sweeps:
            kernels["FillSweeps"] = fuse_sweeps.describe(self._sweeps)
        if self._resizes:
            kernels["Resize"] = fuse_resize.describe(self._resizes)
        what = {
            "ConvTranspose": "genrt fused kernel",
            "Conv": "genrt conv2d kernel (Winograd for 3x3 stride 1, direct otherwise)",
        }
        for op in fuse.OPS:
            counts = [
                (
                    key,
                    sum(1 for _, o, _ in chosen if o == op),
                    sum(1 for _, o, la in chosen if o == op and la.endswith(" in bf16")),
                )
                for key, (_, chosen) in decided
            ]
            fused = [
                f"{fuse.class_label(self._dynamic, key)}: {n} layer(s)" + (f", {b} in bf16" if b else "")
                for key, n, b in counts
                if n
            ]
            if fused:
                kernels[op] = f"{what[op]} for " + "; ".join(fused)
            elif self._eligible and not decided and op in self._ops:
                kernels[op] = "chosen per input size class on the first call of each class"
        notes = [f"{fuse.class_label(self._dynamic, key)}: {note}" for key, note in sorted(self._notes.items())]
        if notes:
            kernels["precision"] = "; ".join(notes)
        elif self._precision != "f32":
            kernels["precision"] = f"{self._precision}: decided per input size class on the first call of each class"
        return kernels

    def prepare(self, shapes: dict[str, tuple]) -> None:
        """Decides genrt's kernels for inputs of these shapes now rather than on the first call."""
        if self._single is None:
            self._for_class(self._class_key(shapes))

    def run(self, feeds: dict):
        session = self._single or self._for_class(self._class_key({k: v.shape for k, v in feeds.items()}))
        try:
            return session.run(None, feeds, self._options)
        except RunError:
            raise
        except Exception as exc:  # onnxruntime's own exception types
            raise run_error(exc, self._path) from exc

    def _class_key(self, shapes: dict) -> tuple:
        return tuple(fuse.class_of(axis, int(shapes[name][axis])) for name, axis in self._dynamic)

    def _for_class(self, key: tuple):
        entry = self._classes.get(key)
        if entry is None:
            with self._lock:
                entry = self._classes.get(key)
                if entry is None:
                    entry = self._decide(key)
                    self._classes[key] = entry
        return entry[0]

    def _decide(self, key: tuple) -> tuple:
        reps = dict(zip(self._dynamic, key, strict=True))
        shapes = {}
        for value in self._base.graph.input:
            dims = value.type.tensor_type.shape.dim
            shapes[value.name] = [reps.get((value.name, axis), dim.dim_value) for axis, dim in enumerate(dims)]
        how = {op: (self._how[op] if op in self._ops else "ort") for op in self._how}
        device = self._settings["device"]
        shape_cache: dict = {}  # the graph's shapes at `shapes`, inferred once for both precisions

        def fused(kind: str):
            ready, chosen = fuse.fuse(
                self._prepared, threads=self._threads, library=self._library, input_shapes=shapes, how=how,
                device=device, precision=kind, shape_cache=shape_cache,
            )  # fmt: skip
            return self._session(tuple((index, label) for index, _, label in chosen), ready), chosen

        if self._precision != "auto":
            if self._precision == "bf16":
                emulated = "" if precision.native_bf16() else " (emulated: this CPU has no bfloat16 instructions)"
                self._notes[key] = precision.describe("bf16", None, "asked for" + emulated)
            return fused(self._precision)
        if not precision.native_bf16():
            why = f"this CPU has no bfloat16 instructions (cpu isa {genrt.kernels.cpu_isa()})"
            self._notes[key] = precision.describe("f32", None, why)
            return fused("f32")
        if not self._ops:
            self._notes[key] = precision.describe("f32", None, "no convolution for genrt to run in bfloat16")
            return fused("f32")
        verdict = precision.verdict_key(self._digest(), key, self._threads)
        db = fuse.cached(verdict)
        built = {}
        if db is None:
            built = {kind: fused(kind) for kind in ("f32", "bf16")}
            # at most PROBE_SIDE high and wide where height and width are dynamic: a fully convolutional network's
            # fidelity does not depend on the size, and two runs at 1024x1024 would double a first call's cost
            small = {name: list(dims) for name, dims in shapes.items()}
            for name, axis in self._dynamic:
                if axis >= 2:
                    small[name][axis] = min(small[name][axis], precision.PROBE_SIDE)
            try:
                feeds = precision.probe_feeds(self._graph_inputs(), small, self._probe_range)
                db = precision.psnr(built["f32"][0].run(None, feeds), built["bf16"][0].run(None, feeds))
            except Exception as exc:  # a model the probe cannot feed (inputs that must agree, say): float32
                self._notes[key] = precision.describe("f32", None, f"the fidelity check could not run ({exc})"[:200])
                return built["f32"]
            fuse.store(verdict, db)
        choice = "bf16" if db >= precision.MIN_PSNR_DB else "f32"
        self._notes[key] = precision.describe(choice, db)
        return built.get(choice) or fused(choice)  # a cached verdict: only the one needed is built

    def _graph_inputs(self) -> list:
        inits = {t.name for t in self._base.graph.initializer}
        return [v for v in self._base.graph.input if v.name not in inits]

    def _digest(self) -> str:
        if getattr(self, "_digest_value", None) is None:
            self._digest_value = precision.model_digest(self._base)
        return self._digest_value

    def session_graph(self, shapes: dict[str, tuple]) -> onnx.ModelProto:
        """The model genrt runs for inputs of these shapes (their class's session): the base model after genrt's
        rewrites; do not modify it."""
        session = self._single or self._for_class(self._class_key(shapes))
        return next(model for key, model in self._graphs.items() if self._sessions[key] is session)

    def _session(self, chosen: tuple, model: onnx.ModelProto | None = None):
        if chosen not in self._sessions:
            model = fuse_norms.apply(model or self._prepared, self._norms)
            model = fuse_resize.apply(fuse_sweeps.apply(model, self._sweeps), self._resizes)
            if self._norms and chosen:  # norms read only by bfloat16 genrt.Conv nodes folded into them, and their
                # statistics summed by the bfloat16 convs that write their inputs
                from genrt import kernels

                model = fuse_norms.fold_into_convs(model, kernels.cpu_isa())
                model = fuse_norms.stats_from_convs(model, kernels.cpu_isa())
            if chosen:  # channel concatenations read only by bfloat16 genrt.Conv nodes: read in place by them
                model = fuse_concat.apply(model)
            native = self._native or bool(chosen) or bool(self._norms) or bool(self._sweeps) or bool(self._resizes)
            device, threads, providers = (self._settings[k] for k in ("device", "threads", "providers"))
            self._sessions[chosen] = new_session(
                model, self._path, device=device, threads=threads, providers=providers, native=native,
                arena=self._arena,
            )  # fmt: skip
            self._graphs[chosen] = model
        return self._sessions[chosen]
