"""The article's DCGAN (the Keras tutorial model), ported layer for layer.

Parameter counts at width 1 and 28x28x1 match the Keras summary: G 2,305,472 trainable
(2,330,944 total with BatchNorm moving statistics), D 212,865.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from ganray.models.layers import (
    KERAS_BN_EPS,
    KERAS_BN_MOMENTUM,
    KERAS_LEAKY_SLOPE,
    SameConv2d,
    SameConvTranspose2d,
    keras_init_,
    scaled,
)


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, image_shape: tuple[int, int, int] = (1, 28, 28), width: float = 1.0) -> None:
        super().__init__()
        c, h, w = image_shape
        self.z_dim, self.num_classes, self.image_shape = z_dim, 0, image_shape
        c0, c1, c2 = scaled(256, width), scaled(128, width), scaled(64, width)
        self.base = (c0, h // 4, w // 4)
        n0 = c0 * (h // 4) * (w // 4)
        bn = dict(momentum=KERAS_BN_MOMENTUM, eps=KERAS_BN_EPS)
        act = lambda: nn.LeakyReLU(KERAS_LEAKY_SLOPE)  # noqa: E731
        self.project = nn.Sequential(nn.Linear(z_dim, n0, bias=False), nn.BatchNorm1d(n0, **bn), act())
        self.convs = nn.Sequential(
            SameConvTranspose2d(c0, c1, 5, stride=1, bias=False),
            nn.BatchNorm2d(c1, **bn),
            act(),
            SameConvTranspose2d(c1, c2, 5, stride=2, bias=False),
            nn.BatchNorm2d(c2, **bn),
            act(),
            SameConvTranspose2d(c2, c, 5, stride=2, bias=False),
            nn.Tanh(),
        )
        keras_init_(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.convs(self.project(z).view(-1, *self.base))


class DCGANDiscriminator(nn.Module):
    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        width: float = 1.0,
        dropout: float = 0.3,
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.num_classes = 0
        c1, c2 = scaled(64, width), scaled(128, width)
        self.features = nn.Sequential(
            SameConv2d(c, c1, 5, stride=2),
            nn.LeakyReLU(KERAS_LEAKY_SLOPE),
            nn.Dropout(dropout),
            SameConv2d(c1, c2, 5, stride=2),
            nn.LeakyReLU(KERAS_LEAKY_SLOPE),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        self.head = nn.Linear(c2 * (-(-h // 4)) * (-(-w // 4)), 1)
        keras_init_(self)
        if use_spectral_norm:  # an option on top of the port; trainable parameter counts are unchanged
            for i in (0, 3):
                self.features[i] = spectral_norm(self.features[i])
            self.head = spectral_norm(self.head)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)
