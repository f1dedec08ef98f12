"""`ray job submit` end to end: a real head started with `ray start`, token authentication on.

The head and every `ray` command run as subprocesses with this test's own token
(RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH), so nothing touches ~/.ray and security stays on:
a submission without the token is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from conftest import CACHE_DIR
from ganray.ray_session import LOOPBACK_ENV
from s3server import find_leaks, free_ports
from test_security import is_loopback, listening

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def _ray(env: dict, *args: str, timeout: int = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"ray {' '.join(args[:3])} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def head(tmp_path_factory, s3):
    """A 2-CPU head on 127.0.0.1 with its own ports, temp dir and auth token; stopped at the end.

    Its processes see the test S3 server through AWS_* variables, as cluster nodes see S3 through
    their instance profile.
    """
    root = tmp_path_factory.mktemp("head")
    token = root / "auth_token"
    token.write_text(uuid.uuid4().hex)
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # `python` in a job's entrypoint is the one on the head's PATH: this venv's, as on a cluster node.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_TRAIN_V2_ENABLED="1", PYTHONUNBUFFERED="1")
    env.update(s3.env())
    env[LOOPBACK_ENV] = "0"  # what `ganray` sets when it starts a local Ray: every service on loopback
    gcs, dash, client, agent_grpc, agent_http, metrics, runtime_env, node_mgr, obj_mgr = free_ports(9)
    temp = Path("/tmp") / f"ray-e2e-{uuid.uuid4().hex[:6]}"  # short: Ray's socket paths have a length limit
    # `--block` keeps this head's processes under one process group that teardown can end;
    # `ray stop` would stop every Ray on the machine, the test session's own included.
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
         f"--port={gcs}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--dashboard-agent-listen-port={agent_http}",
         f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
         f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
         "--min-worker-port=21000", "--max-worker-port=21999", f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    env["RAY_ADDRESS"] = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 90
        while _ray(env, "job", "list", timeout=60, check=False).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, "the head did not come up"
            time.sleep(1)
        # The job API can answer before the raylet and agents listen: wait for them, then check them all.
        sockets = listening(psutil.Process(proc.pid).children(recursive=True))
        while len(sockets) < 5 and time.monotonic() < deadline + 60:
            time.sleep(1)
            sockets = listening(psutil.Process(proc.pid).children(recursive=True))
        assert len(sockets) >= 5 and [s for s in sockets if not is_loopback(s[1])] == [], sockets
        yield env, root, temp
    finally:
        # `ray start --block` rarely exits on SIGTERM within 30 s; the whole group is killed after 5.
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(temp, ignore_errors=True)


def submit(env: dict, job: str, *args: str, timeout: int = 420) -> dict:
    """Submit with `ray job submit`, wait for it, and return its final status and logs."""
    sid = f"{job}-{uuid.uuid4().hex[:8]}"
    _ray(env, "job", "submit", "--submission-id", sid, "--working-dir", str(REPO), "--", "python", f"jobs/{job}.py", *args,
         timeout=timeout, check=False)
    out = _ray(env, "job", "status", sid)
    status = (out.stdout + out.stderr).lower()
    logs = _ray(env, "job", "logs", sid).stdout
    return {"id": sid, "status": status, "logs": logs}


def sets(runs: str, *extra: str) -> list[str]:
    pairs = [
        f"storage.runs_dir={runs}", f"storage.cache_dir={CACHE_DIR}", "storage.run_name=job",
        "model.width=0.25", "train.batch_size=32", "train.steps=20", "train.log_every=10", "train.sample_every=10",
        "train.checkpoint_every=10", "ray.num_workers=1", "eval.every=10", "eval.num_samples=200", "eval.classifier_steps=150",
        "eval.cas_samples=200", "eval.cas_steps=20",
        *extra,
    ]
    return [a for p in pairs for a in ("--set", p)]


def test_train_evaluate_generate_and_tune_jobs_succeed_on_a_real_head(head, aws_env):
    """Train, evaluate and generate with everything on S3; the sweep on local disk."""
    from ganray.storage import open_store

    env, root, ray_temp = head
    s3root = f"s3://{aws_env.create_bucket('ganray-jobs')}/{root.name}"
    # Security stays on: without the token the job API refuses the submission.
    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN_PATH",)}
    no_token["HOME"] = str(root)  # no ~/.ray/auth_token to fall back on
    refused = _ray(no_token, "job", "list", timeout=60, check=False)
    assert refused.returncode != 0

    runs = f"{s3root}/runs"
    train = submit(env, "train", *sets(runs))
    assert "succeeded" in train["status"], train["logs"][-3000:]
    run = open_store(f"{runs}/job")
    assert run.exists("generator/generator.json") and run.exists("checkpoints/step_0000020/state.pt")
    assert [json.loads(l)["step"] for l in run.read_bytes("metrics.jsonl").decode().splitlines()][-1] == 20

    evaluate = submit(env, "evaluate", *sets(runs))
    assert "succeeded" in evaluate["status"], evaluate["logs"][-3000:]
    result = json.loads(run.read_bytes("evaluation.json"))
    assert result["generator_step"] == 20 and result["metrics"]["fid_domain"] > 0

    shards = f"{s3root}/shards"
    gen = submit(env, "generate", "--run", f"{runs}/job", "--out", shards,
                 *sets(runs, "generate.num_samples=150", "generate.shard_size=100"))
    assert "succeeded" in gen["status"], gen["logs"][-3000:]
    manifest = json.loads(open_store(shards).read_bytes("manifest.json"))
    assert manifest["num_samples"] == 150 and [e["nsamples"] for e in manifest["shardlist"]] == [100, 50]

    tune = submit(env, "tune", *sets(str(root / "runs"), "storage.run_name=sweep", "tune.num_samples=2", "tune.scheduler=fifo",
                                     "tune.space={train.lr_g: {loguniform: [0.0001, 0.001]}}", "eval.metrics=[fid]"))
    assert "succeeded" in tune["status"], tune["logs"][-3000:]
    rows = json.loads((root / "runs" / "sweep" / "results.json").read_text())["rows"]
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows)
    assert (root / "runs" / "sweep" / "generator" / "generator.json").is_file()

    bad = submit(env, "train", *sets(runs, "train.steps=ten"), timeout=120)
    assert "failed" in bad["status"] and "train.steps" in bad["logs"]

    # The jobs ran with S3 credentials in their environment; none is in their logs or outputs,
    # nor in Ray's own session logs (Ray Tune used to copy them into a logged runtime env).
    ray_logs = sorted(ray_temp.glob("session_*/logs"))  # not runtime_resources/: the uploaded repo holds the test's own secret
    assert ray_logs and list(ray_logs[0].glob("runtime_env_agent*.log")), "Ray's logs moved; point this scan at them"
    leaks = find_leaks([aws_env.access_key, aws_env.secret_key], stores=[open_store(s3root)], dirs=[root / "runs", *ray_logs],
                       texts=[j["logs"] for j in (train, evaluate, gen, tune, bad)])
    assert leaks == []
