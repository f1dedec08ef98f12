"""Generators and discriminators, selected by name from `ARCHS`."""

from ganray.models.registry import ARCHS, build_generator, build_models, class_weight, get_arch

__all__ = ["ARCHS", "build_generator", "build_models", "class_weight", "get_arch"]
