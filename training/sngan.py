"""Spectral normalization (Miyato, Kataoka, Koyama and Yoshida 2018, "Spectral Normalization for Generative
Adversarial Networks").

Every weight of the discriminator is divided by its largest singular value (estimated by one power iteration per
step), which bounds each layer's Lipschitz constant by 1 and so D's sensitivity to its input, without the batch
coupling of batch norm: with ``--spectral-norm`` the DCGAN discriminator drops its batch norms, as the paper's
models do. G is unchanged.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def spectrally_normalized(module: nn.Module) -> nn.Module:
    """Applies spectral normalization to every convolution and linear layer of ``module`` (in place)."""
    for m in list(module.modules()):
        if isinstance(m, nn.Conv2d | nn.Linear):
            spectral_norm(m)
    return module
