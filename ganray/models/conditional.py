"""Class-conditional DCGAN: the article's topology, conditioned so a sample comes with its label.

G conditions twice: the label embedding is concatenated to z, and every upsampling block uses
class-conditional BatchNorm. D is a projection discriminator (Miyato & Koyama 2018): the logit
is an unconditional term plus the inner product of the features with a class embedding, which
conditions far better than concatenating one-hot labels to the input. With `classifier_head`, D
also owns a linear class classifier on the same features (AC-GAN's auxiliary classifier), trained
on real images only; the generator is then pushed toward samples that classifier reads as their
label (`loss.class_weight`), which is what makes samples usable as labelled training data.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from ganray.models.layers import ConditionalBatchNorm2d, SameConv2d, SameConvTranspose2d, keras_init_, scaled

BN_MOMENTUM = 0.1
BN_EPS = 1e-5


class ConditionalGenerator(nn.Module):
    def __init__(
        self,
        z_dim: int,
        num_classes: int,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        width: float = 1.0,
        embed_dim: int = 32,
        slope: float = 0.2,
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.z_dim, self.num_classes, self.image_shape = z_dim, num_classes, image_shape
        c0, c1, c2 = scaled(256, width), scaled(128, width), scaled(64, width)
        self.base = (c0, h // 4, w // 4)
        n0 = c0 * (h // 4) * (w // 4)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.project = nn.Linear(z_dim + embed_dim, n0, bias=False)
        self.bn0 = ConditionalBatchNorm2d(c0, num_classes, BN_MOMENTUM, BN_EPS)
        self.up1 = SameConvTranspose2d(c0, c1, 5, stride=1, bias=False)
        self.bn1 = ConditionalBatchNorm2d(c1, num_classes, BN_MOMENTUM, BN_EPS)
        self.up2 = SameConvTranspose2d(c1, c2, 5, stride=2, bias=False)
        self.bn2 = ConditionalBatchNorm2d(c2, num_classes, BN_MOMENTUM, BN_EPS)
        self.out = SameConvTranspose2d(c2, c, 5, stride=2, bias=True)
        self.act = nn.LeakyReLU(slope)
        keras_init_(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("a conditional generator needs class labels y")
        h = self.project(torch.cat([z, self.embed(y)], dim=1)).view(-1, *self.base)
        h = self.act(self.bn0(h, y))
        h = self.act(self.bn1(self.up1(h), y))
        h = self.act(self.bn2(self.up2(h), y))
        return torch.tanh(self.out(h))


class ProjectionDiscriminator(nn.Module):
    def __init__(
        self,
        num_classes: int,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        width: float = 1.0,
        dropout: float = 0.3,
        use_spectral_norm: bool = False,
        slope: float = 0.2,
        classifier_head: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.num_classes = num_classes
        c1, c2 = scaled(64, width), scaled(128, width)
        sn = spectral_norm if use_spectral_norm else (lambda m: m)
        self.features = nn.Sequential(
            sn(SameConv2d(c, c1, 5, stride=2)),
            nn.LeakyReLU(slope),
            nn.Dropout(dropout),
            sn(SameConv2d(c1, c2, 5, stride=2)),
            nn.LeakyReLU(slope),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        feat = c2 * (-(-h // 4)) * (-(-w // 4))
        self.head = sn(nn.Linear(feat, 1))
        self.embed = sn(nn.Embedding(num_classes, feat))
        self.classify = sn(nn.Linear(feat, num_classes)) if classifier_head else None
        keras_init_(self)
        nn.init.normal_(self.embed.weight if not use_spectral_norm else self.embed.parametrizations.weight.original, std=0.01)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, classes: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The real/fake logit; with `classes`, also the class logits of the classifier head."""
        if y is None:
            raise ValueError("a conditional discriminator needs class labels y")
        f = self.features(x)
        logit = self.head(f).squeeze(1) + (self.embed(y) * f).sum(1)
        if not classes:
            return logit
        if self.classify is None:
            raise ValueError("this discriminator has no classifier head (loss.class_weight=0)")
        return logit, self.classify(f)
