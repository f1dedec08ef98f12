"""One entry point from `data:` config to train/test splits, whatever the source.

Path checks live here so every source fails the same way, before any file is opened.
"""

from __future__ import annotations

import logging
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

SOURCES: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "folder", "wds")

_LOADERS: dict[str, Callable[[DataConfig], Splits]] = {
    "digits": load_digits_splits,
    "mnist": lambda cfg: load_idx_splits(cfg, "mnist"),
    "fashion-mnist": lambda cfg: load_idx_splits(cfg, "fashion-mnist"),
    "cifar10": load_cifar10_splits,
    "folder": load_folder_splits,
    "wds": load_wds_splits,
}


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
    if cfg.source not in _LOADERS:
        raise GanrayError(f"unknown data.source {cfg.source!r}; use one of {', '.join(SOURCES)}")
    if cfg.source not in ("digits", "wds"):  # wds reads S3 prefixes too and checks its own path
        check_path(cfg)
    splits = load_wds_splits(cfg, storage) if cfg.source == "wds" else _LOADERS[cfg.source](cfg)
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
