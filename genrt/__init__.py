"""genrt: train, export and run generative image models fast on CPU and GPU.

``import genrt`` needs only numpy (and, for models, onnx and onnxruntime); torch is imported only by
``genrt.ops`` and ``genrt.nn``, which training and export use.
"""

from genrt import apps, kernels
from genrt.errors import (
    ArgumentError,
    BuildError,
    DTypeError,
    ExportError,
    GenrtError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidModelError,
    InvalidVideoError,
    MemoryLimitError,
    MissingDependencyError,
    ModelKindError,
    ModelNotFoundError,
    RunError,
    ShapeError,
)
from genrt.runtime import list_models, load

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "BuildError",
    "DTypeError",
    "ExportError",
    "GenrtError",
    "ImageTooLargeError",
    "InvalidImageError",
    "InvalidModelError",
    "InvalidVideoError",
    "MemoryLimitError",
    "MissingDependencyError",
    "ModelKindError",
    "ModelNotFoundError",
    "RunError",
    "ShapeError",
    "__version__",
    "apps",
    "export",
    "kernels",
    "list_models",
    "load",
]


def export(*args, **kwargs):
    """Exports a torch module to .onnx / .pt2 / .pt with genrt metadata; see :func:`genrt.exporter.export`.

    Imported lazily: exporting needs torch, loading does not.
    """
    from genrt.exporter import export as _export

    return _export(*args, **kwargs)
