"""genrt.load(): run an exported model, with no torch on the ONNX path."""

from __future__ import annotations

from genrt.errors import ArgumentError, InvalidModelError
from genrt.runtime import files
from genrt.runtime.models import CLASSES, Generator, Model
from genrt.runtime.onnx_session import IOSpec, default_threads, load_onnx, onnx_metadata
from genrt.runtime.ort_runner import OrtRunner
from genrt.runtime.precision import check as check_precision

__all__ = ["Generator", "IOSpec", "Model", "list_models", "load"]


def load(
    path_or_name,
    *,
    device: str = "cpu",
    threads: int | None = None,
    providers=None,
    kind: str | None = None,
    input_range=None,
    output_range=None,
    channel_order: str | None = None,
    style_input: str | None = None,
    styles=None,
    scale: int | None = None,
    precision: str = "f32",
) -> Model:
    """Loads an exported model (.onnx, .pt2, .pt) or a bundled one by name.

    Args:
        path_or_name: a file path, or the name of a model in ``genrt.list_models()``.
        device: "cpu" (default) or "cuda[:N]" (needs onnxruntime-gpu for .onnx files).
        threads: intra-op threads; default ``genrt.kernels.get_num_threads()``.
        providers: ONNX Runtime execution providers, overriding ``device``.
        kind, input_range, output_range, channel_order, style_input, styles, scale: what an ONNX model that
            genrt did not export cannot say for itself, to run it in genrt's applications (kind "stylizer",
            "upscaler" or "inpainter"; ranges "0-1", "0-255", "-1-1" or [lo, hi]; "RGB" or "BGR"; the input
            holding a multi-style model's weights and the styles' names; an upscaler's scale, which is read off
            the graph anyway and checked). Given values override the file's; one probe run checks them
            (genrt.runtime.adopt). `genrt adopt` writes them into a copy of the file instead.
        precision: "f32" (default: exact float32), "bf16" (genrt's convolutions on bfloat16 operands with float32
            sums, per layer where faster) or "auto" (bf16 where the CPU has bfloat16 instructions and the model's
            output on a natural photo stays >= 45 dB PSNR from float32, else f32; the applications' default).
            ``model.kernels["precision"]`` says what was chosen and why (genrt.runtime.precision). CPU, ONNX only.

    Returns:
        The class for the model's ``genrt.kind`` (:class:`Generator` for generators), else :class:`Model`.

    Raises:
        ModelNotFoundError: no such file or bundled model.
        InvalidModelError: empty, truncated, unsafe (pickle) or unreadable file.

    Example:
        >>> g = genrt.load("dcgan-digits")
        >>> images = g.sample(16, seed=0)          # uint8 (16, 32, 32, 1)
    """
    given = dict(
        kind=kind, input_range=input_range, output_range=output_range, channel_order=channel_order,
        style_input=style_input, styles=styles, scale=scale,
    )  # fmt: skip
    return _load(path_or_name, device=device, threads=threads, providers=providers, adopt=given, precision=precision)


def _load(
    path_or_name,
    *,
    device="cpu",
    threads=None,
    providers=None,
    conv_transpose: str | None = None,
    adopt=None,
    default_kind: str | None = None,
    precision: str = "f32",
) -> Model:
    """load(), plus conv_transpose: "auto" | "genrt" | "ort" overriding GENRT_CONV_TRANSPOSE (the exporter's
    verification uses "ort": it checks the file, and need not time kernels), and default_kind: the kind an ONNX
    file without one is described as (an application command's own: `genrt upscale` takes any ONNX upscaler)."""
    check_precision(precision)
    path = files.resolve(path_or_name)
    fmt = files.sniff(path)
    if precision == "bf16" and device != "cpu":
        raise ArgumentError(f"precision: bf16 is genrt's CPU kernels' option; device {device!r} runs float32")
    if precision == "bf16" and fmt != "onnx":
        raise ArgumentError(f"precision: bf16 runs ONNX models through genrt's kernels; {path} is a {fmt} file")
    threads = default_threads(threads)
    adopt = {k: v for k, v in (adopt or {}).items() if v is not None}
    if adopt and fmt != "onnx":
        raise ArgumentError(f"{', '.join(adopt)}: given for {path}, but only ONNX models are described this way")
    if fmt == "bundle":
        from genrt.runtime.bundle import read_bundle

        manifest, graphs = read_bundle(path)
        cls = CLASSES.get(manifest["kind"])
        if cls is None or not hasattr(cls, "from_bundle"):
            raise InvalidModelError(f"{path}: a bundle of kind {manifest['kind']!r}, which this genrt cannot load")
        return cls.from_bundle(path, manifest, graphs, device=device, threads=threads, providers=providers)
    if fmt == "onnx":
        model = load_onnx(path)
        metadata = onnx_metadata(model, path)  # validated: a Model reads only what its kind expects
        if default_kind and "kind" not in adopt and not metadata.get("kind"):
            adopt["kind"] = default_kind
        if adopt:
            from genrt.runtime.adopt import describe

            metadata = describe(model, path, **adopt)
        runner = OrtRunner(
            model, path, device=device, threads=threads, providers=providers, how=conv_transpose, precision=precision,
            probe_range=metadata.get("input_range"),
        )  # fmt: skip
    else:
        from genrt.runtime.torch_backend import TorchRunner

        runner = TorchRunner(path, fmt, device=device, threads=threads)
        metadata = {k: v for k, v in runner.metadata.items() if k != "io"}  # validated by TorchRunner
    cls = CLASSES.get(metadata.get("kind"), Model)
    return cls(runner, path=path, metadata=metadata, fmt=fmt)


def list_models() -> list[dict]:
    """The bundled models: [{"name", "kind", "path", "description"}], read without running them."""
    out = []
    for name, path in files.bundled_models().items():
        if path.suffix == ".genrt":
            from genrt.runtime.bundle import read_manifest

            meta = read_manifest(path)
        else:
            meta = onnx_metadata(load_onnx(path), path)
        out.append(
            {"name": name, "kind": meta.get("kind"), "path": str(path), "description": meta.get("description", "")}
        )
    return out
