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
from ganray.generation.search import Searched
from ganray.generation.shard import PNG_LEVEL
from ganray.generation.writer import OutputSummary, write_output
from ganray.metrics.recipes import JUDGE, REAL, Budget, Fits, teacher_in_use, teacher_recipe
from ganray.storage import Store, open_store
from ganray.runs.export import LoadedGenerator, generator_from

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

    members: tuple[tuple[dict, dict[str, torch.Tensor]], ...]  # (model config, weights) of each ensemble member
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    plan: ShardPlan
    identity: str
    batch_size: int
    judge: dict | None  # domain classifier payload {"state", "key"} when filtering or adding soft labels
    min_confidence: float
    png_level: int
    latent_scale: float = 1.0
    soft_labels: bool = False
    teacher: tuple[dict[str, torch.Tensor], ...] | None = None  # the teacher recipe's classifiers' states (generate.teacher)
    uncertain_share: float = 0.0

    def __call__(self, device: torch.device) -> GeneratedShards:
        meta = {"image_shape": self.image_shape, "class_names": self.class_names}
        members = tuple(generator_from({**meta, "model": model}, state).to(device) for model, state in self.members)
        judge = _judge(self.judge, self.image_shape, len(self.class_names), device) if self.judge is not None else None
        teacher = _mean_probabilities(self.teacher, self.image_shape, len(self.class_names), device) if self.teacher else None
        return GeneratedShards(members[0] if len(members) == 1 else members, self.plan, self.class_names, self.identity,
                               self.batch_size, judge, self.min_confidence, self.png_level, self.latent_scale, self.soft_labels,
                               teacher, self.uncertain_share)


def _png(level: int) -> dict[str, int]:
    """The PNG level joins an output's identity only when it is not the default, so outputs written
    before the setting existed keep their identity and still resume."""
    return {} if level == PNG_LEVEL else {"png_compress_level": level}


def _judge(payload: dict, image_shape: tuple[int, int, int], k: int, device: torch.device):
    """Class probabilities of images in [-1, 1], from the domain classifier's payload."""
    return _mean_probabilities([payload["state"]], image_shape, k, device)


def _mean_probabilities(states, image_shape: tuple[int, int, int], k: int, device: torch.device):
    """The mean class probabilities of images in [-1, 1] over the classifiers with these states."""
    from ganray.metrics.domain import classifier_from_state

    models = [classifier_from_state(state, image_shape, k).to(device).eval() for state in states]

    def probabilities(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([torch.softmax(m(x), dim=1) for m in models]).mean(0)

    return probabilities


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


@dataclass(frozen=True)
class Settings:
    """The generation recipe an output is written with, after `auto` values are resolved."""

    latent_scale: float
    min_confidence: float
    judge: dict | None  # the domain classifier's payload, when filtering or it teaches
    search: Searched | None  # the validation search, when anything was `auto`
    teacher: tuple[dict[str, torch.Tensor], ...] | None = None  # a recipe's classifiers, when generate.teacher names one


def _teaches(g) -> str | None:
    """Who labels or picks samples (`generate.teacher`), when soft labels or an uncertain pick need one."""
    return teacher_in_use(g.teacher, g.soft_labels, g.uncertain_share)


def _teacher_identity(cfg: Config) -> dict[str, Any]:
    """What a teacher adds to an output's identity: only when one teaches, so earlier outputs keep theirs."""
    g, who = cfg.generate, _teaches(cfg.generate)
    out: dict[str, Any] = {"uncertain_share": g.uncertain_share} if g.uncertain_share > 0 else {}
    if who not in (None, JUDGE):
        out["teacher"] = {"name": who, "seeds": list(cfg.eval.report_seeds), "steps": cfg.eval.recipe_steps,
                          "augment": cfg.eval.recipe_augment}
        if who != REAL:  # a student teacher also draws from the generator: the report's synthetic cap
            out["teacher"]["samples"] = cfg.eval.report_samples
    return out


def resolve_settings(cfg: Config, members: list[LoadedGenerator], store: Store) -> Settings:
    """Load the judge when a setting needs it and search `auto` settings on validation."""
    from ganray.generation.search import SearchBudget, is_auto, search_generation

    g, info = cfg.generate, members[0].info
    auto = [k for k in ("latent_scale", "min_confidence") if is_auto(getattr(g, k))]
    who = _teaches(g)
    if who is not None:
        teacher_recipe(who)
        if who != REAL and len(members) > 1:
            raise GanrayError(f"generate.teacher={who} trains its classifiers on one generator's samples; "
                              "generate from one --generator, or use generate.teacher=real")
    needs_judge = who == JUDGE or is_auto(g.min_confidence) or g.min_confidence > 0
    if not auto and not needs_judge and who is None:
        return Settings(g.latent_scale, g.min_confidence, None, None)
    uses = [f"generate.{k}={getattr(g, k)}" for k in ("latent_scale", "min_confidence", "soft_labels", "uncertain_share")
            if getattr(g, k) not in (1.0, 0.0, False)]
    splits = _generator_splits(cfg, info, " and ".join(uses))
    judge = domain_payload_of(cfg, splits) if needs_judge else None
    teacher = teacher_of(cfg, splits, who, members[0].G) if who not in (None, JUDGE) else None
    if not auto:
        return Settings(g.latent_scale, g.min_confidence, judge, None, teacher)
    if splits.val is None or not len(splits.val):
        raise GanrayError("auto generation settings are searched on the validation split; set data.val_fraction above 0")
    store.check_writable()  # an unwritable output fails before a search of minutes, not after it
    log.info("searching %s on the validation split (%d images)", " and ".join(auto), len(splits.val))
    shape, k = tuple(info["image_shape"]), len(info["class_names"])
    found = search_generation(
        [m.G for m in members], splits.val, g.latent_scale, g.min_confidence,
        SearchBudget(cfg.eval.cas_samples or 2000, cfg.eval.cas_steps),
        _judge(judge, shape, k, torch.device("cpu")) if judge is not None else None,
        progress=lambda what: log.info("scoring %s on validation", what),
    )
    log.info("chosen on validation: latent_scale=%s min_confidence=%s", found.latent_scale, found.min_confidence)
    return Settings(found.latent_scale, found.min_confidence, judge, found, teacher)


def generate(cfg: Config, loaded: LoadedGenerator | list[LoadedGenerator]) -> OutputSummary:
    """Shards of `generate.num_samples` samples from an exported (or run's) generator, or an ensemble of them."""
    from ganray.generation.manifest import identity_hash

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
    settings = resolve_settings(cfg, members, store)
    fingerprints = [m.fingerprint for m in members]
    identity: dict[str, Any] = {
        "source": "generate",
        "generator": fingerprints[0] if len(members) == 1 else fingerprints,
        "seed": g.seed,
        "num_samples": g.num_samples,
        "shard_size": g.shard_size,
        "class_counts": list(plan.counts),
        "min_confidence": settings.min_confidence,
        **_png(g.png_compress_level),
        # Like the PNG level: part of the identity only when set, so earlier outputs keep theirs.
        **({"latent_scale": settings.latent_scale} if settings.latent_scale != 1.0 else {}),
        **({"soft_labels": True} if g.soft_labels else {}),
        **_teacher_identity(cfg),
    }
    recipe = {
        "generators": fingerprints, "latent_scale": settings.latent_scale, "min_confidence": settings.min_confidence,
        "soft_labels": g.soft_labels, "teacher": _teaches(g), "uncertain_share": g.uncertain_share,
        "searched_on": "val" if settings.search else None, "search": settings.search.table if settings.search else [],
    }
    judge = settings.judge if settings.min_confidence > 0 or _teaches(g) == "judge" else None
    factory = GeneratorFactory(
        tuple((m.info["model"], {k: v.detach().cpu() for k, v in m.G.state_dict().items()}) for m in members),
        tuple(info["image_shape"]), class_names, plan, identity_hash(identity), g.batch_size, judge,
        settings.min_confidence, g.png_compress_level, settings.latent_scale, g.soft_labels, settings.teacher, g.uncertain_share,
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


def teacher_of(cfg: Config, splits, name: str, G: torch.nn.Module) -> tuple[dict[str, torch.Tensor], ...]:
    """The report's classifiers of recipe `name` (its seeds, steps and synthetic cap) on the generator's
    own training data and samples, shipped to the actors: the same teacher the report's recipe had."""
    e = cfg.eval
    log.info("training the teacher: recipe %s's %d classifiers of %d steps (x its steps_factor) on %d real images",
             name, len(e.report_seeds), e.recipe_steps, len(splits.train))
    models = Fits(G, splits.train, Budget.of(e)).models(name)
    return tuple({k: v.detach().cpu() for k, v in m.state_dict().items()} for m in models)


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
