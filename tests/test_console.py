"""The console shows ganray's lines (and a training bar), not Ray's internals, unless --log-level debug."""

from __future__ import annotations

import io
import os
import subprocess
import sys


from conftest import CACHE_DIR, set_args
from ganray.console import MARK, DriverConsole

BATCH = {
    "pid": 42, "actor_name": "RayTrainWorker", "is_err": True,
    "lines": [
        f"{MARK}12:00:00 INFO ganray.training.hooks: step 10/20  loss_d 1.5",
        "Reporting training result 1: TrainingReport(checkpoint=Checkpoint(...), metrics={...})",
        "\x1b[36m[2026-12-02 08:41:09,743 E 20948 21017] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher'\x1b[0m",
        f"{MARK}12:00:01 INFO ganray.training.hooks: step 20/20  loss_d 0.9",
    ],
}


def test_the_driver_console_keeps_ganray_lines_and_drops_rays():
    sink = io.StringIO()
    console = DriverConsole(verbose=False, sink=sink)
    assert console.lines(BATCH) == [
        "12:00:00 INFO ganray.training.hooks: step 10/20  loss_d 1.5",
        "12:00:01 INFO ganray.training.hooks: step 20/20  loss_d 0.9",
    ]
    console(BATCH)
    assert sink.getvalue().splitlines() == console.lines(BATCH)  # no bar: the sink is not a terminal
    loud = DriverConsole(verbose=True).lines(BATCH)
    assert len(loud) == 4 and "(RayTrainWorker pid=42) Reporting training result 1: TrainingReport(" in loud[1]
    assert "\x1b[" not in "".join(loud) and "core_worker.cc" in loud[2]


def test_the_training_bar_follows_rank_zeros_steps():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    console = DriverConsole(verbose=False, sink=Tty())
    console({**BATCH, "lines": BATCH["lines"][:1]})
    assert console.bar is not None and console.bar.n == 10 and console.bar.total == 20
    console({**BATCH, "lines": BATCH["lines"][3:]})
    assert console.bar is None  # closed at the last step


def test_debug_level_lets_rays_lines_through():
    """`--log-level debug` (the ganray logger at DEBUG) installs the verbose console; other levels the filter."""
    import logging

    from ray._private import ray_logging

    from ganray.ray_session import quiet_console

    def installed() -> DriverConsole:
        [handler] = [h for name, h in ray_logging.global_worker_stdstream_dispatcher.handlers if name == "ganray_console"]
        return handler

    logger = logging.getLogger("ganray")
    before = logger.level
    try:
        logger.setLevel(logging.DEBUG)
        quiet_console()
        assert installed().verbose and "TrainingReport(" in "".join(installed().lines(BATCH))
    finally:
        logger.setLevel(before)
        quiet_console()
    assert not installed().verbose
    assert not [n for n, _ in ray_logging.global_worker_stdstream_dispatcher.handlers if n == "ray_print_logs"]


def test_a_cli_train_shows_ganray_lines_only(tmp_path, ray_local):
    sets = [
        "model.width=0.25", "train.batch_size=32", "train.steps=10", "train.log_every=5", "train.checkpoint_every=5",
        "ray.num_workers=1", f"storage.runs_dir={tmp_path}", "storage.run_name=run", f"storage.cache_dir={CACHE_DIR}",
        "eval.every=0", f"ray.address={ray_local.get_runtime_context().gcs_address}",
    ]
    out = subprocess.run([sys.executable, "-m", "ganray", "train", *set_args(*sets)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "ganray.training.hooks: step 10/10" in text and "run directory:" in text
    assert "TrainingReport(" not in text and "core_worker.cc" not in text and "\x1b[" not in text, text[-3000:]
    assert MARK not in text
