"""`auto` generation settings: the latent scale and confidence threshold searched on validation.

A setting is good when its samples train a good classifier, so each candidate is scored the way
`cas_val` scores checkpoints: a classifier trained on its samples only, with a small fixed
budget, and its accuracy on the validation split (never test). The candidates' samples come from
`draw_samples`, the function the shards are rendered with, so what is scored is what is written.

Coordinate search over small grids: the latent scale first (filter off), then the threshold at
that scale. The defaults come first and a candidate must beat the best so far by at least one
validation image on average, so validation noise alone does not move a setting.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ganray.data.base import ImageDataset
from ganray.errors import GanrayError
from ganray.generation.plan import ShardPlan
from ganray.generation.render import Judge, draw_samples
from ganray.metrics.classifier import ClassifierConfig, accuracy, images_ahead, train_classifier

LATENT_SCALES = (1.0, 0.8, 1.25)  # the default first: ties keep it
CONFIDENCES = (0.0, 0.5, 0.9)
SEARCH_SEED = 60_000  # the candidates' noise, apart from any output's seed


@dataclass(frozen=True)
class SearchBudget:
    samples: int  # synthetic images per candidate (eval.cas_samples)
    steps: int  # classifier steps (eval.cas_steps)
    seeds: tuple[int, ...] = (0, 1)


def score_setting(
    members: Sequence[nn.Module], val: ImageDataset, latent_scale: float, min_confidence: float, budget: SearchBudget,
    judge: Judge | None = None,
) -> float | None:
    """Validation accuracy of classifiers trained on this setting's samples only; None if the filter starves."""
    plan = ShardPlan.build(budget.samples, budget.samples, SEARCH_SEED, [1.0] * val.num_classes)
    labels = plan.labels(0)
    try:
        got = draw_samples(
            members, labels, plan.members(0, len(members)), plan.rng(0), latent_scale=latent_scale,
            judge=judge if min_confidence > 0 else None, min_confidence=min_confidence,
        )
    except GanrayError:
        return None
    images, targets = torch.from_numpy(got.images), torch.from_numpy(labels)
    return statistics.fmean(
        accuracy(train_classifier(images, targets, val.num_classes, ClassifierConfig(steps=budget.steps, seed=s)), val.images, val.labels)
        for s in budget.seeds
    )


@dataclass(frozen=True)
class Searched:
    latent_scale: float
    min_confidence: float
    table: list[dict]  # every candidate scored: latent_scale, min_confidence, val_accuracy (None: starved)


def search_generation(
    members: Sequence[nn.Module], val: ImageDataset, latent_scale: float | str, min_confidence: float | str,
    budget: SearchBudget, judge: Judge | None = None, progress: Callable[[str], None] = lambda _: None,
) -> Searched:
    """Resolve each "auto" setting on validation; fixed settings stay as given."""
    if is_auto(min_confidence) and judge is None:
        raise GanrayError("generate.min_confidence=auto needs the domain classifier; this is a bug, please report it")
    scored: dict[tuple[float, float], float | None] = {}  # in the order tried

    def score(scale: float, conf: float) -> float | None:
        if (scale, conf) not in scored:
            progress(f"latent_scale={scale} min_confidence={conf}")
            scored[scale, conf] = score_setting(members, val, scale, conf, budget, judge)
        return scored[scale, conf]

    def best(candidates: list[tuple[float, float]]) -> tuple[float, float]:
        choice, top = candidates[0], score(*candidates[0])
        for c in candidates[1:]:
            value = score(*c)
            if value is not None and (top is None or images_ahead(value, top, len(val)) >= 1):
                choice, top = c, value
        return choice

    scale = LATENT_SCALES[0] if is_auto(latent_scale) else latent_scale
    conf = CONFIDENCES[0] if is_auto(min_confidence) else min_confidence
    if is_auto(latent_scale):
        scale, _ = best([(s, conf) for s in LATENT_SCALES])
    if is_auto(min_confidence):
        _, conf = best([(scale, c) for c in CONFIDENCES])
    table = [{"latent_scale": s, "min_confidence": c, "val_accuracy": v} for (s, c), v in scored.items()]
    return Searched(float(scale), float(conf), table)


def is_auto(value: float | str) -> bool:
    return isinstance(value, str) and value == "auto"

