"""genrt: train, export and run generative image models fast on CPU and GPU.

``import genrt`` needs only numpy (and, for models, onnx and onnxruntime); torch is imported only by
``genrt.ops`` and ``genrt.nn``, which training and export use.
"""

from genrt import kernels
from genrt.errors import (
    ArgumentError,
    BuildError,
    DTypeError,
    GenrtError,
    MissingDependencyError,
    ShapeError,
)

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "BuildError",
    "DTypeError",
    "GenrtError",
    "MissingDependencyError",
    "ShapeError",
    "__version__",
    "kernels",
]
