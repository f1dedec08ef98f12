"""Ray Train around the plain loop: a TorchTrainer whose workers call `train_gan`.

Checkpoints go through Ray Train (`ray.train.report`) into <run>/checkpoints, on local disk or,
through a pyarrow filesystem, on S3. Ray's own failure handling restarts workers from the latest
one, and a new `fit()` with the same RunConfig(name, storage_path) resumes a stopped run at its
step (Train V2 has no `resume_from_checkpoint`).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from ganray.fileio import temp_dir
from ganray.storage.local import no_space
from ganray.config import Config
from ganray.data import load_splits
from ganray.errors import user_error
from ganray.log import setup_logging
from ganray.ray_session import ensure_ray
from ganray.metrics.evaluator import domain_payload, prepare_domain
from ganray.metrics.extractors import inception
from ganray.models import build_models, class_weight
from ganray.runs.checkpoint import checkpoint_name, save_checkpoint
from ganray.runs.export import export_generator
from ganray.training.failure_policy import fail_fast_on_user_errors
from ganray.training.hooks import BaseHooks
from ganray.training.host import run_loop, worker_threads
from ganray.training.loop import Worker
from ganray.training.rendezvous import torch_config
from ganray.runs.run_dir import (
    CHECKPOINTS,
    RunDir,
    checkpoint_names,
    load_latest,
    prepare_run_dir,
    prune_checkpoints,
    read_metrics,
    resolve_run_dir,
)
from ganray.runs.lock import run_lock
from ganray.runs.selection import protected
from ganray.training.state import GANState

log = logging.getLogger(__name__)

HEADROOM = 1 << 20  # bytes left free beside a checkpoint: metrics lines, sample grids, Ray's index


class RayHooks(BaseHooks):
    def checkpoint(self, step: int, state: GANState, metrics: dict) -> None:
        report = {"step": step, **metrics}
        self.writer.flush()  # metrics up to this checkpoint are durable before it is
        with temp_dir("ckpt") as tmp:
            ckpt = None
            if self.rank == 0:
                save_checkpoint(tmp, state.state_dict(), self.meta)
                check_room(self.run, Path(tmp))
                ckpt = Checkpoint.from_directory(tmp)
            # A barrier on all ranks; Ray Train persists rank 0's directory.
            ray.train.report(report, checkpoint=ckpt, checkpoint_dir_name=checkpoint_name(step))
        self.prune()  # persisted by now; Ray Train keeps every checkpoint (num_to_keep=None), ganray prunes


def check_room(run: RunDir, staged: Path) -> None:
    """Refuse a checkpoint the run's disk cannot hold, before Ray copies it there.

    Ray Train copies the staged directory under its final name; on a full disk that leaves a torn
    `state.pt` where a checkpoint should be, and a traceback retried `ray.max_failures` times. This
    says "no space left on <run dir>" once, and the rerun resumes from the last whole checkpoint.
    """
    if run.local is None:
        return
    need = sum(f.stat().st_size for f in staged.rglob("*") if f.is_file())
    if shutil.disk_usage(run.local).free < need + HEADROOM:
        raise no_space(run.local)


def _resume_state(run: RunDir, rank: int, world: int) -> dict | None:
    """The newest loadable checkpoint in the run dir, the same one on every rank.

    Not only Ray Train's latest: a worker killed right after persisting a checkpoint can die
    before the controller registers it, and `get_checkpoint()` then returns an older one or
    none at all (seen with a SIGKILL: the group restarted from step 0 with step 40 on disk).
    Every checkpoint directory is verified by its checksum, so the newest that loads is safe.
    Rank 0 chooses and broadcasts, so all ranks load the same step.
    """
    ckpt = ray.train.get_checkpoint()
    registered = PurePosixPath(ckpt.path).name if ckpt is not None else None
    chosen: list[str | None] = [None]
    if rank == 0:
        candidates = sorted({*checkpoint_names(run), *([registered] if registered else [])}, reverse=True)
        found = load_latest(run, candidates)
        chosen = [found[2].rsplit("/", 1)[-1] if found else None]
    if world > 1:
        dist.broadcast_object_list(chosen, src=0)
    if rank != 0:
        found = load_latest(run, [chosen[0]]) if chosen[0] else None
    if found is None:
        return None
    state, _, where = found
    if registered is not None and not where.endswith(registered):
        log.info("Ray Train registered %s; resuming from the newer or only loadable %s", registered, where)
    else:
        log.info("resuming from checkpoint %s", where)
    return state


def _train_worker(config: dict) -> None:
    setup_logging(worker=True)
    cfg = Config.model_validate(config["cfg"])
    run: RunDir = config["run"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    log.info("worker %d/%d on node %s", rank, world, ray.get_runtime_context().get_node_id()[:12])
    worker_threads(cfg)
    device = ray.train.torch.get_device() if cfg.ray.use_gpu else torch.device("cpu")
    run_loop(cfg, Worker(rank, world, device), lambda data: RayHooks(run, rank, cfg, data), _resume_state(run, rank, world),
             run, config.get("domain"))


@dataclass(frozen=True)
class TrainOutcome:
    run: RunDir
    checkpoint: str | None  # where the final checkpoint is (a path or an s3:// URI)
    resumed: bool
    generator: str | None = None  # <run>/generator, exported from the final checkpoint


def train_with_ray(cfg: Config) -> TrainOutcome:
    """Train with Ray Train; resumes when the run dir already holds a compatible run."""
    if cfg.ray.use_gpu is False and cfg.train.amp == "bf16":
        log.warning("train.amp=bf16 applies on GPU only; training in float32")
    # Fail fast on bad data or model settings: a worker's error would cost a Ray start and retries.
    splits = load_splits(cfg.data, cfg.storage)
    data = splits.train
    build_models(cfg.model, data.shape, data.num_classes, classifier_head=class_weight(cfg.model, cfg.loss) > 0)
    loop_config: dict = {"cfg": cfg.model_dump()}
    if cfg.eval.every > 0:
        # Resolve the extractor here, once: workers get the driver's exact classifier (or a checked weights file).
        if cfg.eval.extractor == "domain":
            loop_config["domain"] = domain_payload(prepare_domain(cfg, splits))
        else:
            inception(cfg.eval.inception_weights or "")
    run = resolve_run_dir(cfg)
    with run_lock(run):  # one writer per run dir; refused before Ray starts
        return _fit(cfg, run, loop_config)


RAY_SNAPSHOT = f"{CHECKPOINTS}/checkpoint_manager_snapshot.json"  # Ray Train V2's record of the checkpoints it registered


def forget_pruned_checkpoints(run: RunDir) -> list[str]:
    """Drop the checkpoints ganray pruned from Ray Train's snapshot; returns their names.

    Ray Train V2 lists every checkpoint it registered (`num_to_keep=None`: ganray prunes, see
    `prune_checkpoints`) and refuses to resume when one of them is gone ("a corrupted run
    directory"), so a run with more checkpoints than `train.keep_checkpoints` could not be
    resumed. The snapshot's format is Ray's (2.60); fields this does not know are kept as they are.
    """
    store = run.store
    if not store.exists(RAY_SNAPSHOT):
        return []
    snap = json.loads(store.read_bytes(RAY_SNAPSHOT))
    present = set(checkpoint_names(run))
    results, indices = snap.get("checkpoint_results", []), snap.get("checkpoint_report_indices", [])
    kept = [i for i, r in enumerate(results) if r.get("checkpoint_dir_name") in present]
    gone = [r.get("checkpoint_dir_name") for i, r in enumerate(results) if i not in kept]
    latest = snap.get("latest_checkpoint_result")
    if not gone and (latest is None or latest.get("checkpoint_dir_name") in present):
        return []
    snap["checkpoint_results"] = [results[i] for i in kept]
    if len(indices) == len(results):
        snap["checkpoint_report_indices"] = [indices[i] for i in kept]
    for key in ("validated_checkpoint_dir_names", "timed_out_validation_checkpoint_dir_names",
                "failed_validation_checkpoint_dir_names"):
        if key in snap:
            snap[key] = [n for n in snap[key] if n in present]
    if latest is not None and latest.get("checkpoint_dir_name") not in present:
        snap["latest_checkpoint_result"] = snap["checkpoint_results"][-1] if snap["checkpoint_results"] else None
    store.write_bytes(RAY_SNAPSHOT, json.dumps(snap).encode())
    return gone


def _fit(cfg: Config, run: RunDir, loop_config: dict) -> TrainOutcome:
    resumed = prepare_run_dir(run, cfg)
    if resumed:
        forget_pruned_checkpoints(run)
    loop_config["run"] = run
    storage_path, filesystem = run.ray_storage()
    ensure_ray(cfg.ray)
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config=loop_config,
        torch_config=torch_config(cfg.ray.use_gpu),
        scaling_config=ScalingConfig(
            num_workers=cfg.ray.num_workers,
            use_gpu=cfg.ray.use_gpu,
            resources_per_worker={"CPU": cfg.ray.cpus_per_worker, **({"GPU": 1} if cfg.ray.use_gpu else {})},
            placement_strategy=cfg.ray.placement.upper(),
        ),
        run_config=RunConfig(
            name=CHECKPOINTS,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            checkpoint_config=CheckpointConfig(num_to_keep=None),
            failure_config=FailureConfig(max_failures=cfg.ray.max_failures),
        ),
    )
    log.info("training %s on %s with %d Ray Train workers into %s", cfg.model.arch, cfg.data.source, cfg.ray.num_workers, run.uri)
    try:
        with fail_fast_on_user_errors():
            result = trainer.fit()
    except SystemExit:
        # Ray Train's own Ctrl-C handler aborts the workers, then calls sys.exit(0) from inside
        # fit(); report it as the interruption it is, so the CLI exits 130 with the resume hint.
        raise KeyboardInterrupt from None
    except ray.train.TrainingFailedError as e:
        user = user_error(e)
        if user is not None:
            raise user from None
        raise
    if result.checkpoint is None:
        return TrainOutcome(run, None, resumed)
    stale = prune_checkpoints(run, cfg.train.keep_checkpoints, protected(read_metrics(run), cfg.export.select))
    if stale:
        log.info("removed checkpoints Ray Train never registered (a worker died first): %s", ", ".join(stale))
    ckpt = run.join(f"{CHECKPOINTS}/{PurePosixPath(result.checkpoint.path).name}")
    return TrainOutcome(run, ckpt, resumed, export_generator(run))
