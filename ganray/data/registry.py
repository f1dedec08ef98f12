"""One entry point from `data:` config to train/test splits, whatever the source.

Path checks live here so every source fails the same way, before any file is opened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ganray.config import DataConfig, StorageConfig
from ganray.data.base import ImageDataset, Splits, stratified_split, to_model_shape
from ganray.data.cifar import load_cifar10_splits
from ganray.data.digits import load_digits_splits
from ganray.data.folder import load_folder_splits
from ganray.data.idx import load_idx_splits
from ganray.data.wds import load_wds_splits
from ganray.errors import GanrayError

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Source:
    """One data source: how to load its splits, and whether `data.path` must be a local directory."""

    load: Callable[[DataConfig, StorageConfig | None], Splits]
    local_path: bool  # False: no path (digits), or the loader checks its own (wds reads s3:// too)


# The one list of data sources: `data.source` is validated against it (`source()`), and adding a
# source is one entry here.
SOURCES: dict[str, Source] = {
    "digits": Source(lambda cfg, storage: load_digits_splits(cfg), local_path=False),
    "mnist": Source(lambda cfg, storage: load_idx_splits(cfg, "mnist"), local_path=True),
    "fashion-mnist": Source(lambda cfg, storage: load_idx_splits(cfg, "fashion-mnist"), local_path=True),
    "cifar10": Source(lambda cfg, storage: load_cifar10_splits(cfg), local_path=True),
    "folder": Source(lambda cfg, storage: load_folder_splits(cfg), local_path=True),
    "wds": Source(load_wds_splits, local_path=False),
}


def source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise GanrayError(f"unknown data.source {name!r}; use one of {', '.join(SOURCES)}") from None


def check_path(cfg: DataConfig) -> None:
    """Fail on a missing or wrong path before a loader starts reading."""
    if cfg.path is None:
        raise GanrayError(
            f"data.path is required for data.source={cfg.source}; set it with --set data.path=/path/to/data"
        )
    if "://" in cfg.path:
        raise GanrayError(
            f"data.source={cfg.source} reads a local directory, got {cfg.path!r}; copy the data to local disk"
        )
    if not Path(cfg.path).expanduser().exists():
        raise GanrayError(f"data.path '{cfg.path}' does not exist; fix data.path or create the directory")


def train_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified `fraction` of train, never dropping a class entirely."""
    kept, held = stratified_split(labels, 1.0 - fraction, seed)
    missing = np.setdiff1d(np.unique(labels), labels[kept])
    rescued = [held[labels[held] == c][0] for c in missing]
    return np.sort(np.concatenate([kept, np.asarray(rescued, dtype=kept.dtype)]))


def carve_validation(train: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """(train, val) with a class-stratified `fraction` of train held out for validation.

    Every selection decision (checkpoint, sweep trial, filter threshold, downstream recipe) is made
    on val, so the test split stays unread until the final numbers. A class left with no image
    on either side is an error: selection on it would be blind.
    """
    labels = train.labels.numpy()
    kept, held = stratified_split(labels, fraction, seed + 7_777)
    for c, name in enumerate(train.class_names):
        n, n_val = int((labels == c).sum()), int((labels[held] == c).sum())
        if n and (n_val == 0 or n_val == n):
            side = "no validation image" if n_val == 0 else "no training image"
            raise GanrayError(
                f"data.val_fraction={fraction:g} leaves class {name!r} ({n} images) with {side}; "
                f"{'raise' if n_val == 0 else 'lower'} data.val_fraction, add images, or set it to 0"
            )
    return train.subset(kept), train.subset(held)


def _to_model(ds: ImageDataset, cfg: DataConfig) -> ImageDataset:
    images = to_model_shape(ds.images, cfg.image_size, cfg.channels)
    return ds if images is ds.images else ImageDataset(images, ds.labels, ds.class_names)


def load_splits(cfg: DataConfig, storage: StorageConfig | None = None) -> Splits:
    """Train/val/test splits in the model's shape; `train_fraction`, then `val_fraction`, carve train only.

    `storage` (endpoint, region, retries) applies to sources read from S3.
    """
    src = source(cfg.source)
    if src.local_path:
        check_path(cfg)
    splits = src.load(cfg, storage)
    train, test = _to_model(splits.train, cfg), _to_model(splits.test, cfg)
    train, val = carve_train(train, cfg)
    return Splits(train=train, test=test, val=val)


def carve_train(full_train: ImageDataset, cfg: DataConfig) -> tuple[ImageDataset, ImageDataset | None]:
    """(train, val) from the full train split: `train_fraction` first, then `val_fraction` of that.

    A pure function of the data and the config, so the report's low-data study carves exactly the
    splits that a run with `data.train_fraction=f` trained and validated on.
    """
    train = full_train
    if cfg.train_fraction < 1.0 and len(train):
        index = train_subset(train.labels.numpy(), cfg.train_fraction, cfg.split_seed)
        log.info("train_fraction=%g: using %d of %d train images", cfg.train_fraction, len(index), len(train))
        train = train.subset(index)
    if cfg.val_fraction > 0 and len(train):
        return carve_validation(train, cfg.val_fraction, cfg.split_seed)
    return train, None
