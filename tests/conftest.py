"""Shared fixtures: one local Ray for the whole session, tiny configs, the digits splits."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from ganray.config import Config, load_config

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
torch.set_num_threads(2)

# One cache (domain classifiers, real-data features) shared by the whole session, never ~/.cache.
CACHE_DIR = tempfile.mkdtemp(prefix="ganray-test-cache-")


def set_args(*pairs: str) -> list[str]:
    """`--set` arguments for a CLI argv: set_args("a.b=1", "c.d=2") -> ["--set", "a.b=1", "--set", "c.d=2"]."""
    return [a for p in pairs for a in ("--set", p)]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """`ganray ARGV...` in this process: (exit code, stderr stripped)."""
    from ganray.cli import main

    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def tiny_config(tmp_path, *overrides: str) -> Config:
    """A config small enough to train in seconds on 2 CPUs."""
    base = [
        "model.width=0.25",
        "train.batch_size=32",
        "train.steps=10",
        "train.log_every=5",
        "train.sample_every=5",
        "train.checkpoint_every=5",
        "ray.num_workers=1",
        f"storage.runs_dir={tmp_path}",
        "storage.run_name=run",
        f"storage.cache_dir={CACHE_DIR}",
        "eval.every=0",
        "eval.classifier_steps=150",
        "eval.recipe_steps=150",
        "eval.num_samples=200",
        "eval.cas_samples=200",
        "eval.cas_steps=20",
    ]
    return load_config(None, [*base, *overrides])


@pytest.fixture(scope="session")
def ray_local(s3):
    """One local Ray (2 CPUs, loopback only) for every test that needs it.

    Its workers get the test S3 server's AWS_* variables, as cluster nodes get theirs from the
    environment or an instance profile; the test process itself sets them only where needed.
    """
    import ray

    from ganray.ray_session import start_local_ray

    if not ray.is_initialized():
        # The same loopback-only local Ray that `ganray` starts when there is no cluster.
        start_local_ray(num_cpus=2, logging_level="WARNING", runtime_env={"env_vars": s3.env()})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def digits():
    from ganray.data import load_splits
    from ganray.config import DataConfig

    return load_splits(DataConfig())


@pytest.fixture(scope="session")
def generator_dir(tmp_path_factory):
    """One exported generator for every test that generates from one (trained in-process, no Ray)."""
    from ganray.training.local import train_local

    root = tmp_path_factory.mktemp("gen")
    # Long enough that every class is recognizable, so the quality filter has something to keep.
    cfg = tiny_config(root, "train.steps=300", "train.checkpoint_every=300", "train.sample_every=300", "train.log_every=100")
    train_local(cfg, root / "run")
    return root / "run" / "generator"


@pytest.fixture(scope="session")
def s3():
    """A real S3 server (SeaweedFS on loopback ports, one admin identity), started on first use.

    Yields `tests/s3server.S3Server`: `.endpoint`, `.access_key`, `.secret_key`, `.region`,
    `.client()`, `.env()` (AWS_* vars for monkeypatch, subprocesses and Ray actors) and
    `.create_bucket(name)` (names need 3+ characters).
    """
    from s3server import start_s3_server

    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture
def aws_env(s3, monkeypatch, tmp_path):
    """Only the test server's credentials and endpoint in the env; no ~/.aws files, no instance metadata.

    Tests of missing credentials delete AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from here.
    """
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    empty = tmp_path / "aws-empty-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return s3
