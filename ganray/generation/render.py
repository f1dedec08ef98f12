"""Shard contents as pure functions of (plan, shard index): synthetic samples and augmented real ones.

Plain PyTorch, no Ray: the actors in `ganray.generation.pool` only call these and store the
bytes. Thread count is fixed by the caller, since float reductions (and so rounded pixels)
can depend on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from ganray.data.base import ImageDataset, to_unit, to_uint8
from ganray.errors import GanrayError
from ganray.generation.manifest import ShardRecord
from ganray.generation.plan import ShardPlan
from ganray.generation.shard import PNG_LEVEL, Sample, sample_key, shard_bytes, shard_name
from ganray.metrics.recipes import POOL_FACTOR, most_uncertain

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


@dataclass(frozen=True)
class Drawn:
    images: np.ndarray  # uint8 N x C x H x W
    probs: np.ndarray | None  # the judge's class probabilities of each kept image, when judged
    drawn: int  # candidates generated, rejected ones included


Judge = Callable[[torch.Tensor], torch.Tensor]  # images in [-1, 1] -> class probabilities


@torch.no_grad()
def _forward(
    members: Sequence[nn.Module], z: np.ndarray, y: np.ndarray, member: np.ndarray, batch_size: int, judge: Judge | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (and judged probabilities) of each (z, y), made by generator `member`."""
    device = next(members[0].parameters()).device
    images = np.zeros((len(z), *members[0].image_shape), dtype=np.uint8)
    probs = np.zeros((len(z), members[0].num_classes), dtype=np.float32) if judge is not None else None
    for k, G in enumerate(members):
        rows = np.flatnonzero(member == k)
        for i in range(0, len(rows), batch_size):
            r = rows[i : i + batch_size]
            x = to_uint8(G(torch.from_numpy(z[r]).to(device), torch.from_numpy(y[r]).to(device))).cpu()
            images[r] = x.numpy()
            if probs is not None:
                # Judge the image as stored (uint8), not the float output.
                probs[r] = judge(to_unit(x).to(device)).float().cpu().numpy()
    return images, probs


def draw_samples(
    members: Sequence[nn.Module], labels: np.ndarray, member: np.ndarray, rng: np.random.Generator, *,
    latent_scale: float = 1.0, judge: Judge | None = None, min_confidence: float = 0.0, batch_size: int = 256,
    what: str = "the samples",
) -> Drawn:
    """One image per label from generator `member[i]`, redrawn (fresh noise, same member) until the
    judge gives its label at least `min_confidence`. A pure function of its arguments and rng state."""
    n, z_dim = len(labels), members[0].z_dim
    out = np.zeros((n, *members[0].image_shape), dtype=np.uint8)
    kept_probs = np.zeros((n, members[0].num_classes), dtype=np.float32) if judge is not None else None
    todo = np.arange(n)
    drawn = 0
    for _ in range(MAX_ROUNDS):
        z = rng.standard_normal((len(todo), z_dim)).astype(np.float32)
        if latent_scale != 1.0:
            z *= np.float32(latent_scale)
        images, probs = _forward(members, z, labels[todo], member[todo], batch_size, judge)
        drawn += len(todo)
        ok = np.ones(len(todo), dtype=bool)
        if probs is not None:
            ok = probs[np.arange(len(todo)), labels[todo]] >= min_confidence
            kept_probs[todo[ok]] = probs[ok]
        out[todo[ok]] = images[ok]
        todo = todo[~ok]
        if not len(todo):
            return Drawn(out, kept_probs, drawn)
    raise GanrayError(
        f"{what}: only {n - len(todo)} of {n} samples reached confidence {min_confidence} in "
        f"{MAX_ROUNDS} rounds; lower generate.min_confidence or train the generator longer"
    )


def _probabilities(fn: Judge, images: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """`fn`'s class probabilities of stored (uint8) images."""
    out = [fn(to_unit(torch.from_numpy(images[i : i + batch_size])).to(device)).float().cpu().numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def uncertain_slots(labels: np.ndarray, share: float) -> np.ndarray:
    """The positions an uncertain pick fills: the last round(share * n_c) of each class c, in class order."""
    slots = []
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        take = int(round(share * len(where)))
        slots.append(where[len(where) - take :])
    return np.concatenate(slots) if slots else np.zeros(0, dtype=np.int64)


@dataclass
class GeneratedShards:
    """Samples of one conditional generator or an ensemble, optionally kept only when a judge agrees.

    With several generators, each class's samples alternate between them (`ShardPlan.members`).
    `soft_labels` adds the teacher's class probabilities to each sample's metadata; the teacher is
    `teacher` (e.g. the mean of real-only classifiers) or, when None, the judge. With
    `uncertain_share` > 0 that share of each class's samples in a shard is the teacher's least
    certain (highest entropy) of `POOL_FACTOR` times as many candidates, drawn after the rest from
    the shard's own stream, so the shard stays a pure function of (plan, s).
    """

    G: nn.Module | Sequence[nn.Module]
    plan: ShardPlan
    class_names: tuple[str, ...]
    identity: str
    batch_size: int = 256
    judge: Judge | None = None
    min_confidence: float = 0.0
    png_level: int = PNG_LEVEL
    latent_scale: float = 1.0
    soft_labels: bool = False
    teacher: Judge | None = None
    uncertain_share: float = 0.0

    @property
    def members(self) -> tuple[nn.Module, ...]:
        return tuple(self.G) if isinstance(self.G, (list, tuple)) else (self.G,)

    def _draw(self, labels: np.ndarray, member: np.ndarray, rng: np.random.Generator, what: str) -> tuple[Drawn, np.ndarray | None]:
        """Samples of `labels` and the teacher's probabilities of them (None without a teacher or judge)."""
        got = draw_samples(
            self.members, labels, member, rng, latent_scale=self.latent_scale, judge=self.judge,
            min_confidence=self.min_confidence, batch_size=self.batch_size, what=what,
        )
        if self.teacher is None:
            return got, got.probs
        device = next(self.members[0].parameters()).device
        return got, _probabilities(self.teacher, got.images, self.batch_size, device)

    def render(self, s: int) -> tuple[bytes, ShardRecord]:
        labels, members = self.plan.labels(s), self.members
        member = self.plan.members(s, len(members))
        rng = self.plan.rng(s)
        got, taught = self._draw(labels, member, rng, f"shard {s}")
        images, judged, drawn = got.images, got.probs, got.drawn
        if self.uncertain_share > 0:
            if taught is None:
                raise GanrayError("an uncertain pick needs a teacher or a judge; this is a bug, please report it")
            slots = uncertain_slots(labels, self.uncertain_share)
            pool_labels, pool_member = np.repeat(labels[slots], POOL_FACTOR), np.repeat(member[slots], POOL_FACTOR)
            pool, pool_taught = self._draw(pool_labels, pool_member, rng, f"shard {s}'s uncertain pool")
            per_class = np.bincount(labels[slots], minlength=len(self.class_names)).tolist()
            pick = most_uncertain(torch.from_numpy(pool_taught), torch.from_numpy(pool_labels), per_class).numpy()
            images, member, taught = images.copy(), member.copy(), taught.copy()
            images[slots], member[slots], taught[slots] = pool.images[pick], pool_member[pick], pool_taught[pick]
            if judged is not None:
                judged = judged.copy()
                judged[slots] = pool.probs[pick]
            drawn += pool.drawn
        start, _ = self.plan.bounds(s)
        samples = []
        for i in range(len(labels)):
            meta = {"class_name": self.class_names[labels[i]], "seed": self.plan.seed, "shard": s, "index": start + i, "source": "generate"}
            if len(members) > 1:
                meta["member"] = int(member[i])
            if judged is not None:
                meta["confidence"] = round(float(judged[i, labels[i]]), 6)
            if self.soft_labels and taught is not None:
                meta["soft_label"] = [round(float(p), 6) for p in taught[i]]
            samples.append(Sample(sample_key(s, i), images[i], int(labels[i]), meta))
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
