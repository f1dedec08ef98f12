"""Architectures by name: configs and exported generators refer to models only through this table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from ganray.config import LossConfig, ModelConfig
from ganray.errors import GanrayError
from ganray.models.conditional import ConditionalGenerator, ProjectionDiscriminator
from ganray.models.dcgan import DCGANDiscriminator, DCGANGenerator

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Arch:
    conditional: bool
    generator: Callable[[ModelConfig, Shape, int], nn.Module]
    discriminator: Callable[[ModelConfig, Shape, int, bool], nn.Module]  # bool: with a class-classifier head
    summary: str


ARCHS: dict[str, Arch] = {
    "dcgan": Arch(
        conditional=False,
        generator=lambda m, shape, k: DCGANGenerator(m.z_dim, shape, m.width),
        discriminator=lambda m, shape, k, head: DCGANDiscriminator(shape, m.width, m.d_dropout, m.spectral_norm),
        summary="the article's Keras DCGAN, exact port (unconditional)",
    ),
    "cdcgan": Arch(
        conditional=True,
        generator=lambda m, shape, k: ConditionalGenerator(m.z_dim, k, shape, m.width),
        discriminator=lambda m, shape, k, head: ProjectionDiscriminator(
            k, shape, m.width, m.d_dropout, m.spectral_norm, classifier_head=head),
        summary="class-conditional DCGAN: conditional BatchNorm G, projection D",
    ),
}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise GanrayError(f"unknown model.arch {name!r}; choose one of {sorted(ARCHS)}") from None


def build_generator(cfg: ModelConfig, image_shape: Shape, num_classes: int) -> nn.Module:
    return get_arch(cfg.arch).generator(cfg, image_shape, num_classes)


def class_weight(model: ModelConfig, loss: LossConfig) -> float:
    """loss.class_weight as training applies it: unset means on (1.0) for a class-conditional model
    (it keeps mode seeking's variety within the label) and off for an unconditional one (no labels)."""
    if loss.class_weight is None:
        return 1.0 if get_arch(model.arch).conditional else 0.0
    return loss.class_weight


def build_models(
    cfg: ModelConfig, image_shape: Shape, num_classes: int, classifier_head: bool = False
) -> tuple[nn.Module, nn.Module]:
    """G and D; `classifier_head` gives a conditional D its auxiliary class classifier."""
    arch = get_arch(cfg.arch)
    if classifier_head and not arch.conditional:
        raise GanrayError(f"loss.class_weight needs a class-conditional model; model.arch={cfg.arch!r} is not")
    return arch.generator(cfg, image_shape, num_classes), arch.discriminator(cfg, image_shape, num_classes, classifier_head)
