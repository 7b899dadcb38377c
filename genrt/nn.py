"""torch modules built on genrt's ops. Importing this module imports torch."""

from __future__ import annotations

from genrt._torch import torch
from genrt.errors import ArgumentError, ShapeError
from genrt.ops import conv_transpose2d, minibatch_discrimination

__all__ = ["ConvTranspose2d", "MinibatchDiscrimination"]


class ConvTranspose2d(torch.nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` running genrt's transposed-convolution kernel on CPU.

    Same constructor, parameters, state dict and output as the torch module (it is a subclass), so it can
    replace it in a trained model. Only ``padding_mode="zeros"`` exists for transposed convolutions in torch too.
    """

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if input.dim() != 4:
            raise ShapeError(f"input: expected a 4-D tensor (N, C, H, W), got shape {tuple(input.shape)}")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        return conv_transpose2d(
            input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )


class MinibatchDiscrimination(torch.nn.Module):
    """Minibatch discrimination layer (Salimans et al. 2016, section 3.2).

    Projects each sample's features x_i (in_features) with a learned tensor T to M_i (num_kernels, kernel_dim),
    computes ``o[i, b] = sum_{j != i} exp(-||M[i, b] - M[j, b]||_1)`` with genrt's kernel, and returns
    ``concat([x, o], dim=1)``. The discriminator thereby sees how close each sample is to the rest of its
    minibatch, which lets it penalise a collapsed generator.

    Init: T ~ N(0, 0.05^2), the scale of the authors' released code (their ``MinibatchLayer``). For inputs of
    unit scale the L1 distances between two samples then start around 0.056 * sqrt(in_features) * kernel_dim:
    about 2.8 for 100 features and kernel_dim 5, where exp(-d) is small but alive; with thousands of input
    features the features vanish at first, so feed the layer a compact representation (training/dcgan.py pools
    the discriminator's feature maps first). Unlike the released code, no learned bias is added to o.

    Shapes: input ``(N, in_features)`` -> output ``(N, in_features + num_kernels)``.
    """

    def __init__(self, in_features: int, num_kernels: int = 100, kernel_dim: int = 5, *, device=None, dtype=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("num_kernels", num_kernels), ("kernel_dim", kernel_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"{name}: expected a positive integer, got {value!r}")
        self.in_features = in_features
        self.num_kernels = num_kernels
        self.kernel_dim = kernel_dim
        self.T = torch.nn.Parameter(torch.empty(in_features, num_kernels * kernel_dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.T, mean=0.0, std=0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ShapeError(
                f"x: expected shape (N, {self.in_features}), got {tuple(x.shape)}; flatten feature maps first"
            )
        M = (x @ self.T).view(x.shape[0], self.num_kernels, self.kernel_dim)  # (N, B, C)
        return torch.cat([x, minibatch_discrimination(M)], dim=1)  # (N, in_features + B)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_kernels={self.num_kernels}, kernel_dim={self.kernel_dim}"
