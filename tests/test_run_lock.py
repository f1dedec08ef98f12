"""One writer per run directory: the second is refused naming the holder; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import tiny_config
from ganray.errors import GanrayError
from ganray.runs.run_dir import RunDir
from ganray.runs.lock import LOCK, run_lock

HOLD = """
import sys, time
from ganray.runs.run_dir import RunDir
from ganray.runs.lock import run_lock
with run_lock(RunDir.at(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    run = RunDir.at(tmp_path / "run")
    with run_lock(run):
        holder = json.loads((tmp_path / "run" / LOCK).read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(GanrayError, match=rf"is in use by pid {os.getpid()} on .*choose another storage.run_name"):
            with run_lock(run):
                pass
    assert not (tmp_path / "run" / LOCK).exists()
    with run_lock(run):  # free again
        pass


def test_a_killed_holders_lock_is_free(tmp_path):
    where = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, where], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(GanrayError, match=f"pid {proc.pid} "):
            with run_lock(RunDir.at(where)):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with run_lock(RunDir.at(where)):  # the kernel dropped the dead holder's flock
        pass


def test_train_is_refused_before_any_work_while_the_run_is_held(tmp_path):
    from ganray.training.ray_train import train_with_ray

    cfg = tiny_config(tmp_path)
    run = RunDir.at(tmp_path / "run", cfg.storage)
    with run_lock(run):
        t0 = time.monotonic()
        with pytest.raises(GanrayError, match="is in use by pid"):
            train_with_ray(cfg)
        assert time.monotonic() - t0 < 30
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []  # no config, metrics or checkpoints


def test_the_s3_lease_is_exclusive_renewed_and_taken_over_when_stale(aws_env):
    aws_env.create_bucket("locks")
    run = RunDir.at("s3://locks/runs/a")
    store = run.store
    with run_lock(run, lease_s=60, renew_s=0.2):
        first = json.loads(store.read_bytes(LOCK))
        with pytest.raises(GanrayError, match=f"is in use by pid {os.getpid()} "):
            with run_lock(run):
                pass
        time.sleep(0.7)
        renewed = json.loads(store.read_bytes(LOCK))
        assert renewed["token"] == first["token"] and renewed["expires"] > first["expires"]
    assert not store.exists(LOCK)
    # A lease whose holder stopped renewing (another host, expired) is taken over.
    stale = {"pid": 1, "host": "elsewhere", "since": time.time() - 600, "expires": time.time() - 1, "token": "old"}
    store.write_bytes(LOCK, json.dumps(stale).encode())
    with run_lock(run):
        assert json.loads(store.read_bytes(LOCK))["pid"] == os.getpid()
    # A live lease on another host is not.
    live = {**stale, "expires": time.time() + 600}
    store.write_bytes(LOCK, json.dumps(live).encode())
    with pytest.raises(GanrayError, match="in use by pid 1 on elsewhere"):
        with run_lock(run):
            pass
    assert json.loads(store.read_bytes(LOCK))["token"] == "old"


def test_a_full_disk_stops_train_with_one_line_and_the_rerun_resumes_from_the_last_checkpoint(tmp_path, capsys, ray_local):
    """A real full filesystem (a tmpfs with room for one checkpoint): `train` says "no space left on
    <run>" once, before Ray copies a checkpoint it would tear, and after the disk grows the same
    command resumes from the last whole checkpoint and finishes."""
    from conftest import CACHE_DIR
    from ganray.cli import main
    from ganray.runs.checkpoint import save_checkpoint
    from ganray.runs.run_dir import checkpoint_names, read_metrics
    from ganray.training.loop import gan_step
    from ganray.training.ray_train import HEADROOM
    from ganray.training.state import build_state

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")

    def train(steps: int) -> int:
        sets = ["model.width=0.25", "train.batch_size=32", f"train.steps={steps}", "train.log_every=10",
                "train.sample_every=100", "train.checkpoint_every=10", "ray.num_workers=1", f"storage.runs_dir={disk}",
                "storage.run_name=run", f"storage.cache_dir={CACHE_DIR}", "eval.every=0"]
        return main(["train", *(a for x in sets for a in ("--set", x))])

    try:
        # Room for one checkpoint (its size after a step, Adam's moments included) and the run's
        # small files, not for a second one.
        cfg = tiny_config(tmp_path)
        state = build_state(cfg, (1, 28, 28), 10, torch.device("cpu"))
        x = torch.rand(32, 1, 28, 28) * 2 - 1
        gan_step(cfg, state, state.G, state.D, x, torch.arange(32) % 10, torch.randn(32, cfg.model.z_dim), amp=False)
        save_checkpoint(tmp_path / "probe", state.state_dict(), {})
        size = sum(f.stat().st_size for f in (tmp_path / "probe").iterdir())
        subprocess.run(["mount", "-o", f"remount,size={size + HEADROOM + size // 2}", str(disk)], check=True)
        run = disk / "run"
        assert train(20) == 2  # the step-10 checkpoint fits, step 20's does not
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"ganray train: error: no space left on {run}"), last
        assert checkpoint_names(RunDir.at(run)) == ["step_0000010"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        assert train(20) == 0
        assert "resuming at step 10 of 20" in capsys.readouterr().err
        assert [m["step"] for m in read_metrics(RunDir.at(run))] == [10, 20]
        assert json.loads((run / "generator" / "generator.json").read_text())["step"] == 20
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
