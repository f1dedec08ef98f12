"""Which samples go into which shard, and the random stream of each shard.

Everything a shard holds is a pure function of (plan, shard index): its sample range, its
labels (an even interleaving of the requested class counts, so every shard has about the
requested mix) and its noise, drawn from `SeedSequence(seed, spawn_key=(s,))`. Any number of
workers, any retry and any resume therefore produce the same shard.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ganray.errors import GanrayError


def class_counts(total: int, proportions: list[float]) -> list[int]:
    """Largest-remainder split of `total` by `proportions` (normalized): exact, sums to total."""
    if not proportions or any(p < 0 for p in proportions) or sum(proportions) <= 0:
        raise GanrayError("class proportions must be non-negative and not all zero; e.g. generate.classes: [1, 1, 2]")
    weights = np.asarray(proportions, dtype=np.float64) / sum(proportions)
    raw = weights * total
    counts = np.floor(raw).astype(np.int64)
    for c in np.argsort(-(raw - counts), kind="stable")[: total - int(counts.sum())]:
        counts[c] += 1
    return [int(c) for c in counts]


def interleave(counts: list[int]) -> np.ndarray:
    """Labels with each class spread evenly: class c's j-th sample sits at position (j + 0.5) / n_c."""
    positions = np.concatenate([(np.arange(n) + 0.5) / n for n in counts if n] or [np.zeros(0)])
    labels = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in enumerate(counts) if n] or [np.zeros(0, np.int64)])
    return labels[np.argsort(positions, kind="stable")]


@dataclass(frozen=True)
class ShardPlan:
    num_samples: int
    shard_size: int
    seed: int
    counts: tuple[int, ...]  # samples per class, over the whole output

    @classmethod
    def build(cls, num_samples: int, shard_size: int, seed: int, proportions: list[float]) -> "ShardPlan":
        return cls(num_samples, shard_size, seed, tuple(class_counts(num_samples, proportions)))

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num_samples / self.shard_size)

    def bounds(self, s: int) -> tuple[int, int]:
        if not 0 <= s < self.num_shards:
            raise IndexError(f"shard {s} outside 0..{self.num_shards - 1}")
        return s * self.shard_size, min((s + 1) * self.shard_size, self.num_samples)

    @functools.cached_property
    def _labels(self) -> np.ndarray:
        return interleave(list(self.counts))

    def labels(self, s: int) -> np.ndarray:
        start, stop = self.bounds(s)
        return self._labels[start:stop]

    @functools.cached_property
    def _ordinals(self) -> np.ndarray:
        labels = self._labels
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=len(self.counts)))[:-1]])
        ranks = np.empty_like(order)
        ranks[order] = np.arange(len(labels)) - starts[labels[order]]
        return ranks

    def members(self, s: int, m: int) -> np.ndarray:
        """Which of `m` ensemble generators makes each sample of shard s: its rank within its class,
        modulo m. Every class is split evenly between the members (a plain index modulo m would tie
        members to classes, since the labels are interleaved), and it depends on (plan, s) only."""
        start, stop = self.bounds(s)
        return self._ordinals[start:stop] % m

    def rng(self, s: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(s,)))
