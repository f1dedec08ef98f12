"""IS, FID, KID and precision/recall of generated images against real ones, by torch-fidelity.

The metric code is torch-fidelity's own `calculate_metrics`; this module feeds it in-memory
uint8 images, picks the extractor, sizes KID/IS to the sample count, names the results by
extractor, and points its cache at real-data features keyed by (split, data fingerprint,
extractor weights), so repeated evaluations only extract features of the generated images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch.utils.data import Dataset

from ganray.errors import GanrayError
from ganray.fileio import check_cache_dir
from ganray.metrics.extractors import Extractor
from ganray.metrics.names import RESULT_STEMS, check_metrics, metric_name

log = logging.getLogger(__name__)

MIN_SAMPLES = 20  # below this, IS splits and k-NN precision/recall say nothing



class ImageTensorDataset(Dataset):
    """uint8 NxCxHxW images as torch-fidelity wants them, grey expanded to RGB when needed."""

    def __init__(self, images: torch.Tensor, channels: int | None = None) -> None:
        self.images, self.channels = images, channels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.images[i]
        if self.channels == 3 and x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        return x


def _check_cache(cache_root: Path, prefix: str) -> None:
    """Vet torch-fidelity's cache files before it loads them with `weights_only=False`.

    Each file must load with `weights_only=True` (tensors and numpy arrays only); anything else
    is deleted and recomputed, so a planted pickle in a shared cache can never run.
    """
    if not cache_root.is_dir():
        return
    core = getattr(np, "_core", None) or np.core
    numpy_globals = [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype("float32")), type(np.dtype("float64"))]
    for path in cache_root.glob(f"{prefix}-*.pt"):
        try:
            with torch.serialization.safe_globals(numpy_globals):
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - anything that fails the safe load is discarded
            log.warning("discarding unsafe or damaged cache file %s (%s)", path.name, type(e).__name__)
            path.unlink(missing_ok=True)


def check_compatible(fake: torch.Tensor, real: torch.Tensor) -> None:
    if fake.dtype != torch.uint8 or fake.ndim != 4:
        raise GanrayError(f"generated images must be uint8 NxCxHxW, got {fake.dtype} {tuple(fake.shape)}")
    if tuple(fake.shape[1:]) != tuple(real.shape[1:]):
        raise GanrayError(
            f"generated images are {'x'.join(map(str, fake.shape[1:]))} (CxHxW) but the real data is "
            f"{'x'.join(map(str, real.shape[1:]))}; set data.image_size/data.channels to what the generator was trained on"
        )
    for what, n in (("generated", len(fake)), ("real", len(real))):
        if n < MIN_SAMPLES:
            raise GanrayError(
                f"{n} {what} samples are too few for the metrics (need at least {MIN_SAMPLES}); "
                + ("raise eval.num_samples" if what == "generated" else "use a larger real split")
            )


def _subset(images: torch.Tensor, m: int, seed: int) -> torch.Tensor:
    """`m` of the images, drawn with `seed`; all of them, in order, when there are no more than `m`."""
    if m >= len(images):
        return images
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:m]]


def compute_metrics(
    fake: torch.Tensor,
    real: torch.Tensor,
    real_id: str,
    extractor: Extractor,
    metrics: list[str],
    cache_dir: str | Path,
    kid_subset_size: int = 1000,
    kid_subsets: int = 50,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    prc_samples: int = 5000,
) -> dict[str, float]:
    """Metrics of `fake` against `real` (both uint8 NxCxHxW); `real_id` names the real set in the cache.

    Precision/recall run on a seeded subset of `prc_samples` images per side (equal sizes, as the
    metric's authors use it): its k-NN radii are quadratic in the sample count and were the
    costliest part of a periodic evaluation at 10,000 samples.
    """
    check_metrics(metrics)
    check_compatible(fake, real)
    cache_root = check_cache_dir(cache_dir) / "fidelity"
    real_name = f"real-{real_id}-{extractor.cache_id}"
    _check_cache(cache_root, real_name)
    n = min(len(fake), len(real))
    common = dict(
        cache=True,
        cache_root=str(cache_root),
        cuda=device.type == "cuda",
        batch_size=batch_size,
        feature_extractor=extractor.name,
        rng_seed=seed,
        save_cpu_ram=True,  # no DataLoader worker processes (they would fork inside Ray workers)
        verbose=False,
    )
    if extractor.weights_path:
        common["feature_extractor_weights_path"] = extractor.weights_path
    raw: dict = {}
    if {"isc", "fid", "kid"} & set(metrics):
        raw.update(torch_fidelity.calculate_metrics(
            input1=ImageTensorDataset(fake, extractor.channels),
            input2=ImageTensorDataset(real, extractor.channels),
            input2_cache_name=real_name,
            isc="isc" in metrics,
            fid="fid" in metrics,
            kid="kid" in metrics,
            kid_subset_size=min(kid_subset_size, n),
            kid_subsets=kid_subsets,
            isc_splits=min(10, len(fake) // 2),
            **common,
        ))
    if "prc" in metrics:
        m = min(prc_samples, n)
        raw.update(torch_fidelity.calculate_metrics(
            input1=ImageTensorDataset(_subset(fake, m, seed), extractor.channels),
            # The real subset is fixed (seed 0) so its cached features stay valid for every eval seed.
            input2=ImageTensorDataset(_subset(real, m, 0), extractor.channels),
            input2_cache_name=real_name if m == len(real) else f"{real_name}-prc{m}",
            prc=True,
            **common,
        ))
    return {metric_name(RESULT_STEMS[k], extractor.tag): float(v) for k, v in raw.items() if k in RESULT_STEMS}
