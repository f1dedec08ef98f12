"""One object that turns a generator (or a set of images) into named metrics.

Built once per process, on the driver for `ganray evaluate` and on rank 0 for periodic
evaluation during training; the extractor and the real-data cache are resolved up front so
each call only samples and extracts features of generated images.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from ganray.config import Config
from ganray.data.base import ImageDataset, Splits
from ganray.errors import GanrayError
from ganray.metrics.domain import DomainClassifier, classifier_from_state, domain_classifier
from ganray.metrics.extractors import Extractor, inception, register_domain
from ganray.metrics.fidelity import compute_metrics
from ganray.metrics.utility import cas_val
from ganray.models.sampling import recalibrate_batchnorm, sample_balanced

log = logging.getLogger(__name__)


@dataclass
class Evaluator:
    cfg: Config
    real: ImageDataset
    real_id: str
    extractor: Extractor
    device: torch.device = torch.device("cpu")
    val: ImageDataset | None = None  # for cas_val: selection metrics read validation, never test

    def evaluate_images(self, images: torch.Tensor) -> dict[str, float]:
        e = self.cfg.eval
        return compute_metrics(
            images, self.real.images, self.real_id, self.extractor, e.metrics, self.cfg.storage.cache_dir,
            kid_subset_size=e.kid_subset_size, kid_subsets=e.kid_subsets, batch_size=e.batch_size,
            seed=e.seed, device=self.device, prc_samples=e.prc_samples,
        )

    def evaluate_generator(self, G: nn.Module, recalibrate: bool = True) -> dict[str, float]:
        """Metrics of `eval.num_samples` class-balanced samples; adds `eval_seconds`."""
        check_classes(G, self.real)
        start = time.perf_counter()
        if recalibrate:
            recalibrate_batchnorm(G, seed=self.cfg.eval.seed)
        images, _ = sample_balanced(G, self.cfg.eval.num_samples, self.cfg.eval.seed, self.cfg.eval.batch_size)
        out = self.evaluate_images(images)
        e = self.cfg.eval
        if self.val is not None and e.cas_samples > 0 and getattr(G, "num_classes", 0):
            out["cas_val"] = cas_val(G, self.val, e.cas_samples, e.cas_steps, e.seed)
        out["eval_seconds"] = time.perf_counter() - start
        return out


def check_classes(G: nn.Module, data: ImageDataset) -> None:
    k = getattr(G, "num_classes", 0)
    if k and k != data.num_classes:
        raise GanrayError(
            f"the generator has {k} classes but the dataset has {data.num_classes}; "
            "evaluate against the dataset the generator was trained on"
        )


def real_split(cfg: Config, splits: Splits) -> ImageDataset:
    return splits.train if cfg.eval.real_split == "train" else splits.test


def prepare_domain(cfg: Config, splits: Splits) -> DomainClassifier:
    return domain_classifier(splits.train, cfg.storage.cache_dir, cfg.eval.classifier_steps, test=splits.test)


def build_evaluator(
    cfg: Config,
    splits: Splits,
    device: torch.device = torch.device("cpu"),
    domain: DomainClassifier | dict | None = None,
) -> Evaluator:
    """`domain` is a trained classifier, or its `{"state", "key"}` shipped to a worker; else trained/cached here."""
    if cfg.eval.extractor == "inception":
        extractor = inception(cfg.eval.inception_weights or "")
    else:
        if isinstance(domain, dict):
            model = classifier_from_state(domain["state"], splits.train.shape, splits.train.num_classes)
            domain = DomainClassifier(model, domain["key"], None)
        elif domain is None:
            domain = prepare_domain(cfg, splits)
        extractor = register_domain(domain.model.to(device), domain.key)
    real = real_split(cfg, splits)
    return Evaluator(cfg, real, f"{cfg.eval.real_split}-{real.fingerprint()}", extractor, device, splits.val)


def loop_evaluate(
    cfg: Config, splits: Splits, device: torch.device, domain: DomainClassifier | dict | None = None
) -> Callable[[nn.Module], dict] | None:
    """The training loop's `evaluate` hook, or None when `eval.every` is 0 (the loop recalibrates G itself)."""
    if cfg.eval.every <= 0:
        return None
    return functools.partial(build_evaluator(cfg, splits, device, domain).evaluate_generator, recalibrate=False)


def domain_payload(domain: DomainClassifier) -> dict:
    """What a Ray worker needs to rebuild the driver's classifier exactly."""
    return {"state": {k: v.detach().cpu() for k, v in domain.model.state_dict().items()}, "key": domain.key}


def evaluate_source(cfg: Config, splits: Splits, source: str, G: nn.Module | None = None, images: ImageDataset | None = None) -> dict:
    """Evaluate a loaded generator or a set of images; the result names its source, extractor and sample count."""
    evaluator = build_evaluator(cfg, splits)
    if G is not None:
        metrics, n = evaluator.evaluate_generator(G, recalibrate=False), cfg.eval.num_samples
    elif images is not None:
        if images.num_classes != splits.train.num_classes:
            raise GanrayError(
                f"the shards have {images.num_classes} classes but the dataset has {splits.train.num_classes}; "
                "evaluate against the dataset they were generated from"
            )
        metrics, n = evaluator.evaluate_images(images.images), len(images)
    else:
        raise ValueError("evaluate_source needs a generator or images")
    return {
        "source": source,
        "extractor": evaluator.extractor.tag,
        # The exact feature network (a domain classifier differs with its data and eval.classifier_steps):
        # two results' metrics compare only when these match.
        "extractor_id": evaluator.extractor.cache_id,
        "real_split": cfg.eval.real_split,
        "num_samples": n,
        "seed": cfg.eval.seed,
        "metrics": metrics,
    }
