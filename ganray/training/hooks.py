"""Loop hooks: where metrics, sample grids and checkpoints go, with and without Ray."""

from __future__ import annotations

import logging
from typing import Any

from ganray.config import Config
from ganray.data.base import ImageDataset
from ganray.errors import GanrayError
from ganray.metrics.names import headline
from ganray.runs.checkpoint import checkpoint_name, save_checkpoint
from ganray.runs.run_dir import CHECKPOINTS, RunDir, RunWriter, prune_checkpoints, read_metrics
from ganray.runs.selection import protected
from ganray.training.state import GANState

log = logging.getLogger(__name__)


def checkpoint_meta(cfg: Config, data: ImageDataset) -> dict[str, Any]:
    """What a checkpoint must carry to be exported or generated from without the dataset."""
    return {
        "arch": cfg.model.arch,
        "model": cfg.model.model_dump(),
        "image_shape": list(data.shape),
        "class_names": list(data.class_names),
        "data_fingerprint": data.fingerprint(),
        "data_source": cfg.data.source,
    }


class BaseHooks:
    def __init__(self, run: RunDir, rank: int, cfg: Config, data: ImageDataset) -> None:
        self.writer = RunWriter(run, rank)
        self.run, self.rank, self.total = run, rank, cfg.train.steps
        self.meta = checkpoint_meta(cfg, data)
        self.keep, self.select = cfg.train.keep_checkpoints, cfg.export.select
        # Scores so far (a resumed run's metrics.jsonl is already truncated to its step): selection's memory.
        self.scores = [{"step": m["step"], **headline(m)} for m in read_metrics(run)] if rank == 0 else []

    def log(self, step: int, metrics: dict) -> None:
        self.writer.metrics(step, metrics)
        if self.rank == 0 and headline(metrics):
            self.scores.append({"step": step, **headline(metrics)})
        if self.rank == 0:
            log.info(
                "step %d/%d  loss_d %.3f  loss_g %.3f  D(real) %.2f  D(fake) %.2f  %.0f img/s",
                step, self.total, metrics["loss_d"], metrics["loss_g"], metrics["d_real"], metrics["d_fake"],
                metrics["img_per_s"],
            )
            scores = headline(metrics)
            if scores:
                log.info("step %d/%d  %s", step, self.total, "  ".join(f"{k} {v:.4g}" for k, v in sorted(scores.items())))

    def samples(self, step: int, png: bytes) -> None:
        self.writer.samples(step, png)

    def close(self) -> None:
        self.writer.close()

    def prune(self) -> None:
        """Keep the newest `train.keep_checkpoints` and the one export selection currently prefers."""
        if self.rank == 0:
            prune_checkpoints(self.run, self.keep, protected(self.scores, self.select))


class LocalHooks(BaseHooks):
    """Checkpoints straight into <run>/checkpoints, for runs without Ray on local disk (tests, baselines)."""

    def __init__(self, run: RunDir, rank: int, cfg: Config, data: ImageDataset) -> None:
        super().__init__(run, rank, cfg, data)
        if run.local is None:
            raise GanrayError("training without Ray writes to a local run dir only; use ganray train for S3")
        self.ckpt_root = run.local / CHECKPOINTS

    def checkpoint(self, step: int, state: GANState, metrics: dict) -> None:
        if self.rank != 0:
            return
        self.writer.flush()
        save_checkpoint(self.ckpt_root / checkpoint_name(step), state.state_dict(), self.meta)
        self.prune()
