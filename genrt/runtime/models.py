"""What genrt.load returns: a Model, or the subclass for the model's ``genrt.kind``.

Models hold no per-call state, so many threads may call one model at once (ONNX Runtime sessions are
thread-safe for Run).
"""

from __future__ import annotations

import functools
import inspect
import os

import numpy as np
import onnx

from genrt.errors import ArgumentError, DTypeError, MemoryLimitError, ModelKindError, ShapeError
from genrt.image import to_uint8_images
from genrt.latent import arithmetic_latents, check_count, interpolate_latents, walk_latents
from genrt.runtime import metadata as md
from genrt.runtime.onnx_session import IOSpec

MEMORY_FRACTION = 0.75  # default GENRT_MAX_MEMORY: this share of the machine's (or the container's) memory
_MAX_ESTIMATES = 64  # input shapes whose estimate a model keeps
_MAX_DIM = 1 << 40  # no axis is longer (an ONNX dim is int64; numpy's arrays are far smaller)
_SMALL_TENSOR = 4096  # bytes: initializers kept whole in the shape-inference skeleton (shapes, axes, pads)


class Model:
    """A loaded model: ``model(inputs)`` runs the raw graph, numpy in, numpy out.

    Attributes:
        path: the file it came from.
        kind: ``metadata["kind"]``, or None for a file without genrt metadata.
        metadata: genrt metadata (dict), readable without running the model.
        inputs, outputs: lists of :class:`IOSpec` (name, shape, dtype).
        kernels: genrt ops the model uses and how they run, e.g. {"MinibatchDiscrimination": "genrt kernel"}.
    """

    def __init__(self, runner, *, path, metadata: dict, fmt: str):
        self._runner = runner
        self.path = path
        self.metadata = dict(metadata)
        self.kind = metadata.get("kind")
        self.format = fmt
        self.inputs: list[IOSpec] = runner.inputs
        self.outputs: list[IOSpec] = runner.outputs

    def __repr__(self) -> str:
        ins = ", ".join(str(i) for i in self.inputs)
        outs = ", ".join(str(o) for o in self.outputs)
        return f"<genrt {type(self).__name__} kind={self.kind!r} {self.path} ({ins}) -> ({outs})>"

    def __call__(self, *args, **kwargs):
        """Runs the graph. Inputs positionally or by name; returns one array, or a tuple for several outputs."""
        if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
            kwargs, args = dict(args[0]), ()
        if len(args) > len(self.inputs):
            raise ArgumentError(f"expected at most {len(self.inputs)} inputs, got {len(args)}")
        feeds = {spec.name: value for spec, value in zip(self.inputs, args, strict=False)}
        for name, value in kwargs.items():
            if name not in {s.name for s in self.inputs}:
                raise ArgumentError(
                    f"{name}: not an input of this model (inputs: {', '.join(s.name for s in self.inputs)})"
                )
            if name in feeds:
                raise ArgumentError(f"{name}: given twice")
            feeds[name] = value
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise ArgumentError(f"missing inputs: {', '.join(missing)}")
        checked = {spec.name: _check_input(spec, feeds[spec.name]) for spec in self.inputs}
        self._check_memory({name: array.shape for name, array in checked.items()})
        outs = self._runner.run(checked)
        return outs[0] if len(outs) == 1 else tuple(outs)

    @property
    def kernels(self) -> dict[str, str]:
        """genrt ops the model uses and how they run; ConvTranspose lists genrt's layers per shape class so far."""
        return dict(getattr(self._runner, "kernels", {}))

    def prepare(self, *shapes) -> Model:
        """Chooses genrt's kernels for inputs of these shapes (one tuple per input) ahead of the first call.

        Models with dynamic height and width otherwise choose on the first call of each size class; a server
        can call this at start-up so that no request pays for it. Returns the model.
        """
        if len(shapes) != len(self.inputs) or not all(isinstance(s, tuple | list) for s in shapes):
            raise ArgumentError(f"shapes: expected {len(self.inputs)} shape tuple(s), one per input, got {shapes!r}")
        for spec, shape in zip(self.inputs, shapes, strict=True):
            _check_shape(spec, tuple(shape))
            if not all(isinstance(d, int | np.integer) and 0 <= d <= _MAX_DIM for d in shape):
                raise ShapeError(f"{spec.name}: expected sizes from 0 to {_MAX_DIM}, got {tuple(shape)}")
        self._check_memory({spec.name: tuple(shape) for spec, shape in zip(self.inputs, shapes, strict=True)})
        if hasattr(self._runner, "prepare"):
            self._runner.prepare({spec.name: tuple(shape) for spec, shape in zip(self.inputs, shapes, strict=True)})
        return self

    def memory_estimate(self, *shapes) -> int | None:
        """A lower bound of the bytes a call with inputs of these shapes (one tuple per input) needs: the inputs and
        the graph's two largest intermediate tensors, from ONNX shape inference. None where the shapes do not infer
        (or the model is not an ONNX graph). Cached per shape."""
        if len(shapes) != len(self.inputs) or not all(isinstance(s, tuple | list) for s in shapes):
            raise ArgumentError(f"shapes: expected {len(self.inputs)} shape tuple(s), one per input, got {shapes!r}")
        return self._estimate({spec.name: tuple(shape) for spec, shape in zip(self.inputs, shapes, strict=True)})

    def _estimate(self, shapes: dict[str, tuple]) -> int | None:
        key = tuple((name, tuple(int(d) for d in shape)) for name, shape in shapes.items())
        cache = self.__dict__.setdefault("_estimates", {})  # threads may race here: at worst, one estimate twice
        try:
            return cache[key]
        except KeyError:
            pass
        graph = getattr(self._runner, "graph", None)
        if not isinstance(graph, onnx.ModelProto):
            return None
        skeleton = self.__dict__.get("_skeleton")
        if skeleton is None:
            skeleton = self.__dict__["_skeleton"] = _shape_skeleton(graph)
        estimate = estimate_bytes(skeleton, dict(key), {spec.name: spec.dtype for spec in self.inputs})
        if len(cache) >= _MAX_ESTIMATES:
            cache.clear()
        cache[key] = estimate
        return estimate

    def _check_memory(self, shapes: dict[str, tuple]) -> None:
        """MemoryLimitError where the estimate for inputs of these shapes is over the limit (GENRT_MAX_MEMORY)."""
        estimate = self._estimate(shapes)
        if estimate is None:
            return
        limit = memory_limit()
        if estimate > limit:
            what = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
            raise MemoryLimitError(
                f"{self.path}: inputs {what} need at least {_gib(estimate)} of memory (the inputs and the model's two "
                f"largest intermediate tensors), over the limit of {_gib(limit)}; use smaller inputs (or tiles), or "
                "raise the limit with GENRT_MAX_MEMORY (e.g. GENRT_MAX_MEMORY=64G)"
            )

    def __getattr__(self, name: str):
        # Reached for attributes the class lacks (say which kind of model has them), and when a property raised an
        # AttributeError such as ModelKindError: raise that again rather than a bare "no attribute".
        found = inspect.getattr_static(type(self), name, None)
        if isinstance(found, property) and found.fget is not None:
            return found.fget(self)
        if isinstance(found, functools.cached_property):
            return found.func(self)
        kind = METHOD_KINDS.get(name)
        if kind is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self._require(kind, name)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) the model's images have, from ``metadata["image_size"]``."""
        from genrt.runtime import _images

        return tuple(int(s) for s in _images.required(self, "image_size"))

    @property
    def channels(self) -> int:
        """Channels of the model's images (``metadata["channels"]``, default 1)."""
        return int(self.metadata.get("channels", 1))

    def _require(self, kind: str, method: str) -> None:
        if self.kind != kind:
            what = f"kind {self.kind!r}" if self.kind else "no genrt metadata"
            raise ModelKindError(f"{method}() needs a {kind} model; {self.path} has {what}. Call the model directly.")


def _check_input(spec: IOSpec, value) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise DTypeError(f"{spec.name}: expected an array, got {type(value).__name__} ({exc})") from None
    want = np.dtype(spec.dtype)
    if array.dtype != want:
        if want.kind == "f" and array.dtype.kind in "fiu" and array.dtype != np.bool_:
            array = array.astype(want)
        else:
            raise DTypeError(f"{spec.name}: expected {want.name}, got {array.dtype.name}")
    _check_shape(spec, array.shape)
    return np.ascontiguousarray(array)


def _check_shape(spec: IOSpec, shape: tuple) -> None:
    if len(shape) != len(spec.shape):
        raise ShapeError(
            f"{spec.name}: expected {len(spec.shape)}-D input of shape {_shape_str(spec.shape)}, "
            f"got {len(shape)}-D with shape {shape}"
        )
    for axis, (want_dim, got) in enumerate(zip(spec.shape, shape, strict=True)):
        if isinstance(want_dim, int) and want_dim >= 0 and want_dim != got:
            raise ShapeError(
                f"{spec.name}: expected shape {_shape_str(spec.shape)}, got {shape} (axis {axis} must be {want_dim})"
            )


def _gib(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1024:.1f} KiB"


@functools.cache
def _default_memory_limit() -> int:
    total = 0
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    try:  # a container's cgroup (v2) limit, where it is lower than the machine's memory
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text.isdigit() and (not total or int(text) < total):
            total = int(text)
    except OSError:
        pass
    return int((total or 16 << 30) * MEMORY_FRACTION)


def memory_limit() -> int:
    """Bytes a model call may need by genrt's estimate: GENRT_MAX_MEMORY (e.g. 8G), else MEMORY_FRACTION of the
    machine's (or container's) memory."""
    return md.env_bytes("GENRT_MAX_MEMORY", _default_memory_limit())


def _shape_skeleton(graph: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the graph for shape inference: large initializers keep their type and dims but drop their values
    (inference reads only small ones, such as a Reshape's shape), so each estimate copies kilobytes, not weights."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(graph)
    for tensor in skeleton.graph.initializer:
        if tensor.ByteSize() > _SMALL_TENSOR:
            for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                tensor.ClearField(field)
            tensor.ClearField("external_data")
            tensor.data_location = onnx.TensorProto.DEFAULT
    return skeleton


def estimate_bytes(model: onnx.ModelProto, shapes: dict[str, tuple], dtypes: dict[str, type]) -> int | None:
    """Inputs of `shapes` ({name: dims}) plus the two largest intermediate (or output) tensors ONNX shape inference
    finds for them: a lower bound of the peak memory of a run, as ONNX Runtime frees each tensor after its last
    reader (genrt.tiles.activation_bytes reasons the same way). None where no tensor's shape infers."""
    from onnx import helper, shape_inference

    from genrt.runtime.fuse import with_input_shapes

    inputs = sum(int(np.prod(shape, dtype=object)) * np.dtype(dtypes[name]).itemsize for name, shape in shapes.items())
    try:
        inferred = shape_inference.infer_shapes(with_input_shapes(model, shapes), strict_mode=False, data_prop=True)
    except Exception:  # an op shape inference does not know, a graph it rejects: no estimate, no refusal
        return None
    graph_inputs = {v.name for v in inferred.graph.input}
    sizes = []
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = value.type.tensor_type
        if value.name in graph_inputs or not t.shape.dim or not all(d.HasField("dim_value") for d in t.shape.dim):
            continue
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
        except Exception:  # an element type numpy lacks (e.g. float8): count it as float32
            itemsize = 4
        sizes.append(int(np.prod([d.dim_value for d in t.shape.dim], dtype=object)) * itemsize)
    if not sizes:
        return None
    return inputs + sum(sorted(sizes)[-2:])


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


class Generator(Model):
    """A generator: latents (N, latent_dim) -> images (N, C, H, W) in ``metadata["output_range"]``.

    The graph's latent input may have any layout, e.g. (N, 100, 1, 1) as in pytorch/examples' DCGAN
    (``metadata["latent_shape"]``, or the input's declared shape): methods take and return latents as
    (n, latent_dim) vectors and reshape them to the input's layout.
    """

    _MAX_BATCH = 256  # sample() runs larger requests in pieces

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The latent input's shape without the batch axis: (latent_dim,) or e.g. (100, 1, 1)."""
        self._require("generator", "latent_shape")
        if "latent_shape" in self.metadata:
            return tuple(int(d) for d in self.metadata["latent_shape"])
        dims = self.inputs[0].shape[1:]
        if dims and isinstance(dims[0], int):
            # Trailing dynamic axes of a 4-D latent (older exports named them height and width) are 1x1.
            return (dims[0],) + tuple(d if isinstance(d, int) else 1 for d in dims[1:])
        if "latent_dim" in self.metadata and len(dims) <= 1:
            return (int(self.metadata["latent_dim"]),)
        raise ModelKindError(f"{self.path}: latent size unknown (no genrt.latent_dim and a dynamic input)")

    @property
    def latent_dim(self) -> int:
        self._require("generator", "latent_dim")
        if "latent_dim" in self.metadata:
            return int(self.metadata["latent_dim"])
        return int(np.prod(self.latent_shape))

    @property
    def latent_prior(self) -> str:
        return self.metadata.get("latent_prior", "normal")

    def latents(self, n: int, *, seed=None) -> np.ndarray:
        """n latent vectors drawn from the model's prior: float32 (n, latent_dim)."""
        check_count(n, "n")
        rng = np.random.default_rng(seed)
        if self.latent_prior == "uniform":
            return rng.uniform(-1.0, 1.0, (n, self.latent_dim)).astype(np.float32)
        return rng.standard_normal((n, self.latent_dim), dtype=np.float32)

    def generate(self, z) -> np.ndarray:
        """Images for latents z, (n, latent_dim) or (n, *latent_shape): uint8 (n, H, W, C)."""
        self._require("generator", "generate")
        z = np.asarray(z, dtype=np.float32)
        shape = self.latent_shape
        if z.ndim == 2 and z.shape[1] == self.latent_dim and int(np.prod(shape)) == self.latent_dim:
            z = z.reshape((len(z),) + shape)
        elif z.shape[1:] != shape:
            want = f"(n, {self.latent_dim})" + (f" or (n, {', '.join(map(str, shape))})" if len(shape) > 1 else "")
            raise ShapeError(f"z: expected shape {want}, got {z.shape}")
        pieces = [self(z[i : i + self._MAX_BATCH]) for i in range(0, len(z), self._MAX_BATCH)] or [
            np.zeros((0,) + tuple(self.outputs[0].shape[1:]), np.float32)
        ]
        return to_uint8_images(np.concatenate(pieces), self.metadata.get("output_range", (-1.0, 1.0)))

    def sample(self, n: int, *, seed=None) -> np.ndarray:
        """n random images: uint8 (n, H, W, C). The same seed gives the same images."""
        self._require("generator", "sample")
        return self.generate(self.latents(n, seed=seed))

    def interpolate(self, z0, z1, steps: int, *, method: str = "slerp") -> np.ndarray:
        """Images along the path from z0 to z1 (both (latent_dim,)): uint8 (steps, H, W, C).

        ``slerp`` follows the great circle (White 2016), which keeps Gaussian latents at a typical norm;
        ``linear`` is the straight line of the DCGAN paper.
        """
        self._require("generator", "interpolate")
        return self.generate(interpolate_latents(z0, z1, steps, method=method, dim=self.latent_dim))

    def walk(self, points, steps: int = 8, *, method: str = "slerp", closed: bool = False) -> np.ndarray:
        """Images along a walk through latents `points` (k, latent_dim): uint8 (frames, H, W, C).

        Smooth transitions along the walk are the DCGAN paper's evidence that the model did not memorise
        (section 6.1).
        """
        self._require("generator", "walk")
        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != self.latent_dim:
            raise ShapeError(f"points: expected shape (k, {self.latent_dim}), got {points.shape}")
        return self.generate(walk_latents(points, steps, method=method, closed=closed))

    def arithmetic(self, a, b, c, *, variants: int = 8, noise: float = 0.25, seed=None) -> np.ndarray:
        """Images for mean(a) - mean(b) + mean(c) over latents a, b, c (each (k, latent_dim)).

        Returns uint8 (1 + variants, H, W, C): the result, then noisy variants of it (DCGAN paper, figure 7).
        """
        self._require("generator", "arithmetic")
        for name, z in (("a", a), ("b", b), ("c", c)):
            z = np.asarray(z)
            if z.ndim != 2 or z.shape[1] != self.latent_dim:
                raise ShapeError(f"{name}: expected shape (k, {self.latent_dim}), got {z.shape}")
        return self.generate(arithmetic_latents(a, b, c, variants=variants, noise=noise, seed=seed))


# Kind-specific methods, for the error a model of another kind gives.
METHOD_KINDS = {
    name: "generator"
    for name in ("sample", "generate", "interpolate", "walk", "arithmetic", "latents", "latent_dim", "latent_shape")
}
METHOD_KINDS.update({name: "vae" for name in ("encode", "decode", "reconstruct", "manifold")})
METHOD_KINDS.update({name: "rbm" for name in ("features", "filters")})
METHOD_KINDS.update({name: "classifier" for name in ("predict", "predict_proba")})
METHOD_KINDS.update({name: "infogan" for name in ("traverse",)})
METHOD_KINDS.update({name: "stylizer" for name in ("stylize", "stylize_picture", "styles")})
METHOD_KINDS.update({name: "upscaler" for name in ("upscale", "upscale_picture", "scale", "receptive_field")})

# Classes by genrt.kind; kinds not listed load as plain Model.
CLASSES: dict[str, type[Model]] = {"generator": Generator}


def register_kind(kind: str, cls: type[Model]) -> None:
    """Makes genrt.load return `cls` for models of `kind` (the applications in genrt/apps register theirs)."""
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise TypeError(f"register_kind: {cls!r} is not a Model subclass")
    CLASSES[kind] = cls


def _register_kinds() -> None:
    # One module per kind (genrt/runtime/KIND.py), each subclassing Model; imported here, after Model exists.
    from genrt.runtime.classifier import Classifier
    from genrt.runtime.infogan import InfoGAN
    from genrt.runtime.rbm import RBM
    from genrt.runtime.vae import VAE

    CLASSES.update({"vae": VAE, "rbm": RBM, "classifier": Classifier, "infogan": InfoGAN})


_register_kinds()
