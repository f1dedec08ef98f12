"""Shard contents as pure functions of (plan, shard index): synthetic samples and augmented real ones.

Plain PyTorch, no Ray: the actors in `ganray.generation.pool` only call these and store the
bytes. Thread count is fixed by the caller, since float reductions (and so rounded pixels)
can depend on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ganray.data.base import ImageDataset, to_unit, to_uint8
from ganray.errors import GanrayError
from ganray.generation.manifest import ShardRecord
from ganray.generation.plan import ShardPlan
from ganray.generation.shard import PNG_LEVEL, Sample, sample_key, shard_bytes, shard_name

MAX_ROUNDS = 100  # quality filter: candidate rounds before the acceptance rate is called too low


def _record(s: int, data: bytes, labels: np.ndarray, k: int, drawn: int, identity: str) -> ShardRecord:
    return ShardRecord(
        url=shard_name(s),
        nsamples=len(labels),
        filesize=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        class_counts=np.bincount(labels, minlength=k).astype(int).tolist(),
        drawn=drawn,
        identity=identity,
    )


@dataclass
class GeneratedShards:
    """Samples of a conditional generator, optionally kept only when a classifier agrees."""

    G: nn.Module
    plan: ShardPlan
    class_names: tuple[str, ...]
    identity: str
    batch_size: int = 256
    judge: Callable[[torch.Tensor], torch.Tensor] | None = None  # images in [-1, 1] -> class probabilities
    min_confidence: float = 0.0
    png_level: int = PNG_LEVEL
    latent_scale: float = 1.0

    @torch.no_grad()
    def _forward(self, z: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = next(self.G.parameters()).device
        images, conf = [], []
        for i in range(0, len(z), self.batch_size):
            zi = torch.from_numpy(z[i : i + self.batch_size]).to(device)
            yi = torch.from_numpy(y[i : i + self.batch_size]).to(device)
            x = self.G(zi, yi)
            images.append(to_uint8(x).cpu())
            if self.judge is not None:
                # Judge the image as stored (uint8), not the float output.
                probs = self.judge(to_unit(images[-1]).to(device))
                conf.append(probs.gather(1, yi[:, None])[:, 0].cpu())
        return torch.cat(images), (torch.cat(conf) if conf else None)

    def render(self, s: int) -> tuple[bytes, ShardRecord]:
        labels = self.plan.labels(s)
        rng = self.plan.rng(s)
        n, z_dim = len(labels), self.G.z_dim
        out = np.zeros((n, *self.G.image_shape), dtype=np.uint8)
        confidence = np.ones(n, dtype=np.float64)
        todo = np.arange(n)
        drawn = 0
        for _ in range(MAX_ROUNDS):
            z = rng.standard_normal((len(todo), z_dim)).astype(np.float32)
            if self.latent_scale != 1.0:
                z *= np.float32(self.latent_scale)
            images, conf = self._forward(z, labels[todo])
            drawn += len(todo)
            ok = np.ones(len(todo), dtype=bool) if conf is None else conf.numpy() >= self.min_confidence
            out[todo[ok]] = images.numpy()[ok]
            if conf is not None:
                confidence[todo[ok]] = conf.numpy()[ok]
            todo = todo[~ok]
            if not len(todo):
                break
        else:
            raise GanrayError(
                f"shard {s}: only {n - len(todo)} of {n} samples reached confidence {self.min_confidence} in "
                f"{MAX_ROUNDS} rounds; lower generate.min_confidence or train the generator longer"
            )
        start, _ = self.plan.bounds(s)
        samples = []
        for i in range(n):
            meta = {"class_name": self.class_names[labels[i]], "seed": self.plan.seed, "shard": s, "index": start + i, "source": "generate"}
            if self.judge is not None:
                meta["confidence"] = round(float(confidence[i]), 6)
            samples.append(Sample(sample_key(s, i), out[i], int(labels[i]), meta))
        data = shard_bytes(samples, self.png_level)
        return data, _record(s, data, labels, len(self.class_names), drawn, self.identity)


def augment_transform(ops: list[str], channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchvision v2 transforms on uint8 CxHxW; `color` only touches RGB images."""
    from torchvision.transforms import v2

    chosen = []
    if "affine" in ops:
        chosen.append(v2.RandomAffine(degrees=12, translate=(0.08, 0.08), scale=(0.9, 1.1), shear=8))
    if "elastic" in ops:
        chosen.append(v2.ElasticTransform(alpha=20.0, sigma=4.0))
    if "color" in ops and channels == 3:
        chosen.append(v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05))
    return v2.Compose(chosen) if chosen else (lambda x: x)


@dataclass
class AugmentedShards:
    """Each real image followed by `copies` augmented versions, all with the original's label."""

    data: ImageDataset
    plan: ShardPlan  # over len(data) * (copies + 1) samples; its labels are unused
    copies: int
    ops: list[str]
    identity: str
    png_level: int = PNG_LEVEL

    def render(self, s: int) -> tuple[bytes, ShardRecord]:
        start, stop = self.plan.bounds(s)
        transform = augment_transform(self.ops, self.data.images.shape[1])
        # v2 transforms draw from torch's global generator; seed it from (seed, s) alone.
        torch.manual_seed(int(self.plan.rng(s).integers(2**63 - 1)))
        samples, labels = [], []
        for i in range(start, stop):
            src, copy = divmod(i, self.copies + 1)
            image = self.data.images[src]
            if copy:
                image = transform(image)
            label = int(self.data.labels[src])
            labels.append(label)
            meta = {"class_name": self.data.class_names[label], "seed": self.plan.seed, "shard": s, "index": i,
                    "source": "augment", "source_index": src, "copy": copy}
            samples.append(Sample(sample_key(s, i - start), image.numpy(), label, meta))
        data = shard_bytes(samples, self.png_level)
        return data, _record(s, data, np.asarray(labels, dtype=np.int64), len(self.data.class_names), stop - start, self.identity)
