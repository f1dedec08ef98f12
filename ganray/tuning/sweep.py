"""A Ray Tune sweep over the training loop, minimizing FID; resumes an interrupted sweep in place.

The sweep directory (`storage.runs_dir/storage.run_name`) holds the sweep's `config.yaml`, Ray
Tune's experiment under `tune/`, and the results that `ganray.tuning.results` writes. Running
the same command again restores the experiment with `Tuner.restore`: finished trials are kept
as they are, unfinished and errored ones resume from their last checkpoint.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganray.config import Config, dump_config, load_config
from ganray.data import load_splits
from ganray.data.base import Splits
from ganray.errors import GanrayError
from ganray.metrics.evaluator import build_evaluator, domain_payload, prepare_domain
from ganray.metrics.extractors import inception
from ganray.metrics.fidelity import MIN_SAMPLES
from ganray.models import build_models
from ganray.training.run_dir import resolve_run_dir
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
    sweep_dir: Path
    results: SweepResults | None  # None when the sweep was interrupted
    finished: int
    total: int


def check_sweep(cfg: Config) -> dict[str, Dist]:
    """Everything about a sweep that can be wrong, checked before Ray starts."""
    dists = parse_space(cfg)
    e, t = cfg.eval, cfg.tune
    if e.every <= 0:
        raise GanrayError("tune needs eval.every > 0: FID, measured every eval.every steps, is the objective; e.g. --set eval.every=300")
    if "fid" not in e.metrics:
        raise GanrayError("tune minimizes FID, but eval.metrics leaves out fid; add fid to eval.metrics")
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
    if cfg.tune.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=cfg.tune.seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=cfg.tune.seed)


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _prepare_sweep_dir(sweep_dir: Path, cfg: Config) -> bool:
    """Create the sweep dir or check it holds this same sweep; True when it does (resume)."""
    cfg_path = sweep_dir / "config.yaml"
    if cfg_path.is_file():
        try:
            old = load_config(cfg_path)
        except GanrayError as e:
            raise GanrayError(f"sweep dir {str(sweep_dir)!r} holds an unreadable config.yaml ({e}); choose another storage.run_name") from None
        if old.fingerprint(*_SWEEP_SECTIONS) != cfg.fingerprint(*_SWEEP_SECTIONS):
            raise GanrayError(
                f"sweep dir {str(sweep_dir)!r} holds a sweep with a different config; resume it with its own "
                "config.yaml or choose another storage.run_name"
            )
        return True
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GanrayError(f"cannot create sweep dir {str(sweep_dir)!r} ({e.strerror}); choose a writable storage.runs_dir") from None
    tmp = cfg_path.with_suffix(".yaml.tmp")
    tmp.write_text(dump_config(cfg))
    os.replace(tmp, cfg_path)
    return False


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
        inception(cfg.eval.inception_weights or "")
        evaluator = build_evaluator(cfg, splits)
    reference = evaluator.evaluate_images(splits.test.images) if len(splits.test) >= MIN_SAMPLES else {}
    return domain, reference


def run_sweep(cfg: Config) -> SweepOutcome:
    """Run (or resume) the sweep the config describes, then write its results."""
    from ray import tune

    from ganray.training.ray_train import ensure_ray

    dists = check_sweep(cfg)
    splits = load_splits(cfg.data)
    for key, dist in dists.items():  # every architecture the space can pick must build for this data
        for value in dist.probes() if key.startswith("model.") else []:
            build_models(trial_config(cfg, {key: value}).model, splits.train.shape, splits.train.num_classes)
    sweep_dir = resolve_run_dir(cfg, prefix="sweep")
    resuming = _prepare_sweep_dir(sweep_dir, cfg)
    domain, reference = _prepare_evaluation(cfg, splits)
    metric = objective(cfg)
    ensure_ray(cfg.ray)
    resources = {"cpu": cfg.ray.cpus_per_worker, "gpu": cfg.tune.gpus_per_trial if cfg.ray.use_gpu else 0}
    trainable = tune.with_resources(tune.with_parameters(run_trial, base=cfg.model_dump(), domain=domain), resources)
    experiment = sweep_dir / EXPERIMENT
    if resuming and tune.Tuner.can_restore(str(experiment)):
        log.info("resuming the sweep in %s", experiment)
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=to_ray(dists),
            tune_config=tune.TuneConfig(
                metric=metric,
                mode="min",
                search_alg=_search(cfg),
                scheduler=_scheduler(cfg, dists),
                num_samples=cfg.tune.num_samples,
                max_concurrent_trials=cfg.tune.max_concurrent or None,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=str(sweep_dir),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=cfg.train.keep_checkpoints,
                    checkpoint_score_attribute=metric,
                    checkpoint_score_order="min",
                ),
                failure_config=tune.FailureConfig(max_failures=cfg.ray.max_failures),
                verbose=0,
            ),
        )
    log.info(
        "sweep of %d trials (%s, %s search) over %s into %s",
        cfg.tune.num_samples, cfg.tune.scheduler, cfg.tune.search, ", ".join(dists), sweep_dir,
    )
    grid = tuner.fit()
    finished = _finished_trials(experiment)
    if finished < cfg.tune.num_samples:
        return SweepOutcome(sweep_dir, None, finished, cfg.tune.num_samples)
    return SweepOutcome(sweep_dir, summarize(cfg, grid, sweep_dir, reference), finished, len(grid))


def _finished_trials(experiment: Path) -> int:
    """Trials the saved experiment state records as done (stopped or errored).

    Read from disk because, after Ctrl-C, the in-memory grid marks the trials it stopped as
    terminated, while the saved state (what a restore resumes from) keeps them unfinished.
    """
    from ray.tune import ExperimentAnalysis

    return sum(t.status in ("TERMINATED", "ERROR") for t in ExperimentAnalysis(str(experiment)).trials)
