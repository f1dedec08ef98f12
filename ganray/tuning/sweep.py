"""A Ray Tune sweep over the training loop, minimizing FID; resumes an interrupted sweep in place.

The sweep directory (`storage.runs_dir/storage.run_name`, a local path or an s3:// prefix) holds the sweep's `config.yaml`, Ray
Tune's experiment under `tune/`, and the results that `ganray.tuning.results` writes. Running
the same command again restores the experiment with `Tuner.restore`: finished trials are kept
as they are, unfinished and errored ones resume from their last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganray.config import Config, dump_config, read_stored_config
from ganray.data import load_splits
from ganray.data.base import Splits
from ganray.errors import GanrayError
from ganray.metrics.evaluator import build_evaluator, domain_payload, prepare_domain
from ganray.metrics.fidelity import MIN_SAMPLES
from ganray.models import build_models, class_weight
from ganray.storage import Store, arrow_location, is_s3, open_store, upload_dir
from ganray.tuning.results import SweepResults, summarize
from ganray.tuning.space import Dist, parse_space, to_ray
from ganray.tuning.trial import TIME_ATTR, objective, run_trial, trial_config

log = logging.getLogger(__name__)

EXPERIMENT = "tune"
# What a sweep's results depend on; a rerun with other values must not resume the old experiment.
_SWEEP_SECTIONS = ("data", "model", "loss", "train", "eval", "tune")
# Keys PBT may not mutate: a cloned checkpoint must load into the trial's network.
_SHAPE_SECTIONS = ("model", "data")


@dataclass(frozen=True)
class SweepOutcome:
    sweep_dir: Path | None  # the local sweep dir; None for a sweep on S3
    uri: str
    results: SweepResults | None  # None when the sweep was interrupted
    finished: int
    total: int


def check_sweep(cfg: Config) -> dict[str, Dist]:
    """Everything about a sweep that can be wrong, checked before Ray starts."""
    dists = parse_space(cfg)
    e, t = cfg.eval, cfg.tune
    if e.every <= 0:
        raise GanrayError("tune needs eval.every > 0: FID, measured every eval.every steps, is the objective; e.g. --set eval.every=300")
    if t.metric == "fid" and "fid" not in e.metrics:
        raise GanrayError("tune minimizes FID, but eval.metrics leaves out fid; add fid to eval.metrics")
    if t.metric == "cas_val" and (cfg.data.val_fraction <= 0 or e.cas_samples <= 0):
        raise GanrayError("tune.metric=cas_val is measured on validation; set data.val_fraction > 0 and eval.cas_samples > 0")
    if e.every > cfg.train.steps:
        raise GanrayError(
            f"eval.every={e.every} exceeds train.steps={cfg.train.steps}: trials would report once and could not "
            "be compared early; lower eval.every"
        )
    if t.scheduler == "pbt":
        if t.search != "random":
            raise GanrayError("tune.scheduler=pbt explores by itself; use tune.search=random with it")
        if not mutations(dists):
            raise GanrayError(
                "tune.scheduler=pbt needs a train/loss/eval key in tune.space to mutate (model/data keys change "
                "the network, so a cloned checkpoint would not load); add one, e.g. train.lr_g"
            )
    if t.search == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise GanrayError("tune.search=optuna needs the optuna package; pip install optuna, or use tune.search=random") from None
    return dists


def mutations(dists: dict[str, Dist]) -> dict[str, Dist]:
    return {k: d for k, d in dists.items() if k.split(".")[0] not in _SHAPE_SECTIONS}


def _scheduler(cfg: Config, dists: dict[str, Dist]) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    t, every = cfg.tune, cfg.eval.every
    if t.scheduler == "asha":
        return ASHAScheduler(
            time_attr=TIME_ATTR,
            max_t=cfg.train.steps,
            grace_period=min(t.grace_period * every, cfg.train.steps),
            reduction_factor=t.reduction_factor,
        )
    if t.scheduler == "pbt":
        return PopulationBasedTraining(
            time_attr=TIME_ATTR,
            perturbation_interval=t.perturbation_interval * every,
            hyperparam_mutations=to_ray(mutations(dists)),
        )
    return FIFOScheduler()


def _search(cfg: Config) -> Any:
    """The search algorithm, carrying `tune.max_concurrent` itself: Tune applies
    `max_concurrent_trials` only to a `Searcher` (Optuna) and silently ignores it for the random
    search's BasicVariantGenerator, which takes its own `max_concurrent`."""
    if cfg.tune.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        optuna = OptunaSearch(seed=cfg.tune.seed)
        return ConcurrencyLimiter(optuna, max_concurrent=cfg.tune.max_concurrent) if cfg.tune.max_concurrent else optuna
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=cfg.tune.seed, max_concurrent=cfg.tune.max_concurrent or 0)


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


@dataclass(frozen=True)
class SweepLocation:
    """Where a sweep lives: a local directory or an S3 prefix, for ganray's store and for Ray Tune."""

    uri: str
    store: Store
    tune_path: str  # Tune's storage_path: the directory, or "bucket/prefix" with `filesystem`
    filesystem: Any | None
    local: Path  # where results are written: the sweep dir itself, or a staging dir uploaded after

    @property
    def experiment(self) -> str:
        return f"{self.tune_path}/{EXPERIMENT}"

    def publish(self) -> None:
        """Copy the staged results to S3; generator.json last, after its weights."""
        upload_dir(self.store, self.local, last="generator.json")


@contextlib.contextmanager
def _tune_output_off():
    """Tune's console output off for one `fit()`: ganray prints its own lines and writes results.md.

    Ray 2.60's new output engine prints an experiment table and a `tensorboard --logdir` line
    into Ray's session temp dir (deleted when the run ends) whatever `verbose` says; its legacy
    engine honours `verbose=0`. Each trial's TensorBoard files are in the sweep dir.
    """
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before


def sweep_location(cfg: Config) -> SweepLocation:
    name = cfg.storage.run_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    root = cfg.storage.runs_dir
    if is_s3(root):
        uri = f"{root.rstrip('/')}/{name}"
        store = open_store(uri, cfg.storage)
        store.check_writable()
        tune_path, fs = arrow_location(uri, cfg.storage)
        return SweepLocation(uri, store, tune_path, fs, Path(tempfile.mkdtemp(prefix="ganray-sweep-")))
    d = Path(root).expanduser().resolve() / name
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GanrayError(f"cannot create sweep dir {str(d)!r} ({e.strerror}); choose a writable storage.runs_dir") from None
    return SweepLocation(str(d), open_store(str(d)), str(d), None, d)


def _prepare_sweep_dir(loc: SweepLocation, cfg: Config) -> bool:
    """Record the sweep's config, or check the location holds this same sweep; True when it does (resume)."""
    old = read_stored_config(loc.store, f"sweep dir {loc.uri!r}")
    if old is None:
        loc.store.write_bytes("config.yaml", dump_config(cfg).encode())
        return False
    if old.fingerprint(*_SWEEP_SECTIONS) != cfg.fingerprint(*_SWEEP_SECTIONS):
        raise GanrayError(
            f"sweep dir {loc.uri!r} holds a sweep with a different config; resume it with its own "
            "config.yaml or choose another storage.run_name"
        )
    return True


def _prepare_evaluation(cfg: Config, splits: Splits) -> tuple[dict | None, dict[str, float]]:
    """The extractor every trial shares, and real held-out data's scores: the floor FID can reach.

    Scoring the test split also fills the real-feature cache once, before trials race to write it.
    """
    domain = None
    if cfg.eval.extractor == "domain":
        classifier = prepare_domain(cfg, splits)
        domain = domain_payload(classifier)
        evaluator = build_evaluator(cfg, splits, domain=classifier)
    else:
        evaluator = build_evaluator(cfg, splits)  # checks the Inception weights file
    reference = evaluator.evaluate_images(splits.test.images) if len(splits.test) >= MIN_SAMPLES else {}
    return domain, reference


def run_sweep(cfg: Config) -> SweepOutcome:
    """Run (or resume) the sweep the config describes, then write its results."""
    from ray import tune

    from ganray.ray_session import ensure_ray, keep_credentials_out_of_tune

    dists = check_sweep(cfg)
    splits = load_splits(cfg.data, cfg.storage)
    for key, dist in dists.items():  # every architecture the space can pick must build for this data
        for value in dist.probes() if key.startswith("model.") else []:
            probe = trial_config(cfg, {key: value})
            build_models(probe.model, splits.train.shape, splits.train.num_classes, class_weight(probe.model, probe.loss) > 0)
    loc = sweep_location(cfg)
    resuming = _prepare_sweep_dir(loc, cfg)
    domain, reference = _prepare_evaluation(cfg, splits)
    goal = objective(cfg)
    ensure_ray(cfg.ray)
    keep_credentials_out_of_tune()
    resources = {"cpu": cfg.ray.cpus_per_worker, "gpu": cfg.tune.gpus_per_trial if cfg.ray.use_gpu else 0}
    trainable = tune.with_resources(tune.with_parameters(run_trial, base=cfg.model_dump(), domain=domain), resources)
    fs = loc.filesystem
    if resuming and tune.Tuner.can_restore(loc.experiment, storage_filesystem=fs):
        log.info("resuming the sweep in %s", loc.uri)
        tuner = tune.Tuner.restore(loc.experiment, trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=fs)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=to_ray(dists),
            tune_config=tune.TuneConfig(
                metric=goal.name,
                mode=goal.mode,
                search_alg=_search(cfg),
                scheduler=_scheduler(cfg, dists),
                num_samples=cfg.tune.num_samples,
                trial_dirname_creator=trial_dirname,
                # A finished (or ASHA-stopped) trial's process runs the next one: no new process,
                # torch import and data load per trial, and PBT's exploits restart no actor.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=loc.tune_path,
                storage_filesystem=fs,
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=cfg.train.keep_checkpoints,
                    checkpoint_score_attribute=goal.name,
                    checkpoint_score_order=goal.mode,
                ),
                failure_config=tune.FailureConfig(max_failures=cfg.ray.max_failures),
                verbose=0,
            ),
        )
    log.info(
        "sweep of %d trials (%s, %s search) over %s into %s",
        cfg.tune.num_samples, cfg.tune.scheduler, cfg.tune.search, ", ".join(dists), loc.uri,
    )
    with _tune_output_off():
        grid = tuner.fit()
    finished = _finished_trials(loc.experiment, fs)
    if finished < cfg.tune.num_samples:
        if loc.filesystem is not None:
            shutil.rmtree(loc.local, ignore_errors=True)
        return SweepOutcome(None if loc.filesystem is not None else loc.local, loc.uri, None, finished, cfg.tune.num_samples)
    results = summarize(cfg, grid, loc.local, reference)
    if loc.filesystem is None:
        return SweepOutcome(loc.local, loc.uri, results, finished, len(grid))
    loc.publish()
    shutil.rmtree(loc.local, ignore_errors=True)  # the staging copy; the sweep is on S3
    return SweepOutcome(None, loc.uri, results, finished, len(grid))


def _finished_trials(experiment: str, fs: Any | None) -> int:
    """Trials the saved experiment state records as done (stopped or errored).

    Read from disk because, after Ctrl-C, the in-memory grid marks the trials it stopped as
    terminated, while the saved state (what a restore resumes from) keeps them unfinished.
    """
    from ray.tune import ExperimentAnalysis

    return sum(t.status in ("TERMINATED", "ERROR") for t in ExperimentAnalysis(experiment, storage_filesystem=fs).trials)
