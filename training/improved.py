"""python -m training.dcgan --dataset digits --out runs/fm --feature-matching   (each technique is a dcgan flag)

Improved Techniques for Training GANs (Salimans et al. 2016): the blocks, shared by the papers that use them.

- feature matching (section 3.1): :func:`feature_matching_loss`
- minibatch discrimination (3.2): ``genrt.nn.MinibatchDiscrimination`` (genrt's kernel), wired in by the discriminator
- historical averaging (3.3): :class:`HistoricalAverage`
- one-sided label smoothing (3.4): :func:`real_targets`
- virtual batch normalization (3.5): :class:`VirtualBatchNorm2d`, :func:`with_reference`, :func:`freeze_reference`
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "HistoricalAverage",
    "VirtualBatchNorm2d",
    "feature_matching_loss",
    "freeze_reference",
    "real_targets",
    "with_reference",
]


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """||E f(x) - E f(G(z))||_2^2 over the minibatch: features (N, F) of an intermediate discriminator layer."""
    return (real_features.detach().mean(0) - fake_features.mean(0)).pow(2).sum()


def real_targets(logits: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Targets for real samples: 1 - smoothing (one-sided: fake targets stay 0)."""
    return torch.full_like(logits, 1.0 - smoothing)


class HistoricalAverage(nn.Module):
    """Penalty ||theta - (1/t) sum_{i<t} theta[i]||^2 of one player's parameters (the paper's form, not an EMA).

    Call :meth:`update` after each optimizer step; the running mean and count are buffers, so they are checkpointed.
    """

    def __init__(self, params):
        super().__init__()
        self._params = list(params)
        for i, p in enumerate(self._params):
            self.register_buffer(f"mean_{i}", p.detach().clone())
        self.register_buffer("count", torch.ones((), dtype=torch.float64))  # theta[0] is in the mean

    def penalty(self) -> torch.Tensor:
        total = torch.zeros((), device=self._params[0].device)
        for i, p in enumerate(self._params):
            total = total + (p - getattr(self, f"mean_{i}")).pow(2).sum()
        return total

    @torch.no_grad()
    def update(self) -> None:
        self.count += 1
        for i, p in enumerate(self._params):
            mean = getattr(self, f"mean_{i}")
            mean += (p.detach() - mean) / self.count  # a tensor: no host sync on a GPU


class VirtualBatchNorm2d(nn.Module):
    """Virtual batch normalization: each example is normalised with the statistics of a fixed reference batch
    combined with its own (weight 1 / (R + 1)), so an output does not depend on the rest of its minibatch.

    The input is ``cat([reference (R rows), x])``: the reference rows are normalised with their own statistics
    (as batch norm), every other row i with mean_i = a * mean(x_i) + (1 - a) * mean(ref), a = 1 / (R + 1), and the
    same mix of second moments (the form of the authors' code). After :func:`freeze_reference` the reference
    statistics are stored and the input is x alone, so the exported generator carries no reference batch.
    """

    def __init__(self, channels: int, reference_size: int, eps: float = 1e-5):
        super().__init__()
        self.reference_size = reference_size
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("frozen_mean", torch.zeros(channels))
        self.register_buffer("frozen_meansq", torch.ones(channels))
        self.frozen = False  # a Python flag, so export traces one branch

    def _normalise(self, x, mean, meansq):
        var = (meansq - mean.pow(2)).clamp_min(0.0)
        y = (x - mean) / torch.sqrt(var + self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (R + N, C, H, W), or (N, C, H, W) once frozen
        a = 1.0 / (self.reference_size + 1)
        own_mean = x.mean((2, 3), keepdim=True)  # (., C, 1, 1)
        own_meansq = x.pow(2).mean((2, 3), keepdim=True)
        if self.frozen:
            ref_mean = self.frozen_mean.view(1, -1, 1, 1)
            ref_meansq = self.frozen_meansq.view(1, -1, 1, 1)
            return self._normalise(x, a * own_mean + (1 - a) * ref_mean, a * own_meansq + (1 - a) * ref_meansq)
        R = self.reference_size
        ref = x[:R]
        ref_mean = ref.mean((0, 2, 3), keepdim=True)  # (1, C, 1, 1)
        ref_meansq = ref.pow(2).mean((0, 2, 3), keepdim=True)
        out_ref = self._normalise(ref, ref_mean, ref_meansq)
        mean = a * own_mean[R:] + (1 - a) * ref_mean
        meansq = a * own_meansq[R:] + (1 - a) * ref_meansq
        return torch.cat([out_ref, self._normalise(x[R:], mean, meansq)])


def with_reference(z: torch.Tensor, z_ref: torch.Tensor, vbn_layers) -> tuple[torch.Tensor, int]:
    """The generator input for VBN: ``cat([z_ref, z])`` and the rows to drop from the output (0 once frozen)."""
    if any(m.frozen for m in vbn_layers):
        return z, 0
    return torch.cat([z_ref.to(z.dtype), z]), z_ref.shape[0]


@torch.no_grad()
def freeze_reference(generator: nn.Module, z_ref: torch.Tensor) -> None:
    """Stores each VBN layer's reference statistics (from z_ref), so the generator runs on x alone (for export)."""
    layers = [m for m in generator.modules() if isinstance(m, VirtualBatchNorm2d)]
    stats = []

    def hook(module, inputs, output):
        ref = inputs[0][: module.reference_size]
        stats.append((module, ref.mean((0, 2, 3)), ref.pow(2).mean((0, 2, 3))))

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        generator(z_ref[:1])  # runs cat([z_ref, z]) through every layer
    finally:
        for h in handles:
            h.remove()
    for module, mean, meansq in stats:
        module.frozen_mean.copy_(mean)
        module.frozen_meansq.copy_(meansq)
        module.frozen = True
