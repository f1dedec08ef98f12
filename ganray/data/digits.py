"""scikit-learn's embedded digits: the dataset that needs no download, so every demo and test can run offline."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ganray.config import DataConfig
from ganray.data.base import ImageDataset, Splits, stratified_split, to_model_shape

log = logging.getLogger(__name__)

DIGIT_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))


def digits_uint8(values: np.ndarray) -> np.ndarray:
    """The source pixels are 0..16 intensities; scale them to the uint8 range every other source uses."""
    return np.clip(np.round(values.astype(np.float64) * 255.0 / 16.0), 0, 255).astype(np.uint8)


def load_digits_splits(cfg: DataConfig) -> Splits:
    """A fixed stratified split: digits has no official test set, and comparisons need the same one every run."""
    from sklearn.datasets import load_digits  # deferred: sklearn import is slow and only this source needs it

    bunch = load_digits()
    images = torch.from_numpy(digits_uint8(bunch.images).reshape(-1, 1, 8, 8))
    labels = np.asarray(bunch.target, dtype=np.int64)
    images = to_model_shape(images, cfg.image_size, cfg.channels)
    train_idx, test_idx = stratified_split(labels, cfg.test_fraction, cfg.split_seed)
    full = ImageDataset(images, torch.from_numpy(labels), DIGIT_NAMES)
    log.info("digits: %d train, %d test images", len(train_idx), len(test_idx))
    return Splits(train=full.subset(train_idx), test=full.subset(test_idx))
