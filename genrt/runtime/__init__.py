"""genrt.load(): run an exported model, with no torch on the ONNX path."""

from __future__ import annotations

from genrt.errors import InvalidModelError
from genrt.runtime import files
from genrt.runtime.models import CLASSES, Generator, Model
from genrt.runtime.onnx_session import IOSpec, default_threads, load_onnx, onnx_metadata
from genrt.runtime.ort_runner import OrtRunner

__all__ = ["Generator", "IOSpec", "Model", "list_models", "load"]


def load(path_or_name, *, device: str = "cpu", threads: int | None = None, providers=None) -> Model:
    """Loads an exported model (.onnx, .pt2, .pt) or a bundled one by name.

    Args:
        path_or_name: a file path, or the name of a model in ``genrt.list_models()``.
        device: "cpu" (default) or "cuda[:N]" (needs onnxruntime-gpu for .onnx files).
        threads: intra-op threads; default ``genrt.kernels.get_num_threads()``.
        providers: ONNX Runtime execution providers, overriding ``device``.

    Returns:
        The class for the model's ``genrt.kind`` (:class:`Generator` for generators), else :class:`Model`.

    Raises:
        ModelNotFoundError: no such file or bundled model.
        InvalidModelError: empty, truncated, unsafe (pickle) or unreadable file.

    Example:
        >>> g = genrt.load("dcgan-digits")
        >>> images = g.sample(16, seed=0)          # uint8 (16, 32, 32, 1)
    """
    return _load(path_or_name, device=device, threads=threads, providers=providers)


def _load(path_or_name, *, device="cpu", threads=None, providers=None, conv_transpose: str | None = None) -> Model:
    """load(), plus conv_transpose: "auto" | "genrt" | "ort" overriding GENRT_CONV_TRANSPOSE (the exporter's
    verification uses "ort": it checks the file, and need not time kernels)."""
    path = files.resolve(path_or_name)
    fmt = files.sniff(path)
    threads = default_threads(threads)
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
        runner = OrtRunner(model, path, device=device, threads=threads, providers=providers, how=conv_transpose)
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
