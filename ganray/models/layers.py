"""Building blocks that reproduce Keras semantics where the article's model depends on them.

Keras 'same' padding with stride 2 pads asymmetrically (the extra row/column goes at the
bottom/right), and its transposed convolution crops the mirror of that. PyTorch's symmetric
`padding=` gives the same output shapes but shifts the sampling grid, so these layers pad and
crop explicitly.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Keras defaults that differ from PyTorch's.
KERAS_LEAKY_SLOPE = 0.3
KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99 is PyTorch's 1 - 0.99
KERAS_BN_EPS = 1e-3


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'same' padding (asymmetric when the total is odd)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, bias: bool = True) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = _same_pad(x.shape[-2], k, s)
        left, right = _same_pad(x.shape[-1], k, s)
        return super().forward(F.pad(x, (left, right, top, bottom)))


class SameConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d with TensorFlow 'same' semantics: output = input * stride exactly."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, bias: bool = True) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        h, w = x.shape[-2] * s, x.shape[-1] * s
        top = max((x.shape[-2] - 1) * s + k - h, 0) // 2
        left = max((x.shape[-1] - 1) * s + k - w, 0) // 2
        return y[..., top : top + h, left : left + w]


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class: strong, cheap conditioning."""

    def __init__(self, features: int, num_classes: int, momentum: float, eps: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(features, affine=False, momentum=momentum, eps=eps)
        self.gain = nn.Embedding(num_classes, features)
        self.shift = nn.Embedding(num_classes, features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.shift(y)[:, :, None, None]


def keras_init_(module: nn.Module) -> None:
    """Glorot-uniform kernels and zero biases, as Keras initializes Dense/Conv layers."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))
