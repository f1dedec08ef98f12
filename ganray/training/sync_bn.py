"""BatchNorm whose batch statistics span every DDP worker, on any backend (gloo included).

Without it, each of N workers normalizes G's activations over its own batch/N images, so the
same config trains a different (noisier) generator at 2 workers than at 1. torch's
`nn.SyncBatchNorm` refuses CPU tensors; this one all-reduces per-channel sums with the
differentiable `torch.distributed.nn.all_reduce`, which gloo and NCCL both run.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn as nn


class CrossReplicaBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` with global batch statistics in training; same parameters and buffers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return super().forward(x)
        c = x.shape[1]
        count = torch.full((1,), x.numel() / c, dtype=torch.float32, device=x.device)
        xf = x.float()
        stats = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count])
        stats = dist_nn.all_reduce(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                self.running_var.lerp_((var * n / (n - 1).clamp_min(1)).to(self.running_var.dtype), m)
        out = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out.to(x.dtype)


def cross_replica_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every `nn.BatchNorm2d` in `module` (in place) for the cross-replica one; returns it."""
    for bn in module.modules():
        if type(bn) is nn.BatchNorm2d:
            bn.__class__ = CrossReplicaBatchNorm2d
    return module
