"""The default feature extractor: a classifier trained on the dataset's own real train split.

Nothing can be downloaded, and ImageNet features say little about 28x28 digits anyway, so the
metrics default to features of a small CNN trained on the real data. It is trained once per
(dataset fingerprint, training settings) and cached as safetensors, so every evaluation of
every run on that dataset measures with the same ruler.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ganray.data.base import ImageDataset
from ganray.errors import GanrayError
from ganray.fileio import check_cache_dir
from ganray.metrics.classifier import ClassifierConfig, SmallCNN, accuracy, train_classifier

log = logging.getLogger(__name__)

# Bump when SmallCNN or its training changes, so old cached classifiers are not reused.
_VERSION = 2


@dataclass(frozen=True)
class DomainClassifier:
    model: SmallCNN
    key: str  # names the extractor in torch-fidelity and keys the real-statistics cache
    test_accuracy: float | None


def _key(data: ImageDataset, cfg: ClassifierConfig) -> str:
    spec = json.dumps([_VERSION, data.fingerprint(), cfg.steps, cfg.batch_size, cfg.lr, cfg.seed, cfg.shift])
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def _build(data: ImageDataset) -> SmallCNN:
    c, h, _ = data.shape
    return SmallCNN(c, data.num_classes, h)


def domain_classifier(
    train: ImageDataset, cache_dir: str | Path, steps: int = 500, seed: int = 0, test: ImageDataset | None = None
) -> DomainClassifier:
    """Load the cached classifier for this training data, or train and cache it."""
    if train.num_classes < 2:
        log.warning(
            "the real data has one class: the domain extractor (a classifier of its classes) learns nothing, so "
            "FID/KID/precision/recall on it mean little; use eval.extractor=inception with local weights"
        )
    cfg = ClassifierConfig(steps=steps, seed=seed)
    key = _key(train, cfg)
    path = check_cache_dir(cache_dir) / "classifiers" / f"{key}.safetensors"
    model = _build(train)
    if path.is_file():
        try:
            model.load_state_dict(load_file(path))
            model.eval()
            acc = json.loads(path.with_suffix(".json").read_text()).get("test_accuracy")
            return DomainClassifier(model, key, acc)
        except Exception as e:  # noqa: BLE001 - a damaged cache entry is retrained, never trusted
            log.warning("domain classifier cache %s is unreadable (%s); retraining", path, type(e).__name__)
    if len(train) < 2 * train.num_classes:
        raise GanrayError(
            f"{len(train)} real training images are too few to train the domain classifier "
            f"({train.num_classes} classes); use more data or eval.extractor=inception"
        )
    log.info("training the domain classifier on %d real images (cached afterwards as %s)", len(train), key)
    model = train_classifier(train.images, train.labels, train.num_classes, cfg, progress="domain classifier")
    acc = accuracy(model, test.images, test.labels) if test is not None and len(test) else None
    if acc is not None:
        log.info("domain classifier test accuracy %.4f", acc)
    save_state(model, path, {"test_accuracy": acc, "data_fingerprint": train.fingerprint(), "steps": steps, "seed": seed})
    return DomainClassifier(model, key, acc)


def save_state(model: torch.nn.Module, path: Path, info: dict) -> None:
    """Write weights + a JSON sidecar atomically: concurrent evaluators may race to fill the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    side = path.with_suffix(".json")
    side_tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    side_tmp.write_text(json.dumps(info, sort_keys=True))
    os.replace(side_tmp, side)
    os.replace(tmp, path)


def classifier_from_state(state: dict[str, torch.Tensor], shape: tuple[int, int, int], num_classes: int) -> SmallCNN:
    """Rebuild a classifier shipped to a Ray worker as a state dict."""
    model = SmallCNN(shape[0], num_classes, shape[1])
    model.load_state_dict(state)
    return model.eval()
