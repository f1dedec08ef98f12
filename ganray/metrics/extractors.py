"""Feature extractors, registered with torch-fidelity so its own metric code does the measuring.

Two kinds: the domain classifier (default; see `domain.py`) and torch-fidelity's
`inception-v3-compat` from a local weights file. Each carries a `tag` that goes into every
metric name (`fid_domain`, `fid_inception`), because FIDs from different feature spaces are
different quantities and must never be compared as if they were one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from ganray.data.base import to_unit
from ganray.errors import GanrayError
from ganray.fileio import sha256_file
from ganray.metrics.classifier import SmallCNN

INCEPTION = "inception-v3-compat"


@dataclass(frozen=True)
class Extractor:
    name: str  # torch-fidelity registry name
    tag: str  # suffix of every metric name it produces
    cache_id: str  # identifies its weights: part of the real-statistics cache key
    channels: int | None = None  # input channels it requires (None: the data's own)
    weights_path: str | None = None


class _DomainFeatures(FeatureExtractorBase):
    """torch-fidelity wrapper of a trained SmallCNN: penultimate features, and logits for IS."""

    network: SmallCNN  # set on the per-classifier subclass made by `register_domain`

    def __init__(self, name: str, features_list: list[str], **kwargs) -> None:
        super().__init__(name, features_list)
        self.net = self.network

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8:
            raise GanrayError(f"the domain extractor takes uint8 images, got {x.dtype}")
        feats = self.net.features(to_unit(x))
        out = {"features": feats, "logits": self.net.head(feats)}
        return tuple(out[k].float() for k in self.features_list)


def register_domain(model: nn.Module, key: str) -> Extractor:
    """Register a trained domain classifier under a name derived from its weights' key."""
    name = f"ganray-domain-{key}"
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        cls = type(f"DomainFeatures_{key}", (_DomainFeatures,), {"network": model.eval()})
        register_feature_extractor(name, cls)
    return Extractor(name=name, tag="domain", cache_id=key)



def inception(weights_path: str) -> Extractor:
    """torch-fidelity's InceptionV3 from a local file, checked before torch-fidelity reads it.

    torch-fidelity loads the file with `weights_only=False`; loading it here first with
    `weights_only=True` guarantees the file holds tensors only, so it cannot execute code.
    """
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise GanrayError(
            f"eval.inception_weights file {str(path)!r} does not exist; give a local copy of torch-fidelity's "
            "pt_inception-2015-12-05 weights (nothing is downloaded)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the same thing to the user
        raise GanrayError(
            f"eval.inception_weights {str(path)!r} is not a tensors-only state dict ({type(e).__name__}); "
            "use torch-fidelity's pt_inception weights file"
        ) from None
    if not isinstance(state, dict) or "fc.weight" not in state or tuple(state["fc.weight"].shape) != (1008, 2048):
        raise GanrayError(
            f"eval.inception_weights {str(path)!r} is not an InceptionV3 (torch-fidelity) state dict; "
            "use torch-fidelity's pt_inception weights file"
        )
    return Extractor(name=INCEPTION, tag="inception", cache_id=sha256_file(path)[:16], channels=3, weights_path=str(path))
