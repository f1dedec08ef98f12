"""`ganray generate` and `ganray augment`: what to render, under which identity, into which store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

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

log = logging.getLogger(__name__)


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
    """Rebuilds the exported generator(s) (and the quality judge) inside each actor."""

    model: dict
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    states: tuple[dict[str, torch.Tensor], ...]  # one per ensemble member
    plan: ShardPlan
    identity: str
    batch_size: int
    judge: dict | None  # domain classifier payload {"state", "key"} when filtering or adding soft labels
    min_confidence: float
    png_level: int
    latent_scale: float = 1.0
    soft_labels: bool = False
    models: tuple[dict, ...] = ()  # per-member model configs when they differ from `model`

    def __call__(self, device: torch.device) -> GeneratedShards:
        members = []
        for i, state in enumerate(self.states):
            meta = {"model": self.models[i] if self.models else self.model, "image_shape": self.image_shape, "class_names": self.class_names}
            members.append(generator_from(meta, state).to(device))
        judge = None
        if self.judge is not None:
            judge = _judge(self.judge, self.image_shape, len(self.class_names), device)
        G = members[0] if len(members) == 1 else tuple(members)
        return GeneratedShards(G, self.plan, self.class_names, self.identity, self.batch_size, judge, self.min_confidence,
                               self.png_level, self.latent_scale, self.soft_labels)


def _png(level: int) -> dict[str, int]:
    """The PNG level joins an output's identity only when it is not the default, so outputs written
    before the setting existed keep their identity and still resume."""
    return {} if level == PNG_LEVEL else {"png_compress_level": level}


def _judge(payload: dict, image_shape: tuple[int, int, int], k: int, device: torch.device):
    """Class probabilities of images in [-1, 1], from the domain classifier's payload."""
    from ganray.metrics.domain import classifier_from_state

    clf = classifier_from_state(payload["state"], image_shape, k).to(device).eval()

    def judge(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(clf(x), dim=1)

    return judge


def check_ensemble(loaded: list[LoadedGenerator]) -> None:
    """Ensemble members must make the same images of the same classes from the same noise size and data."""
    if not loaded:
        raise GanrayError("no generator given; pass --run or --generator")
    first = loaded[0].info
    for other in loaded[1:]:
        o = other.info
        differs = {
            "class names": list(o["class_names"]) != list(first["class_names"]),
            "image shape": list(o["image_shape"]) != list(first["image_shape"]),
            "training data": o.get("data_fingerprint") != first.get("data_fingerprint"),
        }
        for what, bad in differs.items():
            if bad:
                raise GanrayError(
                    f"the generators of an ensemble differ in {what}; ensemble generators trained on the same data.* "
                    "(for example a sweep's top trials or several training seeds)"
                )
        if other.G.z_dim != loaded[0].G.z_dim:
            raise GanrayError("the generators of an ensemble differ in model.z_dim; ensemble generators with one noise size")


def generate(cfg: Config, loaded: LoadedGenerator | list[LoadedGenerator]) -> OutputSummary:
    """Shards of `generate.num_samples` samples from an exported (or run's) generator, or an ensemble of them."""
    from ganray.generation.manifest import identity_hash
    from ganray.generation.search import SearchBudget, is_auto, search_generation

    members = loaded if isinstance(loaded, list) else [loaded]
    check_ensemble(members)
    g, info = cfg.generate, members[0].info
    class_names = tuple(info["class_names"])
    if not members[0].G.num_classes:
        raise GanrayError(
            "the generator is unconditional, so its samples would have no labels; generate from a conditional model (model.arch=cdcgan)"
        )
    store = open_store(_out(cfg), cfg.storage)
    plan = ShardPlan.build(g.num_samples, g.shard_size, g.seed, _proportions(cfg, len(class_names)))
    auto = is_auto(g.latent_scale) or is_auto(g.min_confidence)
    needs_judge = is_auto(g.min_confidence) or g.soft_labels or (not is_auto(g.min_confidence) and g.min_confidence > 0)
    uses = [f"generate.{k}={getattr(g, k)}" for k in ("latent_scale", "min_confidence", "soft_labels") if getattr(g, k) not in (1.0, 0.0, False)]
    splits = _generator_splits(cfg, info, " and ".join(uses)) if needs_judge or auto else None
    judge = domain_payload_of(cfg, splits) if needs_judge else None
    scale, conf, search = g.latent_scale, g.min_confidence, None
    if auto:
        if splits.val is None or not len(splits.val):
            raise GanrayError("auto generation settings are searched on the validation split; set data.val_fraction above 0")
        log.info("searching %s on the validation split (%d images)", ", ".join(
            k for k in ("latent_scale", "min_confidence") if is_auto(getattr(g, k))), len(splits.val))
        device_judge = _judge(judge, tuple(info["image_shape"]), len(class_names), torch.device("cpu")) if judge else None
        search = search_generation(
            [m.G for m in members], splits.val, g.latent_scale, g.min_confidence,
            SearchBudget(cfg.eval.cas_samples or 2000, cfg.eval.cas_steps), device_judge,
            progress=lambda what: log.info("scoring %s on validation", what),
        )
        scale, conf = search.latent_scale, search.min_confidence
        log.info("chosen on validation: latent_scale=%s min_confidence=%s", scale, conf)
    fingerprints = [m.fingerprint for m in members]
    identity: dict[str, Any] = {
        "source": "generate",
        "generator": fingerprints[0] if len(members) == 1 else fingerprints,
        "seed": g.seed,
        "num_samples": g.num_samples,
        "shard_size": g.shard_size,
        "class_counts": list(plan.counts),
        "min_confidence": conf,
        **_png(g.png_compress_level),
        # Like the PNG level: part of the identity only when set, so earlier outputs keep theirs.
        **({"latent_scale": scale} if scale != 1.0 else {}),
        **({"soft_labels": True} if g.soft_labels else {}),
    }
    recipe = {
        "generators": fingerprints, "latent_scale": scale, "min_confidence": conf, "soft_labels": g.soft_labels,
        "searched_on": "val" if search else None, "search": search.table if search else [],
    }
    models = tuple(m.info["model"] for m in members)
    factory = GeneratorFactory(
        info["model"], tuple(info["image_shape"]), class_names,
        tuple({k: v.detach().cpu() for k, v in m.G.state_dict().items()} for m in members),
        plan, identity_hash(identity), g.batch_size, judge if (conf > 0 or g.soft_labels) else None, conf,
        g.png_compress_level, scale, g.soft_labels, models if len(set(map(str, models))) > 1 else (),
    )
    return write_output(cfg, store, plan, identity, list(class_names), factory, {"recipe": recipe})


def _generator_splits(cfg: Config, info: dict, needs: str):
    """The splits of the generator's own training data (the judge's training set and validation)."""
    splits = load_splits(cfg.data, cfg.storage)
    if splits.train.fingerprint() != info.get("data_fingerprint"):
        raise GanrayError(
            f"{needs} {'needs' if ' and ' not in needs else 'need'} the generator's training data, but data.* describes other data; "
            "set data.* to the dataset the generator was trained on"
        )
    return splits


def domain_payload_of(cfg: Config, splits) -> dict:
    """The domain classifier of the generator's own training data, shipped to the actors."""
    from ganray.metrics.evaluator import domain_payload, prepare_domain

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
