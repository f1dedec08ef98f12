"""`ray job submit` end to end on two Ray nodes: a head and a worker node, token authentication on.

Both nodes are started with `ray start` on this machine (each with its own CPUs, ports and temp
dir, all on 127.0.0.1) and stand in for two machines: the jobs train with one worker per node,
sweep and generate, and everything they exchange lives on the test S3 server, not on a path the
nodes share. The nodes and every `ray` command run as subprocesses with this test's own token
(RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH), so nothing touches ~/.ray and security stays on: a
submission without the token is refused.

Ray's `ray start` refuses a worker node under the loopback-only switch ganray sets for local
clusters (Ray's single-machine mode for macOS and Windows); the worker node is started through
the same CLI with only that refusal lifted, so both nodes' services still listen on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from conftest import CACHE_DIR, set_args
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


# `ray start` with its multi-node refusal lifted; everything else (the loopback switch included) as Ray reads it.
_RAY_START = (
    "import sys, types; import ray._private.ray_constants as rc; import ray.scripts.scripts as s; "
    "s.ray_constants = types.SimpleNamespace(**{**vars(rc), 'ENABLE_RAY_CLUSTER': True}); "
    "sys.argv = ['ray', *sys.argv[1:]]; s.main()"
)
_NODES = "import ray; ray.init(address='{}', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"


def _node(env: dict, temp: Path, worker_ports: tuple[int, int], *args: str) -> subprocess.Popen:
    """One node, blocking in its own process group (`ray stop` would stop every Ray on the machine)."""
    node_mgr, obj_mgr, metrics, agent_grpc, agent_http, runtime_env = free_ports(6)
    return subprocess.Popen(
        [sys.executable, "-c", _RAY_START, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
         f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}", f"--metrics-export-port={metrics}",
         f"--dashboard-agent-grpc-port={agent_grpc}", f"--dashboard-agent-listen-port={agent_http}",
         f"--runtime-env-agent-port={runtime_env}", f"--min-worker-port={worker_ports[0]}", f"--max-worker-port={worker_ports[1]}",
         f"--temp-dir={temp}", "--disable-usage-stats", *args],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    # `ray start --block` rarely exits on SIGTERM within 30 s; the whole group is killed after 5.
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def node_sockets(procs: list[subprocess.Popen]) -> list[tuple[str, str, int]]:
    return listening([c for p in procs for c in psutil.Process(p.pid).children(recursive=True)])


@pytest.fixture(scope="module")
def head(tmp_path_factory, s3):
    """A head and a worker node (2 CPUs each) on 127.0.0.1 with their own ports, temp dirs and auth
    token; stopped at the end. Yields (env for `ray` commands, root, [head, worker temp dir],
    [head, worker `ray start` process]).

    Their processes see the test S3 server through AWS_* variables, as cluster nodes see S3 through
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
    gcs, dash, client = free_ports(3)
    tag = uuid.uuid4().hex[:6]
    temps = [Path("/tmp") / f"ray-e2e{i}-{tag}" for i in (0, 1)]  # short: Ray's socket paths have a length limit
    procs = [_node(env, temps[0], (21000, 21499), "--head", f"--port={gcs}", f"--dashboard-port={dash}",
                   "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client}")]
    try:
        deadline = time.monotonic() + 120
        job_env = {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dash}"}
        while _ray(job_env, "job", "list", timeout=60, check=False).returncode != 0:
            assert procs[0].poll() is None and time.monotonic() < deadline, "the head did not come up"
            time.sleep(1)
        procs.append(_node(env, temps[1], (21500, 21999), f"--address=127.0.0.1:{gcs}"))
        alive = ""
        while alive != "2":
            assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, "the worker node did not join"
            time.sleep(1)
            out = subprocess.run([sys.executable, "-c", _NODES.format(f"127.0.0.1:{gcs}")], env=env, capture_output=True,
                                 text=True, timeout=60)
            alive = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
        # The job API can answer before the raylets and agents listen: wait for them, then check them all.
        def up() -> bool:  # the head's GCS, raylet, dashboard and agents; the worker's raylet and agents
            return len(node_sockets(procs[:1])) >= 5 and len(node_sockets(procs[1:])) >= 3

        while not up() and time.monotonic() < deadline + 60:
            time.sleep(1)
        sockets = node_sockets(procs)
        assert up() and [s for s in sockets if not is_loopback(s[1])] == [], sockets
        yield job_env, root, temps, procs
    finally:
        for p in reversed(procs):
            _stop(p)
        for t in temps:
            shutil.rmtree(t, ignore_errors=True)


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
    return set_args(*pairs)


def test_train_evaluate_generate_and_tune_jobs_succeed_across_two_nodes(head, aws_env):
    """Train with a worker on each node, evaluate, sweep and generate, with every output on S3."""
    from ganray.storage import open_store

    env, root, ray_temps, procs = head
    s3root = f"s3://{aws_env.create_bucket('ganray-jobs')}/{root.name}"
    # Security stays on: without the token the job API refuses the submission.
    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN_PATH",)}
    no_token["HOME"] = str(root)  # no ~/.ray/auth_token to fall back on
    refused = _ray(no_token, "job", "list", timeout=60, check=False)
    assert refused.returncode != 0

    runs = f"{s3root}/runs"
    train = submit(env, "train", *sets(runs, "ray.num_workers=2", "ray.placement=spread"))
    assert "succeeded" in train["status"], train["logs"][-3000:]
    placed = dict(re.findall(r"worker (\d)/2 on node (\w+)", train["logs"]))
    assert sorted(placed) == ["0", "1"] and len(set(placed.values())) == 2, train["logs"][-3000:]  # one worker per node
    run = open_store(f"{runs}/job")
    assert run.exists("generator/generator.json") and run.exists("checkpoints/step_0000020/state.pt")
    assert [json.loads(l)["step"] for l in run.read_bytes("metrics.jsonl").decode().splitlines()] == [10, 20]

    evaluate = submit(env, "evaluate", *sets(runs))
    assert "succeeded" in evaluate["status"], evaluate["logs"][-3000:]
    result = json.loads(run.read_bytes("evaluation.json"))
    exported = json.loads(run.read_bytes("generator/generator.json"))["step"]  # the run's selection picks 10 or 20
    assert result["generator_step"] == exported in (10, 20) and result["metrics"]["fid_domain"] > 0

    # Shard actors spread over both nodes write to S3; every shard's bytes match the manifest.
    shards = open_store(f"{s3root}/shards")
    gen = submit(env, "generate", "--run", f"{runs}/job", "--out", shards.uri(""),
                 *sets(runs, "generate.num_samples=150", "generate.shard_size=50", "generate.num_actors=2", "ray.placement=spread"))
    assert "succeeded" in gen["status"], gen["logs"][-3000:]
    manifest = json.loads(shards.read_bytes("manifest.json"))
    assert manifest["num_samples"] == 150 and [e["nsamples"] for e in manifest["shardlist"]] == [50, 50, 50]
    assert all(hashlib.sha256(shards.read_bytes(e["url"])).hexdigest() == e["sha256"] for e in manifest["shardlist"])

    tune = submit(env, "tune", *sets(runs, "storage.run_name=sweep", "tune.num_samples=2", "tune.scheduler=fifo", "eval.every=20",
                                     "tune.space={train.lr_g: {loguniform: [0.0001, 0.001]}}", "eval.metrics=[fid]"))
    assert "succeeded" in tune["status"], tune["logs"][-3000:]
    sweep = open_store(f"{runs}/sweep")
    rows = json.loads(sweep.read_bytes("results.json"))["rows"]
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows) and sweep.exists("generator/generator.json")

    bad = submit(env, "train", *sets(runs, "train.steps=ten"), timeout=120)
    assert "failed" in bad["status"] and "train.steps" in bad["logs"]

    # Both nodes still listen on loopback only. The jobs ran with S3 credentials in their
    # environment; none is in their logs or outputs, nor in either node's Ray session logs (Ray
    # Tune used to copy them into a logged runtime env).
    assert [s for s in node_sockets(procs) if not is_loopback(s[1])] == []
    ray_logs = sorted(d for t in ray_temps for d in t.glob("session_2*/logs"))  # not runtime_resources/: the uploaded repo holds the test's own secret
    assert len(ray_logs) == 2 and list(ray_logs[0].glob("runtime_env_agent*.log")), "Ray's logs moved; point this scan at them"
    leaks = find_leaks([aws_env.access_key, aws_env.secret_key], stores=[open_store(s3root)], dirs=ray_logs,
                       texts=[j["logs"] for j in (train, evaluate, gen, tune, bad)])
    assert leaks == []
