"""`ganray generate` and `ganray augment`: what to render, under which identity, into which store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ganray.config import Config
from ganray.data import load_splits
from ganray.data.base import ImageDataset
from ganray.errors import GanrayError
from ganray.generation.plan import ShardPlan
from ganray.generation.render import AugmentedShards, GeneratedShards
from ganray.generation.shard import PNG_LEVEL
from ganray.generation.writer import OutputSummary, write_output
from ganray.storage import open_store
from ganray.training.export import LoadedGenerator, generator_from


def with_out(cfg: Config, out: str | None) -> Config:
    """The config with generate.out set to `out` (unchanged when `out` is None)."""
    if not out:
        return cfg
    return cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"out": out})})


def _out(cfg: Config) -> str:
    if not cfg.generate.out:
        raise GanrayError("no output given; set generate.out to a directory or s3://bucket/prefix (or pass --out)")
    return cfg.generate.out


def _proportions(cfg: Config, k: int) -> list[float]:
    classes = cfg.generate.classes
    if classes is None:
        return [1.0] * k
    if len(classes) != k:
        raise GanrayError(f"generate.classes has {len(classes)} proportions but there are {k} classes; give one per class")
    return list(classes)


@dataclass(frozen=True)
class GeneratorFactory:
    """Rebuilds the exported generator (and the quality judge) inside each actor."""

    model: dict
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    state: dict[str, torch.Tensor]
    plan: ShardPlan
    identity: str
    batch_size: int
    judge: dict | None  # domain classifier payload {"state", "key"} when filtering
    min_confidence: float
    png_level: int
    latent_scale: float = 1.0

    def __call__(self, device: torch.device) -> GeneratedShards:
        meta = {"model": self.model, "image_shape": self.image_shape, "class_names": self.class_names}
        G = generator_from(meta, self.state).to(device)
        judge = None
        if self.judge is not None:
            from ganray.metrics.domain import classifier_from_state

            clf = classifier_from_state(self.judge["state"], self.image_shape, len(self.class_names)).to(device).eval()
            judge = _probabilities(clf)
        return GeneratedShards(G, self.plan, self.class_names, self.identity, self.batch_size, judge, self.min_confidence,
                               self.png_level, self.latent_scale)


def _png(level: int) -> dict[str, int]:
    """The PNG level joins an output's identity only when it is not the default, so outputs written
    before the setting existed keep their identity and still resume."""
    return {} if level == PNG_LEVEL else {"png_compress_level": level}


def _probabilities(clf: nn.Module):
    def judge(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(clf(x), dim=1)

    return judge


def generate(cfg: Config, loaded: LoadedGenerator) -> OutputSummary:
    """Shards of `generate.num_samples` samples from an exported (or run's) generator."""
    from ganray.generation.manifest import identity_hash

    g, info = cfg.generate, loaded.info
    class_names = tuple(info["class_names"])
    if not loaded.G.num_classes:
        raise GanrayError(
            "the generator is unconditional, so its samples would have no labels; generate from a conditional model (model.arch=cdcgan)"
        )
    store = open_store(_out(cfg), cfg.storage)
    plan = ShardPlan.build(g.num_samples, g.shard_size, g.seed, _proportions(cfg, len(class_names)))
    identity: dict[str, Any] = {
        "source": "generate",
        "generator": loaded.fingerprint,
        "seed": g.seed,
        "num_samples": g.num_samples,
        "shard_size": g.shard_size,
        "class_counts": list(plan.counts),
        "min_confidence": g.min_confidence,
        **_png(g.png_compress_level),
        # Like the PNG level: part of the identity only when set, so earlier outputs keep theirs.
        **({"latent_scale": g.latent_scale} if g.latent_scale != 1.0 else {}),
    }
    judge = None
    if g.min_confidence > 0:
        judge = _judge_payload(cfg, info)
    factory = GeneratorFactory(
        info["model"], tuple(info["image_shape"]), class_names,
        {k: v.detach().cpu() for k, v in loaded.G.state_dict().items()},
        plan, identity_hash(identity), g.batch_size, judge, g.min_confidence, g.png_compress_level, g.latent_scale,
    )
    return write_output(cfg, store, plan, identity, list(class_names), factory)


def _judge_payload(cfg: Config, info: dict) -> dict:
    """The domain classifier of the generator's own training data, shipped to the actors."""
    from ganray.metrics.evaluator import domain_payload, prepare_domain

    splits = load_splits(cfg.data, cfg.storage)
    if splits.train.fingerprint() != info.get("data_fingerprint"):
        raise GanrayError(
            "generate.min_confidence needs the generator's training data to judge samples, but data.* describes "
            "other data; set data.* to the dataset the generator was trained on"
        )
    return domain_payload(prepare_domain(cfg, splits))


@dataclass(frozen=True)
class AugmentFactory:
    data: ImageDataset
    plan: ShardPlan
    copies: int
    ops: tuple[str, ...]
    identity: str
    png_level: int

    def __call__(self, device: torch.device) -> AugmentedShards:
        return AugmentedShards(self.data, self.plan, self.copies, list(self.ops), self.identity, self.png_level)


def augment(cfg: Config) -> OutputSummary:
    """The real train split plus `generate.augment_copies` transformed copies of each image."""
    from ganray.generation.manifest import identity_hash

    g = cfg.generate
    data = load_splits(cfg.data, cfg.storage).train
    store = open_store(_out(cfg), cfg.storage)
    total = len(data) * (g.augment_copies + 1)
    counts = [int((data.labels == c).sum()) * (g.augment_copies + 1) for c in range(data.num_classes)]
    plan = ShardPlan(total, g.shard_size, g.seed, tuple(counts))
    identity: dict[str, Any] = {
        "source": "augment",
        "generator": None,
        "data": data.fingerprint(),
        "seed": g.seed,
        "shard_size": g.shard_size,
        "copies": g.augment_copies,
        "ops": list(g.augment_ops),
        **_png(g.png_compress_level),
    }
    factory = AugmentFactory(data, plan, g.augment_copies, tuple(g.augment_ops), identity_hash(identity), g.png_compress_level)
    return write_output(cfg, store, plan, identity, list(data.class_names), factory)
