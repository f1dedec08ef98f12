"""Training without Ray, in this process: the same loop and run-dir layout, for tests and baselines."""

from __future__ import annotations

from pathlib import Path

from ganray.config import Config
from ganray.data import load_splits
from ganray.metrics.evaluator import loop_evaluate
from ganray.runs.export import export_generator
from ganray.training.hooks import LocalHooks
from ganray.training.loop import Worker, train_gan
from ganray.runs.lock import run_lock
from ganray.runs.run_dir import RunDir, load_latest, prepare_run_dir, truncate_metrics
from ganray.training.state import GANState


def train_local(cfg: Config, run_dir: Path, worker: Worker = Worker()) -> GANState:
    run = RunDir.at(run_dir, cfg.storage)
    with run_lock(run):
        return _train(cfg, run, worker)


def _train(cfg: Config, run: RunDir, worker: Worker) -> GANState:
    prepare_run_dir(run, cfg)
    splits = load_splits(cfg.data, cfg.storage)
    data = splits.train
    found = load_latest(run)
    resume = found[0] if found else None
    if resume is not None:
        truncate_metrics(run, int(resume["step"]))
    evaluate = loop_evaluate(cfg, splits, worker.device) if worker.rank == 0 else None
    state = train_gan(cfg, data, LocalHooks(run, worker.rank, cfg, data), worker, resume, evaluate)
    if worker.rank == 0:
        export_generator(run)
    return state
