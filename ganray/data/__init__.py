"""Datasets: every source becomes in-memory uint8 splits in the model's shape."""

from ganray.data.base import ImageDataset, Splits, to_uint8, to_unit
from ganray.data.registry import load_splits

__all__ = ["ImageDataset", "Splits", "load_splits", "to_unit", "to_uint8"]
