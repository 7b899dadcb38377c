"""genrt.export: a torch module -> .onnx / .pt2 / .pt with genrt metadata, checked and verified.

Needs torch (the `train` extra); loading the result does not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import genrt
from genrt import onnx_ops
from genrt._torch import torch
from genrt.errors import ArgumentError, ExportError
from genrt.image import umask_mode, write_atomic
from genrt.runtime import metadata as md
from genrt.runtime.files import FORMATS
from genrt.runtime.torch_backend import METADATA_FILE, sidecar_path

__all__ = ["export"]

_genrt_opset = None


def _opset():
    global _genrt_opset
    if _genrt_opset is None:
        import onnxscript

        onnx_ops.register_schemas()  # so onnxscript knows the genrt ops' outputs, and onnx.checker their types
        _genrt_opset = onnxscript.values.Opset(onnx_ops.DOMAIN, onnx_ops.VERSION)
    return _genrt_opset


# Translations of genrt's torch ops, traced by the torch.onnx (dynamo) exporter.
def _mbd_native(M):
    return _opset().MinibatchDiscrimination(M)


def _conv_transpose2d(input, weight, bias=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), groups=1,
                      dilation=(1, 1)):  # fmt: skip
    # Standard ConvTranspose in both flavours: genrt.load fuses it with its BatchNorm and activation at load time.
    from onnxscript import opset18 as op

    attrs = dict(
        strides=list(stride),
        pads=[padding[0], padding[1], padding[0], padding[1]],
        output_padding=list(output_padding),
        dilations=list(dilation),
        group=groups,
    )
    return (
        op.ConvTranspose(input, weight, bias, **attrs)
        if bias is not None
        else op.ConvTranspose(input, weight, **attrs)
    )


def _translation_table() -> dict:
    import genrt.ops  # noqa: F401  (registers the ops)

    return {
        torch.ops.genrt.minibatch_discrimination.default: _mbd_native,
        torch.ops.genrt.conv_transpose2d.default: _conv_transpose2d,
    }


def _as_tuple(example_inputs) -> tuple:
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ArgumentError("example_inputs: expected a tensor or a tuple of tensors")
    return inputs


def _auto_metadata(kind: str, inputs: tuple, outputs: tuple, portable: bool, suffix: str) -> dict:
    meta: dict = {"kind": kind, "version": genrt.__version__}
    if suffix == ".onnx":
        meta["format"] = "portable" if portable else "native"
    layouts = {2: "NC", 4: "NCHW"}
    meta["input_layout"] = layouts.get(inputs[0].dim(), f"{inputs[0].dim()}-D")
    meta["output_layout"] = layouts.get(outputs[0].dim(), f"{outputs[0].dim()}-D")
    if kind == "generator" and inputs[0].dim() >= 2:
        meta["latent_dim"] = int(np.prod(inputs[0].shape[1:]))
        if inputs[0].dim() > 2:  # e.g. (N, 100, 1, 1), the layout of pytorch/examples' DCGAN
            meta["latent_shape"] = [int(d) for d in inputs[0].shape[1:]]
        meta["latent_prior"] = "normal"
        meta["output_range"] = [-1.0, 1.0]
    return meta


# Kinds whose first input is a latent vector (any layout): only its batch axis is dynamic.
_LATENT_KINDS = ("generator", "infogan", "decoder")


# Kinds that run at one window size (metadata "size"): an inpainter's fully-connected bottleneck fixes it.
_FIXED_SIZE_KINDS = ("inpainter",)


def _is_image(t, index: int, kind: str) -> bool:
    """Whether input `index` is an image, whose height and width may be dynamic; a latent's axes never are."""
    if kind in _FIXED_SIZE_KINDS:
        return False
    return t.dim() == 4 and not (index == 0 and kind in _LATENT_KINDS) and tuple(t.shape[2:]) != (1, 1)


def _dynamic_shapes(inputs: tuple, kind: str):
    # Batch is always dynamic; height and width of images become dynamic where the model allows it (Dim.AUTO).
    shapes = []
    for index, t in enumerate(inputs):
        dims = {0: torch.export.Dim.DYNAMIC}
        if _is_image(t, index, kind):
            dims.update({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO})
        shapes.append(dims)
    return tuple(shapes)


def _io_spec(names, tensors, kind: str | None) -> list[dict]:
    """Shapes for the .pt2/.pt sidecar; `kind` for inputs (image axes named), None for outputs."""
    specs = []
    for index, (name, t) in enumerate(zip(names, tensors, strict=True)):
        shape = ["batch"] + list(t.shape[1:])
        if kind is not None and _is_image(t, index, kind):
            shape[2:] = ["height", "width"]
        specs.append({"name": name, "shape": shape, "dtype": str(t.dtype).replace("torch.", "")})
    return specs


def _strip_node_metadata(graph) -> None:
    """Drops what torch.onnx leaves on every node for debugging: its stack trace (with the exporting machine's
    paths), FX node and scopes, about 700 bytes a node; a graph of many small nodes doubled in size with them."""
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attr in node.attribute:
            if attr.g.node:
                _strip_node_metadata(attr.g)
            for sub in attr.graphs:
                _strip_node_metadata(sub)


@contextlib.contextmanager
def _eval_mode(module):
    # Each submodule's own mode comes back: module.train(was) alone would set every child to the parent's mode (a
    # wrapper made in training mode around a network in eval mode would leave the network training).
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _atomic_target(path: Path):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def export(
    module,
    path,
    example_inputs,
    *,
    kind: str,
    portable: bool = False,
    metadata: dict | None = None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    verify: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    weights: str = "float32",
) -> Path:
    """Exports ``module`` to ``path``; the suffix picks the format.

    - ``.onnx``: torch.onnx.export (dynamo). ``portable=False`` (native) writes genrt-domain nodes for genrt's
      ops (run by genrt's ORT kernels); ``portable=True`` writes standard ONNX ops only, so onnxruntime in any
      language, onnxruntime-web or TensorRT runs the file without genrt.
    - ``.pt2``: torch.export.
    - ``.pt`` / ``.ts``: TorchScript (torch.jit.trace). TorchScript is deprecated in torch 2.13 and may go away;
      prefer .pt2 or .onnx. Offered because many deployments still load it.

    The batch axis is dynamic, and so are height and width of 4-D inputs where the model allows it. The module
    runs in eval mode. Metadata (ONNX metadata_props; for .pt2/.pt inside the archive and in PATH.json beside it):
    ``genrt.kind``, genrt version, layouts, latent size and prior for generators, plus ``metadata``.

    Args:
        module: a torch.nn.Module.
        path: destination; written atomically (a failed export leaves no file).
        example_inputs: a tensor or tuple of tensors (batch first).
        kind: what the model is, one of genrt.runtime.metadata.KINDS ("generator", "discriminator", ...).
        verify: load the file with genrt and compare it to the module on example_inputs (rtol, atol).
        weights: "float32", or "float16" to store the float weights of a .onnx file in half the bytes (a Cast back
            to float32 follows each; genrt.load folds them into float32 constants, any ONNX runtime runs the file
            as it is). Verification then compares against the module with its weights rounded to float16.

    Returns:
        The path written.

    Raises:
        ArgumentError: bad kind, suffix or inputs.
        ExportError: the exporter failed, the ONNX checker rejected the file, or verification mismatched.
    """
    if not isinstance(module, torch.nn.Module):
        raise ArgumentError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if kind not in md.KINDS:
        raise ArgumentError(f"kind: expected one of {', '.join(md.KINDS)}, got {kind!r}")
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ArgumentError(f"path: suffix must be one of {', '.join(FORMATS)}, got {path.name!r}")
    if portable and path.suffix.lower() != ".onnx":
        raise ArgumentError("portable: only applies to .onnx files")
    if weights not in ("float32", "float16"):
        raise ArgumentError(f"weights: expected 'float32' or 'float16', got {weights!r}")
    if weights == "float16" and path.suffix.lower() != ".onnx":
        raise ArgumentError("weights='float16': only applies to .onnx files")
    if not path.parent.is_dir():
        raise ArgumentError(f"path: folder {path.parent} does not exist")
    inputs = _as_tuple(example_inputs)
    # Tracing with batch 1 would specialise the batch axis to 1; trace with 2 rows instead.
    trace_inputs = tuple(t.repeat(2, *[1] * (t.dim() - 1)) if t.shape[0] == 1 else t for t in inputs)

    with _eval_mode(module), torch.no_grad(), _weights_rounded(module, weights == "float16"):
        expected = module(*inputs)
        outputs = expected if isinstance(expected, tuple | list) else (expected,)
        input_names = list(
            input_names or (["z"] if kind == "generator" else [f"input_{i}" for i in range(len(inputs))])
        )
        output_names = list(
            output_names or (["images"] if kind == "generator" else [f"output_{i}" for i in range(len(outputs))])
        )
        if len(input_names) != len(inputs) or len(output_names) != len(outputs):
            raise ArgumentError(
                f"input_names/output_names: expected {len(inputs)} and {len(outputs)} names, "
                f"got {len(input_names)} and {len(output_names)}"
            )
        meta = _auto_metadata(kind, inputs, outputs, portable, path.suffix.lower())
        meta.update(metadata or {})
        md.encode(meta)  # validates keys and values early
        tmp = _atomic_target(path)
        try:
            if path.suffix.lower() == ".onnx":
                _export_onnx(module, trace_inputs, tmp, portable, meta, input_names, output_names, kind, weights)
            else:
                meta["io"] = {
                    "inputs": _io_spec(input_names, inputs, kind),
                    "outputs": _io_spec(output_names, outputs, None),
                }
                _export_torch(module, trace_inputs, tmp, path.suffix.lower(), meta, kind)
            if verify:
                _verify(tmp, inputs, outputs, rtol, atol)
            os.chmod(tmp, umask_mode())
            os.replace(tmp, path)
            if path.suffix.lower() != ".onnx":
                _write_text_atomic(sidecar_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path


def _export_onnx(
    module, inputs, tmp: Path, portable: bool, meta: dict, input_names, output_names, kind, weights="float32"
) -> None:
    _opset()
    quiet = logging.getLogger("torch.onnx")  # its notes on optional torchvision ops are noise here
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                inputs,
                dynamo=True,
                custom_translation_table=_translation_table(),
                dynamic_shapes=_dynamic_shapes(inputs, kind),
                input_names=input_names,
                output_names=output_names,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {str(exc).splitlines()[0]}") from exc
    finally:
        quiet.setLevel(level)
    model = program.model_proto
    if portable:  # the same graph with genrt's ops written as standard ops (genrt.onnx_ops holds each one's form)
        model = onnx_ops.to_standard_ops(model)
    _name_dynamic_axes(model, inputs, kind)
    if weights == "float16":
        store_float16_weights(model)
    _strip_node_metadata(model.graph)
    del model.metadata_props[:]
    for key, value in md.encode(meta).items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = f"genrt {meta['kind']} exported by genrt {genrt.__version__}"
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"the exported ONNX model fails onnx.checker: {exc}") from exc
    onnx.save(model, str(tmp))


@contextlib.contextmanager
def _weights_rounded(module, rounded: bool):
    """With ``rounded``, the module's float32 parameters rounded to float16 precision (restored afterwards)."""
    saved = []
    if rounded:
        for p in module.parameters():
            half = p.detach().half()
            if p.dtype == torch.float32 and p.dim() >= 1 and torch.isfinite(half).all():  # as store_float16_weights
                saved.append((p, p.detach().clone()))
                p.data.copy_(half.float())
    try:
        yield
    finally:
        for p, value in saved:
            p.data.copy_(value)


def store_float16_weights(model: onnx.ModelProto) -> int:
    """Stores each float32 initializer of rank >= 1 as float16, followed by a Cast back to float32, in place.

    The graph computes the same as before with weights rounded to float16; the file holds half the bytes.
    Returns how many initializers were converted.
    """
    graph = model.graph
    inputs = {v.name for v in graph.input}
    cast_nodes, count = [], 0
    for tensor in graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT or not tensor.dims or tensor.name in inputs:
            continue
        value = numpy_helper.to_array(tensor)
        with np.errstate(over="ignore"):
            half = value.astype(np.float16)
        if not np.isfinite(half).all():
            continue  # out of float16's range (or not finite): kept as it is
        name = tensor.name
        stored = f"{name}__float16"
        tensor.CopyFrom(numpy_helper.from_array(half, stored))
        cast_nodes.append(onnx.helper.make_node("Cast", [stored], [name], to=onnx.TensorProto.FLOAT))
        count += 1
    nodes = cast_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def _name_dynamic_axes(model: onnx.ModelProto, inputs: tuple, kind: str) -> None:
    """Renames the exporter's symbols (s77, ...) for the batch, height and width axes to those words."""
    names = {}
    for index, (value, t) in enumerate(zip(model.graph.input, inputs, strict=False)):
        dims = value.type.tensor_type.shape.dim
        axes = {0: "batch", 2: "height", 3: "width"} if _is_image(t, index, kind) else {0: "batch"}
        for axis, word in axes.items():
            if axis < len(dims) and dims[axis].dim_param:
                names.setdefault(dims[axis].dim_param, word)
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def _export_torch(module, inputs, tmp: Path, suffix: str, meta: dict, kind: str) -> None:
    extra = {METADATA_FILE: json.dumps(meta, sort_keys=True)}
    try:
        if suffix == ".pt2":
            program = torch.export.export(module, inputs, dynamic_shapes=_dynamic_shapes(inputs, kind))
            torch.export.save(program, str(tmp), extra_files=extra)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(module, inputs, check_trace=False)
                torch.jit.save(traced, str(tmp), _extra_files=extra)
    except Exception as exc:
        raise ExportError(f"{suffix} export failed: {str(exc).splitlines()[0]}") from exc


def _verify(tmp: Path, inputs: tuple, expected: tuple, rtol: float, atol: float) -> None:
    from genrt.runtime import _load

    loaded = _load(tmp, threads=1, conv_transpose="ort")  # checks the file; no kernel timing at export
    got = loaded(*[t.detach().cpu().numpy() for t in inputs])
    got = got if isinstance(got, tuple) else (got,)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        e = e.detach().cpu().numpy()
        if g.shape != e.shape or not np.allclose(g, e, rtol=rtol, atol=atol):
            err = np.abs(g - e).max() if g.shape == e.shape else f"shape {g.shape} vs {e.shape}"
            raise ExportError(f"verification failed: output {i} of the exported model differs from the module ({err})")


def _write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, text.encode())
