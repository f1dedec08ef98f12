"""What every training host runs in its process: the same start-up around the same loop.

Ray Train workers (`ray_train`), Tune trials (`tuning.trial`) and local runs (`local`) differ
only in where outputs go (their `Hooks`) and where a resume state comes from; everything else,
from the data to the evaluator, starts here, so the three cannot drift apart.
"""

from __future__ import annotations

from typing import Callable

import torch

from ganray.config import Config
from ganray.data import load_splits
from ganray.data.base import ImageDataset
from ganray.metrics.evaluator import loop_evaluate
from ganray.runs.run_dir import RunDir, truncate_metrics
from ganray.training.loop import Hooks, Worker, train_gan
from ganray.training.state import GANState


def worker_threads(cfg: Config) -> None:
    """A worker process uses the CPUs Ray reserved for it, not every core of the node."""
    torch.set_num_threads(cfg.train.threads_per_worker or max(1, int(cfg.ray.cpus_per_worker)))


def run_loop(
    cfg: Config,
    worker: Worker,
    make_hooks: Callable[[ImageDataset], Hooks],
    resume: dict | None,
    run: RunDir | None = None,
    domain: dict | None = None,
) -> GANState:
    """Load the data, rewind `run`'s metrics to a resumed step, build rank 0's evaluator, train.

    `domain` is the driver's domain classifier (a payload), so every host scores with the same one.
    """
    splits = load_splits(cfg.data, cfg.storage)
    if run is not None and resume is not None and worker.rank == 0:
        truncate_metrics(run, int(resume["step"]))
    evaluate = loop_evaluate(cfg, splits, worker.device, domain) if worker.rank == 0 else None
    hooks = make_hooks(splits.train)
    try:
        return train_gan(cfg, splits.train, hooks, worker, resume, evaluate)
    finally:
        hooks.close()
