"""GAN objectives on raw discriminator logits.

`minimax` is the article's objective: D maximizes log D(x) + log(1 - D(G(z))) (binary
cross-entropy on logits) and G uses the non-saturating form, maximizing log D(G(z)), as the
Keras tutorial trains it. `hinge` is the SNGAN/BigGAN objective.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[..., torch.Tensor]


def minimax_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def minimax_g(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


LOSSES: dict[str, tuple[LossFn, LossFn]] = {
    "minimax": (minimax_d, minimax_g),
    "hinge": (hinge_d, hinge_g),
}
