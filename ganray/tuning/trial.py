"""One Tune trial: the plain training loop in a function trainable that checkpoints through Tune.

A function trainable (not a TorchTrainer per trial) because PBT's exploit step and
`Tuner.restore` both need Tune-level checkpoints, which a TorchTrainer inside a trial does not
leave. Each trial gets `ray.cpus_per_worker` CPUs (and `tune.gpus_per_trial` GPUs on a GPU
cluster), the same resources as one Ray Train worker.

Every evaluation is one Tune report, paired with a checkpoint of that step, so the scheduler
compares trials on FID at equal steps (`time_attr="step"`) and any report can be resumed from.
"""

from __future__ import annotations

from dataclasses import dataclass

import logging
from pathlib import Path
from typing import Any

import ray.tune
import torch

from ganray.fileio import temp_dir
from ganray.config import Config
from ganray.data.base import ImageDataset
from ganray.log import setup_logging
from ganray.metrics.names import headline, metric_name
from ganray.runs.checkpoint import load_checkpoint, save_checkpoint
from ganray.training.hooks import checkpoint_meta
from ganray.training.host import run_loop, worker_threads
from ganray.training.loop import Worker
from ganray.training.state import GANState
from ganray.tuning.space import apply_params

log = logging.getLogger(__name__)

TIME_ATTR = "step"  # schedulers compare trials at equal training steps, not equal report counts


@dataclass(frozen=True)
class Objective:
    """What a sweep optimizes: `tune.metric` as the name trials report, and its direction."""

    name: str
    mode: str  # "min" or "max"

    def sort_value(self, value: float) -> float:
        """Ascending order puts the best first."""
        return value if self.mode == "min" else -value


def objective(cfg: Config) -> Objective:
    """FID in the configured extractor's feature space (minimized), or cas_val on validation (maximized)."""
    if cfg.tune.metric == "cas_val":
        return Objective("cas_val", "max")
    return Objective(metric_name("fid", "inception" if cfg.eval.extractor == "inception" else "domain"), "min")


def trial_config(base: Config, params: dict[str, Any]) -> Config:
    """The trial's training config: checkpoints fall on evaluations, so every report can be resumed."""
    cfg = apply_params(base, params)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"checkpoint_every": cfg.eval.every})})


class TuneHooks:
    """Loop hooks that turn each evaluated checkpoint into one `ray.tune.report`."""

    def __init__(self, cfg: Config, data: ImageDataset) -> None:
        self.meta = checkpoint_meta(cfg, data)
        self.total = cfg.train.steps
        self.grid: bytes | None = None

    def log(self, step: int, metrics: dict) -> None:
        scores = headline(metrics)
        if scores:
            log.info("step %d/%d  %s", step, self.total, "  ".join(f"{k} {v:.4g}" for k, v in sorted(scores.items())))

    def samples(self, step: int, png: bytes) -> None:
        self.grid = png

    def checkpoint(self, step: int, state: GANState, metrics: dict) -> None:
        with temp_dir("trial") as tmp:
            save_checkpoint(tmp, state.state_dict(), self.meta)
            if self.grid is not None:
                (Path(tmp) / "samples.png").write_bytes(self.grid)
            ray.tune.report({TIME_ATTR: step, **metrics}, checkpoint=ray.tune.Checkpoint.from_directory(tmp))

    def close(self) -> None:
        """Nothing to release: Tune writes each trial's TensorBoard files (its TBX logger) itself."""


def _resume_state() -> dict | None:
    """The checkpoint Tune hands back: after a restore, a retry, or PBT's exploit of a better trial."""
    ckpt = ray.tune.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        state, meta = load_checkpoint(d)
    log.info("trial resumes from step %d", int(meta["step"]))
    return state


def run_trial(params: dict[str, Any], base: dict, domain: dict | None) -> None:
    """The Tune trainable: `params` are the sampled dotted keys, `base` the sweep's config."""
    setup_logging(worker=True)
    cfg = trial_config(Config.model_validate(base), params)
    worker_threads(cfg)
    device = torch.device("cuda") if cfg.ray.use_gpu and torch.cuda.is_available() else torch.device("cpu")
    run_loop(cfg, Worker(0, 1, device), lambda data: TuneHooks(cfg, data), _resume_state(), domain=domain)
