"""R1 gradient penalty (Mescheder, Geiger and Nowozin 2018, "Which Training Methods for GANs do actually
Converge?").

The discriminator pays gamma/2 E||grad_x D(x)||^2 on real images: it may not vary steeply around the data, which
damps the oscillation of simultaneous gradient descent near equilibrium (the paper proves local convergence with
it, where the unregularised GAN and WGAN can circle). With DiffAugment the penalty is on the augmented real
images, the ones D actually sees (as in Karras et al. 2020). ``--r1 GAMMA`` on training.dcgan.
"""

from __future__ import annotations

import torch


def r1_penalty(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Mean over samples of ||d sum(logits) / d inputs_i||^2; ``inputs`` (N, ...) must require grad.

    Built with ``create_graph`` so that the discriminator's step differentiates through it.
    """
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
