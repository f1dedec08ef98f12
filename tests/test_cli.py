"""Bad input at the CLI: one line naming the problem, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ganray.cli import main
from ganray.metrics.recipes import CHOSEN_ON
from conftest import run_cli, set_args


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "train.nope=1"], "unknown config key 'train.nope'"),
        (["--set", "train.steps=ten"], "'train.steps'"),
        (["--set", "data.image_size=30"], "multiple of 4"),
        (["--set", "data.source=mnist"], "data.path is required for data.source=mnist"),
        (["--set", "data.source=mnsit"], "unknown data.source 'mnsit'; use one of digits, mnist"),
        (["--set", "data.source=folder", "--set", "data.path=/nonexistent/dir"], "'/nonexistent/dir' does not exist"),
        (["--set", "model.arch=resnet"], "unknown model.arch 'resnet'"),
        (["--config", "/nonexistent.yaml"], "does not exist"),
        (["--config", "/"], "config file '/' is a directory; pass a YAML file to --config"),
        (["--set", "train.lr_g=.inf"], "invalid config 'train.lr_g': Input should be a finite number"),
        (["--set", "train.lr_d=.nan"], "invalid config 'train.lr_d': Input should be a finite number"),
        (["--set", "train.batch_size=33"], "invalid config: train.batch_size=33 must be divisible by ray.num_workers=2"),
        (["--set", "generate.latent_scale=0"], "invalid config 'generate.latent_scale': Input should be greater than 0"),
        (["--set", "generate.min_confidence=often"], "invalid config 'generate.min_confidence': Input should be a valid number"),
        (["--set", "generate.num_samples=1000000000000"], "is more than one output holds (100,000,000"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, args, message):
    code, err = run_cli(capsys, "train", "--set", f"storage.runs_dir={tmp_path}", *args)
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("ganray train: error:")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_log_level_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--log-level", "bogus", "train"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'BOGUS'" in err and "Traceback" not in err
    assert main(["--log-level", "warning", "train", "--set", "train.steps=ten"]) == 2  # any case works


def test_wrong_image_shape_for_a_run_is_refused(capsys, tmp_path):
    from conftest import tiny_config
    from ganray.training.local import train_local

    train_local(tiny_config(tmp_path, "train.steps=5"), tmp_path / "run")
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    code, err = run_cli(
        capsys, "train", "--set", f"storage.runs_dir={tmp_path}", "--set", "storage.run_name=run",
        "--set", "data.image_size=32", "--set", "model.width=0.25",
    )
    assert code == 2 and "different model config" in err
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before


def test_unreadable_checkpoint_is_a_clear_error(capsys, tmp_path, ray_local):
    from conftest import tiny_config
    from ganray.training.local import train_local

    # The run to corrupt is trained in-process (the same run dir a Ray run writes); the command
    # that must fail runs on Ray Train, whose retries it must not trigger.
    train_local(tiny_config(tmp_path, "train.steps=5"), tmp_path / "run")
    state = tmp_path / "run" / "checkpoints" / "step_0000005" / "state.pt"
    state.write_bytes(b"not a checkpoint")
    code, err = run_cli(  # at debug, so Ray's own lines (its retries among them) reach the console
        capsys, "--log-level", "debug", "train", "--set", f"storage.runs_dir={tmp_path}", "--set", "storage.run_name=run",
        "--set", "model.width=0.25", "--set", "train.batch_size=32", "--set", "ray.num_workers=1",
        "--set", "train.steps=10",
    )
    assert code == 2
    last = err.splitlines()[-1]  # Ray's own log lines stream to stderr before it
    assert last.startswith("ganray train: error: no loadable checkpoint")
    assert "fails its checksum" in last and "step_0000005" in last and "storage.run_name" in last
    # With the default ray.max_failures=2, a user error still fails on the first attempt.
    assert "RETRY" not in err and err.count("Error in training function") == 1


def test_only_errors_a_retry_cannot_fix_skip_rays_retries():
    from ray.train import FailureConfig
    from ray.train.v2._internal.execution.failure_handling.failure_policy import FailureDecision
    from ray.train.v2.api.exceptions import WorkerGroupError

    from ganray.errors import GanrayError
    from ganray.training.failure_policy import UserErrorsFailFast

    policy = UserErrorsFailFast(FailureConfig(max_failures=2))
    user = WorkerGroupError("worker failed", {0: GanrayError("checkpoint step_5 is not safe to load; ...")})
    infra = WorkerGroupError("worker failed", {1: RuntimeError("Connection reset by peer")})
    assert policy.make_decision(user) == FailureDecision.RAISE
    assert [policy.make_decision(infra) for _ in range(3)] == [FailureDecision.RETRY] * 2 + [FailureDecision.RAISE]


@pytest.mark.parametrize("launcher", [[str(Path(sys.executable).parent / "ganray")], [sys.executable, "-m", "ganray"]])
def test_console_script_and_python_m_help_and_exit_code(tmp_path, launcher):
    help_out = subprocess.run([*launcher, "train", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--set SECTION.KEY=VALUE" in help_out and "--config" in help_out
    bad = subprocess.run([*launcher, "train", "--set", "ray.bogus=1"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "ganray train: error: --set ray.bogus: unknown config key 'ray.bogus'; see README, Configuration"


def test_demo_runs_the_whole_pipeline_and_summarizes_it(capsys, tmp_path, ray_local):
    from conftest import CACHE_DIR

    sets = [
        f"storage.runs_dir={tmp_path}", f"storage.cache_dir={CACHE_DIR}", "train.steps=10", "model.width=0.25",
        "train.batch_size=32", "ray.num_workers=1", "eval.every=10", "eval.num_samples=100",
        "eval.report_samples=100", "eval.classifier_steps=20", "eval.recipe_steps=20", "eval.report_seeds=[0]", "eval.report_fractions=[1.0]",
        "eval.cas_samples=200", "eval.cas_steps=20",
        "generate.num_samples=250", "generate.shard_size=100", "generate.num_actors=1",
    ]
    assert main(["demo", *set_args(*sets)]) == 0
    out = capsys.readouterr().out
    assert "fid_domain" in out and "precision_domain" in out and "is_domain" in out
    real = float(out.split("real-data accuracy")[1].split()[0])
    synth = float(out.split("synthetic-data accuracy")[1].split()[0])
    ratio = float(out.split("x of real")[0].rsplit("(", 1)[1])
    assert 0 < synth <= 1 and 0 < real <= 1
    assert ratio == pytest.approx(synth / real, abs=2e-3)
    run = tmp_path / "demo"
    assert "3 shards, 250 labelled samples" in out and str(run / "shards") in out
    manifest = json.loads((run / "shards" / "manifest.json").read_text())
    assert manifest["num_samples"] == 250 and len(manifest["shardlist"]) == 3
    report = json.loads((run / "report" / "report.json").read_text())
    assert report["train_on_synthetic"]["ratio"] == pytest.approx(ratio, abs=2e-3)
    for f, g in report["low_data"].items():  # how the recipe was chosen, as report.json says (a size-gated real was once "the prior")
        assert f"{float(f):.0%} of the real data: recipe {g['recipe']['name']} ({CHOSEN_ON[g['chosen_on']]})" in out
    assert (run / "generator" / "generator.json").is_file() and (run / "report" / "report.md").is_file()


def test_ctrl_c_stops_training_cleanly_and_the_same_command_resumes(tmp_path, ray_local):
    """SIGINT a `ganray train` process mid-run: exit 130 with the resume hint; the rerun continues, not restarts."""
    import os
    import signal
    import time

    from conftest import CACHE_DIR
    from ganray.runs.run_dir import read_metrics

    sets = [
        "model.width=0.25", "train.batch_size=32", "train.steps=300", "train.log_every=10", "train.sample_every=100",
        "train.checkpoint_every=20", "ray.num_workers=1", f"storage.runs_dir={tmp_path}", "storage.run_name=run",
        f"storage.cache_dir={CACHE_DIR}", "eval.every=0", f"ray.address={ray_local.get_runtime_context().gcs_address}",
    ]
    argv = ["train", *set_args(*sets)]
    proc = subprocess.Popen([sys.executable, "-m", "ganray.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000040" / "meta.json"
    deadline = time.monotonic() + 180
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), "no checkpoint in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "ganray train: interrupted; run the same command again to resume"
    stopped_at = read_metrics(tmp_path / "run")[-1]["step"]
    assert 40 <= stopped_at < 300

    assert main(argv) == 0
    steps = [m["step"] for m in read_metrics(tmp_path / "run")]
    assert steps == list(range(10, 301, 10))  # resumed from a checkpoint: each step once, none missing
    assert json.loads((tmp_path / "run" / "generator" / "generator.json").read_text())["step"] == 300
