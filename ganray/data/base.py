"""The dataset contract every source produces: uint8 CxHxW images, int labels, class names.

Datasets here are in memory: ganray targets data-scarce problems (thousands to a few hundred
thousand images), where a uint8 tensor is small and indexing it keeps loading off the critical
path of the training step.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ganray.errors import GanrayError


@dataclass(frozen=True)
class ImageDataset:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise GanrayError(f"images must be uint8 NxCxHxW, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise GanrayError(f"{len(self.labels)} labels for {len(self.images)} images; every image needs one label")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise GanrayError(
                f"labels must lie in [0, {len(self.class_names)}) for {len(self.class_names)} classes, "
                f"got [{int(self.labels.min())}, {int(self.labels.max())}]"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def images_per_class(self) -> float:
        """The mean class size (images / classes): what the size-dependent defaults compare with their gate."""
        return len(self) / max(1, self.num_classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, index: np.ndarray | torch.Tensor) -> "ImageDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageDataset(self.images[index], self.labels[index], self.class_names)

    def fingerprint(self) -> str:
        """Content hash: keys caches of real-data statistics and records what a generator saw."""
        h = hashlib.sha256()
        h.update(repr((tuple(self.images.shape), self.class_names)).encode())
        h.update(self.images.contiguous().numpy().tobytes())
        h.update(self.labels.numpy().astype("<i8").tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Splits:
    train: ImageDataset  # what models train on (validation already carved out)
    test: ImageDataset  # read only for final numbers, never for a decision
    val: ImageDataset | None = None  # carved from train (`data.val_fraction`); every selection uses it


def to_model_shape(images: torch.Tensor, size: int, channels: int, chunk: int = 4096) -> torch.Tensor:
    """Convert uint8 NxCxHxW to the model's channels and square size (antialiased resize).

    Chunked so converting a 70k-image dataset never materialises it all as float.
    """
    if images.shape[1] == channels and images.shape[2] == size and images.shape[3] == size:
        return images
    if len(images) > chunk:
        return torch.cat([to_model_shape(c, size, channels, chunk) for c in images.split(chunk)])
    x = images.float()
    if x.shape[1] == 3 and channels == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != channels:
        raise GanrayError(f"cannot convert {x.shape[1]}-channel images to {channels} channels; set data.channels")
    if x.shape[2] != size or x.shape[3] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out) with `fraction` of every class held out; pure function of its inputs."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] -> float [-1,1], the range the generator's tanh produces."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1,1] -> uint8 [0,255]."""
    return x.float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
