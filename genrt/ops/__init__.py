"""genrt's kernels as torch custom ops (``torch.ops.genrt.*``) with fake and autograd registrations.

Importing this package imports torch; ``import genrt`` alone does not.
"""

from genrt._torch import torch  # noqa: F401  (raises MissingDependencyError without torch)
from genrt.ops.conv_transpose2d import conv_transpose2d
from genrt.ops.minibatch_discrimination import minibatch_discrimination, minibatch_discrimination_backward

__all__ = ["conv_transpose2d", "minibatch_discrimination", "minibatch_discrimination_backward"]
