"""Temp directories that a killed process leaves behind are removed by the next one of their kind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ganray.fileio import pid_gone, temp_dir


def test_a_killed_processes_temp_dir_is_removed_by_the_next_and_a_live_ones_is_kept():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    assert pid_gone(dead_pid) and not pid_gone(os.getpid()) and not pid_gone(1)
    root = Path(tempfile.gettempdir())
    left = root / f"ganray-testkind-{dead_pid}-x1"
    live = root / "ganray-testkind-1-x2"  # pid 1 is alive
    other = root / f"ganray-otherkind-{dead_pid}-x3"
    for d in (left, live, other):
        (d / "sub").mkdir(parents=True, exist_ok=True)
    try:
        with temp_dir("testkind") as tmp:
            assert Path(tmp).name.startswith(f"ganray-testkind-{os.getpid()}-") and Path(tmp).is_dir()
            assert not left.exists() and live.exists() and other.exists()
        assert not Path(tmp).exists()
        left.mkdir()  # the sweep ran once for this process and kind: a second temp dir does not glob again
        with temp_dir("testkind"):
            assert left.exists()
    finally:
        for d in (left, live, other):
            subprocess.run(["rm", "-rf", str(d)])
