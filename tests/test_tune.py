"""Ray Tune sweeps on digits: ASHA stops bad trials, the best generator is exported, sweeps resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import CACHE_DIR, tiny_config
from ganray.cli import main
from ganray.config import load_config
from ganray.errors import GanrayError
from ganray.storage import open_store
from ganray.runs.export import load_generator
from ganray.models.sampling import sample_balanced
from ganray.tuning.sweep import check_sweep, run_sweep

STEPS, EVERY = 40, 10
PBT_STEPS = 30  # three evaluations, each a chance to exploit (each exploit restarts a trial)

# Learning rates of 1e-7 leave the generator where it started: those trials are clearly worse.
SPACE = "{train.lr_g: {choice: [0.0005, 1.0e-7]}, train.lr_d: {choice: [0.0003, 1.0e-7]}}"


def sweep_overrides(tmp_path, name: str, *extra: str) -> list[str]:
    return [
        "train.batch_size=32",
        f"train.steps={STEPS}",
        f"train.log_every={EVERY}",
        f"train.sample_every={EVERY}",
        f"eval.every={EVERY}",
        "eval.metrics=[fid]",
        f"tune.space={SPACE}",
        "tune.reduction_factor=2",
        "ray.cpus_per_worker=1",
        f"storage.run_name={name}",
        f"storage.runs_dir={tmp_path}",
        *extra,
    ]


def sweep_config(tmp_path, name: str, *extra: str):
    return tiny_config(tmp_path, *sweep_overrides(tmp_path, name, *extra))


def trial_lines(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_asha_stops_bad_trials_early_and_the_best_generator_is_exported(tmp_path, ray_local, capfd):
    cfg = sweep_config(tmp_path, "asha", "tune.num_samples=6", "tune.max_concurrent=2", "tune.export_top_k=2")
    out = run_sweep(cfg)
    r = out.results
    assert r is not None and len(r.rows) == 6
    fids = [row.score for row in r.rows]
    assert fids == sorted(fids)  # sorted by best FID
    stopped = [row for row in r.rows if row.status == "stopped early"]
    assert stopped, [(row.trial, row.steps, row.score) for row in r.rows]
    assert all(row.steps < STEPS for row in stopped)
    assert r.best.status == "completed" and r.best.params["train.lr_g"] == 0.0005
    # ASHA cut compute: fewer trial-steps than every trial running to the end.
    assert sum(row.steps for row in r.rows) < 6 * STEPS
    # Each trial's FID curve is one point per evaluation, in step order.
    for row in r.rows:
        steps = [s for s, _ in row.curve]
        assert steps == list(range(EVERY, row.steps + 1, EVERY))

    # The exported generator is the best trial's best checkpoint, and it generates.
    gen = load_generator(out.sweep_dir / "generator")
    assert gen.info["step"] == r.best.score_step
    assert gen.info["metrics"]["fid_domain"] == pytest.approx(r.best.score)
    images, labels = sample_balanced(gen.G, 20, seed=0)
    assert images.shape == (20, 1, 28, 28) and images.dtype == torch.uint8
    assert sorted(labels.tolist()) == sorted(list(range(10)) * 2)
    # The top two trials' generators are exported too, rank 1 being the best, for an ensemble.
    first, second = load_generator(out.sweep_dir / "top" / "1"), load_generator(out.sweep_dir / "top" / "2")
    assert first.fingerprint == gen.fingerprint
    # Two samples of this 4-point space can draw the same point, and then train the same weights.
    assert (first.fingerprint == second.fingerprint) == (r.rows[0].params == r.rows[1].params)
    assert second.info["metrics"]["fid_domain"] == pytest.approx(r.rows[1].score)
    assert "--generator top/1 --generator top/2" in (out.sweep_dir / "results.md").read_text()

    # The tables and the best config agree with the rows.
    table = list(csv.DictReader((out.sweep_dir / "results.csv").open()))
    assert [row["trial"] for row in table] == [row.trial for row in r.rows]
    assert float(table[0]["fid_domain"]) == pytest.approx(r.best.score)
    first = next(line for line in (out.sweep_dir / "results.md").read_text().splitlines() if line.startswith("| 1 |"))
    assert f"| {r.best.trial} |" in first
    best = load_config(out.sweep_dir / "best_config.yaml")
    assert best.train.lr_g == r.best.params["train.lr_g"] and best.train.lr_d == r.best.params["train.lr_d"]
    assert best.storage.run_name is None  # training it makes a new run, not a write into the sweep
    assert (out.sweep_dir / "fid_vs_steps.png").read_bytes()[:4] == b"\x89PNG"
    assert r.reference["fid_domain"] < r.best.score  # real held-out data is the floor
    # Curves: each trial's TensorBoard files live in the sweep dir, and no line points into Ray's temp dir.
    assert len({p.parent for p in out.sweep_dir.rglob("events.out.tfevents.*")}) == 6
    assert "tensorboard --logdir" not in "".join(capfd.readouterr())


def test_an_interrupted_sweep_resumes_without_redoing_finished_trials(tmp_path, ray_local):
    """Ctrl-C a `ganray tune` process mid-sweep, rerun the same command: every trial reports once."""
    overrides = sweep_overrides(
        tmp_path, "resume", "tune.num_samples=3", "tune.max_concurrent=1", "tune.search=optuna",
        "model.width=0.25", "eval.num_samples=200", "eval.classifier_steps=150", f"storage.cache_dir={CACHE_DIR}",
        "eval.cas_samples=200", "eval.cas_steps=20",
        f"ray.address={ray_local.get_runtime_context().gcs_address}",
    )
    argv = [sys.executable, "-m", "ganray.cli", "tune", *(a for o in overrides for a in ("--set", o))]
    experiment = tmp_path / "resume" / "tune"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 240
    finished: dict[str, int] = {}
    while time.monotonic() < deadline and not finished:
        time.sleep(0.5)
        finished = {
            d.name: len(lines) for d in experiment.glob("trial_*") if (lines := trial_lines(d)) and lines[-1]["step"] == STEPS
        }
    assert finished, "no trial finished in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "run the same command again to resume" in err
    assert not (tmp_path / "resume" / "results.csv").exists()

    code = main(["tune", *(a for o in overrides for a in ("--set", o))])
    assert code == 0
    rows = json.loads((tmp_path / "resume" / "results.json").read_text())["rows"]
    assert len(rows) == 3 and len({r["trial"] for r in rows}) == 3
    for d in experiment.glob("trial_*"):
        # A step logged just before Ctrl-C but not yet checkpointed is trained again after the
        # restore; training is deterministic per step, so it must report the very same FID.
        seen: dict[int, float] = {}
        for line in trial_lines(d):
            assert line["fid_domain"] == pytest.approx(seen.setdefault(line["step"], line["fid_domain"]), rel=1e-4)
    for r in rows:
        steps = [s for s, _ in r["curve"]]
        assert steps == sorted(set(steps)) and steps[-1] == r["steps"]
    for name, count in finished.items():
        assert len(trial_lines(experiment / name)) == count  # finished trials were not rerun
    assert all(r["status"] in ("completed", "stopped early") for r in rows)
    assert load_generator(tmp_path / "resume" / "generator").info["metrics"]["fid_domain"] == pytest.approx(rows[0]["score"])


def test_pbt_exploits_through_tune_checkpoints(tmp_path, ray_local):
    cfg = sweep_config(
        tmp_path, "pbt", "tune.scheduler=pbt", "tune.num_samples=4", "tune.max_concurrent=2", "tune.perturbation_interval=1",
        "tune.space={train.lr_g: {choice: [0.0005, 1.0e-7]}, train.lr_d: {loguniform: [0.0001, 0.0005]}}",
        f"train.steps={PBT_STEPS}",
    )
    out = run_sweep(cfg)
    assert out.results is not None and len(out.results.rows) == 4
    # PBT logs each exploit: the weaker trial continued from the stronger one's checkpoint.
    exploits = (out.sweep_dir / "tune" / "pbt_global.txt").read_text().splitlines()
    assert exploits
    for row in out.results.rows:
        steps = [s for s, _ in row.curve]
        assert steps == sorted(set(steps)) and row.steps == PBT_STEPS


@pytest.mark.parametrize(
    "extra, message",
    [
        (["eval.every=0"], "tune needs eval.every > 0"),
        (["eval.metrics=[kid]"], "add fid to eval.metrics"),
        (["tune.metric=cas_val", "data.val_fraction=0"], "tune.metric=cas_val is measured on validation"),
        (["eval.every=400"], "eval.every=400 exceeds train.steps=40"),
        (["tune.scheduler=pbt", "tune.space={model.width: {choice: [0.25, 0.5]}}"], "needs a train/loss/eval key"),
        (["tune.scheduler=pbt", "tune.search=optuna"], "use tune.search=random with it"),
        (["tune.space={train.lr_g: {loguniform: [0.001, 0.0001]}}"], "empty range"),
        (["tune.space={train.lr_x: {loguniform: [0.0001, 0.001]}}"], "'train.lr_x' is not a config key"),
    ],
)
def test_a_bad_sweep_is_a_one_line_error_before_ray_starts(tmp_path, extra, message):
    with pytest.raises(GanrayError) as err:
        check_sweep(sweep_config(tmp_path, "bad", *extra))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_bad_space_exits_2_and_writes_nothing(tmp_path, capsys):
    code = main(["tune", *(a for o in sweep_overrides(tmp_path, "cli", "tune.space={ray.num_workers: {choice: [1]}}") for a in ("--set", o))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ganray tune: error:") and "not tunable" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_changed_config_does_not_resume_an_old_sweep(tmp_path):
    from ganray.tuning.sweep import _prepare_sweep_dir, sweep_location

    cfg = sweep_config(tmp_path, "changed")
    assert _prepare_sweep_dir(sweep_location(cfg), cfg) is False
    assert _prepare_sweep_dir(sweep_location(cfg), cfg) is True
    other = sweep_config(tmp_path, "changed", "train.steps=50")
    with pytest.raises(GanrayError, match="holds a sweep with a different config"):
        _prepare_sweep_dir(sweep_location(other), other)
    (tmp_path / "changed" / "config.yaml").write_text("train: {stepz: 3}\n")
    with pytest.raises(GanrayError, match="holds an unreadable config.yaml"):
        _prepare_sweep_dir(sweep_location(cfg), cfg)


def test_a_sweep_on_s3_writes_its_results_there_and_resumes(tmp_path, ray_local, aws_env):
    bucket = aws_env.create_bucket("ganray-sweeps")
    root = f"s3://{bucket}/{tmp_path.name}"
    cfg = tiny_config(tmp_path, *sweep_overrides(tmp_path, "s3sweep", "tune.num_samples=2", "tune.scheduler=fifo",
                                                 "train.steps=20", f"storage.runs_dir={root}"))
    out = run_sweep(cfg)
    assert out.uri == f"{root}/s3sweep" and out.results is not None
    store = open_store(out.uri)
    keys = {o.key for o in store.list()}
    for key in ("config.yaml", "results.csv", "results.md", "best_config.yaml", "fid_vs_steps.png",
                "generator/generator.json", "generator/generator.safetensors"):
        assert key in keys, key
    assert any(k.startswith("tune/") and "/checkpoint_" in k for k in keys)  # Tune's own checkpoints live on S3 too
    local = tmp_path / "downloaded"
    for name in ("generator.json", "generator.safetensors"):
        store.download_file(f"generator/{name}", local / name)
    assert load_generator(local).info["metrics"]["fid_domain"] == pytest.approx(out.results.best.score)
    # A rerun restores the finished experiment from S3 and trains nothing more.
    again = run_sweep(cfg)
    assert [r.trial for r in again.results.rows] == [r.trial for r in out.results.rows]
    assert [r.curve for r in again.results.rows] == [r.curve for r in out.results.rows]


def test_the_objective_is_fid_minimized_or_cas_val_maximized(tmp_path):
    from ganray.tuning.results import _sort_key
    from ganray.tuning.results import TrialRow
    from ganray.tuning.trial import objective

    fid, cas = objective(sweep_config(tmp_path, "o")), objective(sweep_config(tmp_path, "o", "tune.metric=cas_val"))
    assert (fid.name, fid.mode, cas.name, cas.mode) == ("fid_domain", "min", "cas_val", "max")
    rows = [TrialRow(t, "completed", v, 10, 10, 1.0, {}) for t, v in (("a", 0.5), ("b", 0.9), ("c", None))]
    assert [r.trial for r in sorted(rows, key=lambda r: _sort_key(r, cas))] == ["b", "a", "c"]
    assert [r.trial for r in sorted(rows, key=lambda r: _sort_key(r, fid))] == ["a", "b", "c"]
