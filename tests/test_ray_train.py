"""Ray Train paths: 2-worker DDP replicas stay identical; train, stop, resume at the same step."""

from __future__ import annotations

import json
import sys

import ray.cloudpickle
import pytest
import torch

from conftest import tiny_config
from ganray.runs.export import load_generator
from ganray.runs.checkpoint import load_checkpoint
from ganray.training.ray_train import train_with_ray
from ganray.runs.selection import best_step
from ganray.runs.run_dir import checkpoint_names, read_metrics


# Ray workers cannot import this test module; ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _SaveFinal:
    """Hooks that write each rank's final weights, to compare replicas after DDP training."""

    def __init__(self, out, rank):
        self.out, self.rank = out, rank

    def log(self, step, metrics):
        pass

    def samples(self, step, png):
        pass

    def checkpoint(self, step, state, metrics):
        import psutil

        # The process group is up and in use here: among this worker's listening sockets are the
        # rendezvous store's (rank 0) and gloo's.
        sockets = [(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections("inet") if c.status == psutil.CONN_LISTEN]
        torch.save({"G": state.G.state_dict(), "D": state.D.state_dict(), "sockets": sockets}, f"{self.out}/rank{self.rank}.pt")

    def close(self):
        pass


def _ddp_worker(config):
    import ray.train

    from ganray.config import Config
    from ganray.data import load_splits
    from ganray.training.loop import Worker, train_gan

    cfg = Config.model_validate(config["cfg"])
    ctx = ray.train.get_context()
    torch.set_num_threads(1)
    data = load_splits(cfg.data).train
    train_gan(cfg, data, _SaveFinal(config["out"], ctx.get_world_rank()), Worker(ctx.get_world_rank(), ctx.get_world_size()))


@pytest.mark.parametrize("sync_bn", [False, True])
def test_two_worker_ddp_keeps_replicas_identical(ray_local, tmp_path, sync_bn):
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ganray.training.rendezvous import torch_config
    from test_security import is_loopback

    cfg = tiny_config(tmp_path, "ray.num_workers=2", "train.steps=6", "train.checkpoint_every=6", f"train.sync_batchnorm={sync_bn}")
    TorchTrainer(
        _ddp_worker,
        train_loop_config={"cfg": cfg.model_dump(), "out": str(tmp_path)},
        torch_config=torch_config(use_gpu=False),  # what train_with_ray uses
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="ddp", storage_path=str(tmp_path / "ray"), failure_config=FailureConfig(max_failures=0)),
    ).fit()
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # On this loopback-only cluster the rendezvous store (rank 0) and gloo (both ranks) listen on 127.0.0.1 only.
    assert len(r0["sockets"]) >= 2 and len(r1["sockets"]) >= 1, (r0["sockets"], r1["sockets"])
    assert [s for s in r0["sockets"] + r1["sockets"] if not is_loopback(s[0])] == []
    init = tiny_config(tmp_path)
    for net in ("G", "D"):
        params = [k for k in r0[net] if "running" not in k and "num_batches" not in k]
        assert params
        for k in params:
            assert torch.allclose(r0[net][k], r1[net][k], atol=1e-6), (net, k)
    # Cross-replica BatchNorm: both ranks saw the same (global) batch statistics, down to G's last forward.
    running = [k for k in r0["G"] if "running" in k]
    assert running
    same = all(torch.allclose(r0["G"][k], r1["G"][k], atol=1e-5) for k in running)
    assert same == sync_bn
    # And they trained: weights moved away from the shared initialization.
    from ganray.training.state import build_state

    start = build_state(init, (1, 28, 28), 10, torch.device("cpu"))
    assert not torch.allclose(start.G.state_dict()["project.weight"], r0["G"]["project.weight"])


def test_train_with_ray_then_resume_at_the_same_step(ray_local, tmp_path):
    # keep_checkpoints=1: step 5 is pruned, which Ray Train's snapshot still lists; the resume
    # below used to fail on it ("a corrupted run directory") until ganray dropped it from the snapshot.
    cfg = tiny_config(tmp_path, "ray.num_workers=2", "train.steps=10", "eval.every=10", "train.keep_checkpoints=1")
    out = train_with_ray(cfg)
    run = out.run.local
    assert run == tmp_path / "run" and not out.resumed
    assert out.checkpoint == str(run / "checkpoints" / "step_0000010")
    assert checkpoint_names(run) == ["step_0000010"]
    snapshot = json.loads((run / "checkpoints" / "checkpoint_manager_snapshot.json").read_text())
    assert [r["checkpoint_dir_name"] for r in snapshot["checkpoint_results"]] == ["step_0000005", "step_0000010"]
    assert (run / "samples" / "step_0000010.png").stat().st_size > 500
    assert [m["step"] for m in read_metrics(run)] == [5, 10]

    out2 = train_with_ray(tiny_config(tmp_path, "ray.num_workers=2", "train.steps=20", "eval.every=10"))
    assert out2.resumed and out2.checkpoint.endswith("/step_0000020")
    lines = read_metrics(run)
    assert [m["step"] for m in lines] == [5, 10, 15, 20]
    # Rank 0 evaluated with the driver's domain classifier at steps 10 and 20.
    assert [m["step"] for m in lines if "fid_domain" in m] == [10, 20]
    assert all(m["fid_domain"] > 0 and 0 <= m["precision_domain"] <= 1 for m in lines if "fid_domain" in m)
    # The checkpoint with the best cas_val (validation utility) is exported, carrying its metrics.
    step, _, value = best_step(lines, "cas_val")
    exported = load_generator(out2.generator)
    chosen = next(m for m in lines if m["step"] == step)
    assert exported.info["step"] == step and exported.info["metrics"]["fid_domain"] == chosen["fid_domain"]
    assert exported.info["selected_by"] == {"select": "cas_val", "metric": "cas_val", "value": value}
    state, meta = load_checkpoint(out2.checkpoint)
    assert state["step"] == 20 and meta["arch"] == "cdcgan"
    # ganray kept the newest keep_checkpoints=3 (and would keep the selected one, were it older).
    assert checkpoint_names(run) == ["step_0000020", "step_0000015", "step_0000010"]
    # On ganray's local Ray, Ray Train starts no preemption watcher (ray_session.LOCAL_TRAIN_ENV);
    # the state API lists the runs' finished controllers, so it would list a watcher too.
    from ray.util.state import list_actors

    own = ray_local.get_runtime_context().gcs_address  # this session's Ray, whatever else runs on the machine
    classes = [a.class_name for a in list_actors(address=own, limit=10_000)]
    assert classes.count("TrainController") >= 2 and "PreemptionWatcher" not in classes


def test_a_run_on_s3_trains_resumes_and_serves_evaluate_and_generate(ray_local, aws_env, tmp_path, capsys, caplog):
    """storage.runs_dir=s3://...: the docs/contracts.md layout on S3, nothing on local disk, every command reads it."""
    import json

    from ganray.cli import main
    from ganray.storage import open_store
    from ganray.runs.export import load_run_generator
    from ganray.runs.run_dir import RunDir
    from s3server import find_leaks

    root = f"s3://{aws_env.create_bucket('ganray-runs')}/{tmp_path.name}"
    first = train_with_ray(tiny_config(tmp_path, f"storage.runs_dir={root}", "train.steps=10", "eval.every=10"))
    run_uri = f"{root}/run"
    assert first.run.uri == run_uri and first.run.local is None and not first.resumed
    assert not (tmp_path / "run").exists()
    store = open_store(run_uri)
    keys = {o.key for o in store.list()}
    for key in ("config.yaml", "metrics.jsonl", "samples/step_0000005.png", "samples/step_0000010.png",
                "checkpoints/step_0000010/state.pt", "checkpoints/step_0000010/meta.json",
                "generator/generator.json", "generator/generator.safetensors"):
        assert key in keys, key
    assert first.checkpoint == f"{run_uri}/checkpoints/step_0000010"

    # The same command with more steps resumes from the checkpoint on S3.
    out = train_with_ray(tiny_config(tmp_path, f"storage.runs_dir={root}", "train.steps=20", "eval.every=10"))
    assert out.resumed and out.checkpoint == f"{run_uri}/checkpoints/step_0000020"
    lines = read_metrics(out.run)
    assert [m["step"] for m in lines] == [5, 10, 15, 20]
    assert [m["step"] for m in lines if "fid_domain" in m] == [10, 20]
    assert checkpoint_names(out.run) == ["step_0000020", "step_0000015", "step_0000010"]
    exported = load_generator(out.generator)
    best = max((m for m in lines if "cas_val" in m), key=lambda m: m["cas_val"])  # export.select=cas_val, across the resume
    assert exported.info["step"] == best["step"] and exported.info["metrics"]["fid_domain"] == best["fid_domain"]
    assert exported.fingerprint == load_run_generator(out.run).fingerprint
    curves = [o.key for o in store.list("tensorboard/")]  # staged locally, uploaded at each checkpoint
    assert len(curves) == 2 and all(k.startswith("tensorboard/events.out.tfevents.") for k in curves), curves

    common = ["--set", f"storage.cache_dir={tiny_config(tmp_path).storage.cache_dir}", "--set", "eval.num_samples=100"]
    assert main(["evaluate", "--run", run_uri, *common]) == 0
    result = json.loads(store.read_bytes("evaluation.json"))
    assert result["source"] == f"run:{run_uri}" and result["generator_step"] == best["step"] and result["metrics"]["fid_domain"] > 0
    shards = f"{root}/shards"
    assert main(["generate", "--generator", f"{run_uri}/generator", "--out", shards, "--set", "generate.num_samples=40",
                 "--set", "generate.shard_size=20", "--set", "generate.num_actors=1"]) == 0
    manifest = json.loads(open_store(shards).read_bytes("manifest.json"))
    assert manifest["num_samples"] == 40 and len(manifest["shardlist"]) == 2
    assert manifest["generator"] == exported.fingerprint

    # No credential in anything written: run dir and shards on S3, local files, logs and output.
    leaks = find_leaks([aws_env.access_key, aws_env.secret_key], stores=[open_store(root)], dirs=[tmp_path],
                       texts=[caplog.text, *capsys.readouterr()])
    assert leaks == []

    # A corrupt latest checkpoint on S3 is skipped, and the warning names it by its S3 URI.
    store.write_bytes("checkpoints/step_0000020/state.pt", b"torn")
    assert load_run_generator(RunDir.at(run_uri), select="last").info["step"] == 15
    assert f"{run_uri}/checkpoints/step_0000020/state.pt" in caplog.text and "fails its checksum" in caplog.text


def test_a_sigkilled_worker_is_replaced_and_training_ends_at_the_requested_step(ray_local, tmp_path):
    """SIGKILL one of two DDP workers mid-run: Ray Train restarts the group from the latest checkpoint."""
    import os
    import signal
    import threading
    import time

    import psutil

    run = tmp_path / "run"
    cfg = tiny_config(tmp_path, "ray.num_workers=2", "train.steps=200", "train.checkpoint_every=20",
                      "train.sample_every=100", "ray.max_failures=2")
    killed: list[tuple[int, bool]] = []

    def step_40_persisted() -> bool:
        # state.pt alone can be mid-copy (Ray persists the files one by one, and a kill then tears
        # the checkpoint, so the group rightly resumes from step 20). Step 45's log line comes after
        # step 40's ray.train.report returned, which is after its checkpoint was fully persisted.
        try:
            return any(json.loads(line)["step"] >= 45 for line in (run / "metrics.jsonl").read_text().splitlines())
        except (FileNotFoundError, json.JSONDecodeError):  # not yet written, or a line half-written
            return False

    def kill_one_worker_after_step_40() -> None:
        deadline = time.monotonic() + 240
        while not step_40_persisted() and time.monotonic() < deadline:
            time.sleep(0.02)
        for p in psutil.process_iter(["pid", "cmdline"]):
            if "RayTrainWorker" in " ".join(p.info["cmdline"] or []):
                finished = (run / "checkpoints" / "step_0000200").exists()
                os.kill(p.info["pid"], signal.SIGKILL)
                killed.append((p.info["pid"], finished))
                return

    killer = threading.Thread(target=kill_one_worker_after_step_40)
    killer.start()
    out = train_with_ray(cfg)
    killer.join()
    assert len(killed) == 1 and killed[0][1] is False, killed  # killed mid-run, before the last checkpoint
    assert not psutil.pid_exists(killed[0][0]) or psutil.Process(killed[0][0]).status() == psutil.STATUS_ZOMBIE
    assert out.checkpoint.endswith("/step_0000200")
    # Lines past the checkpoint the group restarted from were dropped: every logged step appears once.
    lines = read_metrics(run)
    assert [m["step"] for m in lines] == list(range(5, 201, 5))
    # The restart shows as the one long pause, right after a checkpoint step at or after step 40.
    gaps = [(b["time"] - a["time"], a["step"]) for a, b in zip(lines, lines[1:])]
    pause, after = max(gaps)
    assert pause > 2 and after % 20 == 0 and after >= 40, gaps
    assert load_generator(out.generator).info["step"] == 200
