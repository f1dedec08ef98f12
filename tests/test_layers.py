"""The package layers in pyproject.toml hold, and a back-edge breaks them (import-linter's own check)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the `ganray` under cwd, not the installed one
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_layers_hold():
    out = lint(ROOT)
    assert out.returncode == 0 and "1 kept, 0 broken" in out.stdout, out.stdout[-2000:]


def test_a_back_edge_breaks_the_layers(tmp_path):
    shutil.copytree(ROOT / "ganray", tmp_path / "ganray", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "ganray" / "storage" / "back_edge.py").write_text("from ganray.runs.export import load_generator\n")
    out = lint(tmp_path)
    assert out.returncode != 0 and "ganray.storage is not allowed to import ganray.runs" in out.stdout, out.stdout[-2000:]
