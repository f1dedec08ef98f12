"""One writer per run directory: the second is refused naming the holder; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

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


def test_a_checkpoint_the_disk_cannot_hold_is_refused_before_ray_copies_it(tmp_path):
    """A real full filesystem (a tiny tmpfs): one line naming the run dir, instead of a torn state.pt."""
    import subprocess

    from ganray.errors import GanrayError
    from ganray.runs.run_dir import RunDir
    from ganray.training.ray_train import check_room

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        run, staged = RunDir.at(small / "run"), tmp_path / "staged"
        (small / "run").mkdir()
        staged.mkdir()
        (staged / "state.pt").write_bytes(b"x" * 512_000)
        check_room(run, staged)  # 0.5 MB + 1 MB headroom fit in 2 MB
        (staged / "state.pt").write_bytes(b"x" * 1_500_000)
        with pytest.raises(GanrayError, match=f"no space left on {small / 'run'}; free some space"):
            check_room(run, staged)
        assert list((small / "run").iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
