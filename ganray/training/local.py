"""Training without Ray, in this process: the same loop and run-dir layout, for tests and baselines."""

from __future__ import annotations

from pathlib import Path

from ganray.config import Config
from ganray.runs.export import export_generator
from ganray.training.hooks import LocalHooks
from ganray.training.host import run_loop
from ganray.training.loop import Worker
from ganray.runs.lock import run_lock
from ganray.runs.run_dir import RunDir, load_latest, prepare_run_dir
from ganray.training.state import GANState


def train_local(cfg: Config, run_dir: Path, worker: Worker = Worker()) -> GANState:
    run = RunDir.at(run_dir, cfg.storage)
    with run_lock(run):
        return _train(cfg, run, worker)


def _train(cfg: Config, run: RunDir, worker: Worker) -> GANState:
    prepare_run_dir(run, cfg)
    found = load_latest(run)
    state = run_loop(cfg, worker, lambda data: LocalHooks(run, worker.rank, cfg, data), found[0] if found else None, run)
    if worker.rank == 0:
        export_generator(run)
    return state
