"""The one place genrt imports torch, with an actionable error when the `train` extra is missing."""

from genrt.errors import MissingDependencyError

try:
    import torch
except ImportError as exc:
    raise MissingDependencyError(
        "this part of genrt (genrt.ops, genrt.nn, genrt.export, training) needs torch: "
        "pip install 'genrt[train]'  (or: pip install torch==2.13.0)"
    ) from exc

__all__ = ["torch"]
