"""Load: two `ganray generate` into different outputs at once, while a `ganray train` runs.

Three CLI processes join the test session's 2-CPU Ray together, so they compete for its CPUs;
each must finish on its own terms: shards byte-identical to a run alone, a training run with
every step once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import CACHE_DIR, set_args
from ganray.cli import main
from ganray.runs.run_dir import read_metrics
from test_generate import shard_files

N, SHARD, STEPS = 250, 100, 40


def _generate_argv(tmp_path: Path, generator_dir: Path, out: Path) -> list[str]:
    return ["generate", "--generator", str(generator_dir), *set_args(
        f"generate.out={out}", f"generate.num_samples={N}", f"generate.shard_size={SHARD}",
        f"storage.runs_dir={tmp_path}", f"storage.cache_dir={CACHE_DIR}",
    )]


def test_two_generates_and_a_train_at_once_all_complete_exactly(tmp_path, ray_local, generator_dir):
    assert main(_generate_argv(tmp_path, generator_dir, tmp_path / "alone")) == 0
    alone = json.loads((tmp_path / "alone" / "manifest.json").read_text())

    address = f"ray.address={ray_local.get_runtime_context().gcs_address}"
    train = ["train", *set_args(
        "model.width=0.25", "train.batch_size=32", f"train.steps={STEPS}", "train.log_every=10", "train.sample_every=20",
        "train.checkpoint_every=20", "ray.num_workers=1", f"storage.runs_dir={tmp_path}", "storage.run_name=busy",
        f"storage.cache_dir={CACHE_DIR}", "eval.every=0", address,
    )]
    argvs = {
        "train": train,
        "a": [*_generate_argv(tmp_path, generator_dir, tmp_path / "a"), "--set", address],
        "b": [*_generate_argv(tmp_path, generator_dir, tmp_path / "b"), "--set", address],
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = {k: subprocess.Popen([sys.executable, "-m", "ganray.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env) for k, argv in argvs.items()}
    try:
        errs = {k: p.communicate(timeout=420)[1] for k, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
    for k, p in procs.items():
        assert p.returncode == 0, f"{k} exited {p.returncode}:\n{errs[k][-3000:]}"

    for out in ("a", "b"):
        manifest = json.loads((tmp_path / out / "manifest.json").read_text())
        assert manifest["shardlist"] == alone["shardlist"] and manifest["identity_hash"] == alone["identity_hash"]
        assert shard_files(tmp_path / out) == shard_files(tmp_path / "alone")
    assert [m["step"] for m in read_metrics(tmp_path / "busy")] == list(range(10, STEPS + 1, 10))
    assert json.loads((tmp_path / "busy" / "generator" / "generator.json").read_text())["step"] == STEPS
