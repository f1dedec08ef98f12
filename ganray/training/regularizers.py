"""Low-data regularizers of the discriminator: LeCam and adaptive augmentation strength.

Both keep their running state as tensors on the training device, so no step waits on the host,
and both are averaged across ranks, so every rank holds the same state and a resumed run
continues exactly. Their state is part of every checkpoint (`state_dict`).

- LeCam (Tseng et al., CVPR 2021): penalize D's real logits for rising above the running mean
  of its fake logits, and its fake logits for falling below the running mean of its real ones.
  This keeps D's predictions from drifting apart as it memorizes a small training set.
- Adaptive augmentation (Karras et al., ADA, 2020): the probability p with which each image's
  DiffAugment is applied moves toward the level at which r_t = E[sign(D(real))] equals a target
  (0.6 in ADA). A D that is sure about every real image (r_t near 1) is overfitting: p rises.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def lecam_penalty(real: torch.Tensor, fake: torch.Tensor, anchor_real: torch.Tensor, anchor_fake: torch.Tensor) -> torch.Tensor:
    """The LeCam regularizer on raw logits, given the running means of D's real and fake logits."""
    return F.relu(real - anchor_fake).pow(2).mean() + F.relu(anchor_real - fake).pow(2).mean()


def _global_mean(values: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1 and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
        values /= world
    return values


class LowDataRegularizer:
    """LeCam anchors and the adaptive augmentation probability, updated once per D step."""

    def __init__(
        self, device: torch.device, lecam: float = 0.0, ada_target: float = 0.0, ada_interval: int = 4,
        ada_kimg: float = 100.0, batch_size: int = 64, ema: float = 0.99, world: int = 1,
    ) -> None:
        self.lecam, self.ada_target, self.ada_interval, self.ema, self.world = lecam, ada_target, ada_interval, ema, world
        # p moves by at most (images per adjustment) / (ada_kimg * 1000) per adjustment, as in ADA.
        self.ada_step = batch_size * ada_interval / (ada_kimg * 1000.0)
        self.anchors = torch.zeros(2, device=device)  # running means of D(real), D(fake)
        self.p = torch.zeros((), device=device) if ada_target > 0 else torch.ones((), device=device)
        self._signs = torch.zeros((), device=device)
        self._count = 0
        self._started = torch.zeros((), device=device)  # 0 until the anchors hold a first value

    @property
    def adaptive(self) -> bool:
        return self.ada_target > 0

    def penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """λ · LeCam for this step's logits (0 when off), against the anchors before this step."""
        if self.lecam <= 0:
            return real.new_zeros(())
        return self.lecam * lecam_penalty(real, fake, self.anchors[0], self.anchors[1])

    @torch.no_grad()
    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Fold this step's (globally averaged) logits into the anchors and the ADA heuristic."""
        stats = _global_mean(torch.stack([real.float().mean(), fake.float().mean(), real.float().sign().mean()]), self.world)
        decay = self.ema * self._started  # the first update copies, later ones average
        self.anchors.mul_(decay).add_((1 - decay) * stats[:2])
        self._started.fill_(1.0)
        if not self.adaptive:
            return
        self._signs += stats[2]
        self._count += 1
        if self._count == self.ada_interval:
            r_t = self._signs / self._count
            self.p.add_(torch.sign(r_t - self.ada_target) * self.ada_step).clamp_(0.0, 1.0)
            self._signs.zero_()
            self._count = 0

    def state_dict(self) -> dict:
        return {"anchors": self.anchors.cpu(), "p": self.p.cpu(), "signs": self._signs.cpu(), "count": self._count,
                "started": self._started.cpu()}

    def load_state_dict(self, sd: dict) -> None:
        device = self.anchors.device
        self.anchors = sd["anchors"].to(device)
        self.p = sd["p"].to(device)
        self._signs = sd["signs"].to(device)
        self._count = int(sd["count"])
        self._started = sd["started"].to(device)
