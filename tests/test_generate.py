"""Generate and augment: deterministic, resumable, idempotent WebDataset shards on disk and S3."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CACHE_DIR, run_cli, tiny_config
from ganray.config import DataConfig
from ganray.data import load_splits
from ganray.data.wds import load_shards
from ganray.errors import GanrayError
from ganray.generation.jobs import augment, generate
from ganray.generation.manifest import KIND, same_content
from ganray.generation.plan import ShardPlan, class_counts
from ganray.generation.pool import actor_name, default_actors
from ganray.storage import count_requests, open_store
from ganray.runs.export import load_generator

N, SHARD = 250, 100  # three shards, the last one short


def gen_config(tmp_path, out: str, *extra: str):
    return tiny_config(tmp_path, f"generate.out={out}", f"generate.num_samples={N}", f"generate.shard_size={SHARD}", *extra)


def shard_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))}


@pytest.mark.parametrize(
    "resources, cpus, gpus, expected",
    [
        ({"CPU": 2.0}, 1.0, 0.0, 2),  # one per CPU
        ({"CPU": 16.0, "GPU": 1.0}, 4.0, 1.0, 1),  # a GPU each: the GPU runs out
        ({"CPU": 16.0, "GPU": 1.0}, 1.0, 0.125, 8),  # 8 share the GPU
        ({"CPU": 16.0, "GPU": 1.0}, 4.0, 0.125, 4),  # ... unless the CPUs run out first
        ({"CPU": 16.0, "GPU": 1.0}, 1.0, 0.1, 10),  # 1 / 0.1 in floats is 9.999...
        ({"CPU": 2.0}, 1.0, 1.0, 1),  # no GPU in the cluster: one actor, which waits and is reported by Ray
    ],
)
def test_default_actor_count_fits_the_cluster(resources, cpus, gpus, expected):
    assert default_actors(resources, cpus, gpus) == expected


def test_plan_labels_follow_the_requested_mix_and_noise_depends_on_seed_and_shard_only():
    assert class_counts(10, [1, 1, 2]) == [3, 2, 5]  # largest remainder; ties go to the lower class
    plan = ShardPlan.build(1000, 64, 7, [1, 3])
    labels = np.concatenate([plan.labels(s) for s in range(plan.num_shards)])
    assert np.bincount(labels).tolist() == [250, 750]
    assert all(abs(np.mean(plan.labels(s)) - 0.75) < 0.05 for s in range(plan.num_shards - 1))  # mixed in every shard
    assert np.array_equal(plan.rng(3).standard_normal(4), ShardPlan.build(5, 1, 7, [1]).rng(3).standard_normal(4))
    assert not np.array_equal(plan.rng(3).standard_normal(4), plan.rng(4).standard_normal(4))


def test_shards_are_byte_identical_whatever_the_actor_count_and_the_manifest_is_exact(tmp_path, ray_local, generator_dir):
    loaded = load_generator(generator_dir)
    one = generate(gen_config(tmp_path, str(tmp_path / "one"), "generate.num_actors=1"), loaded)
    # How the pool is sized (actor count, GPU share) is scheduling: no part of the bytes or the manifest.
    two = generate(gen_config(tmp_path, str(tmp_path / "two"), "generate.num_actors=2", "generate.gpus_per_actor=0.5"), loaded)
    a, b = shard_files(tmp_path / "one"), shard_files(tmp_path / "two")
    assert list(a) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"] and a == b
    m = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert m == two.manifest and m["__kind__"] == KIND and m["num_samples"] == N
    assert [e["nsamples"] for e in m["shardlist"]] == [100, 100, 50]
    for entry in m["shardlist"]:
        data = b[entry["url"]]
        assert entry["filesize"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert m["class_counts"] == {str(c): 25 for c in range(10)}  # balanced by default
    assert m["generator"] == loaded.fingerprint and m["seed"] == 0 and same_content(one.manifest, m)
    # The tar follows docs/contracts.md: sorted members, fixed metadata, keys without dots.
    with tarfile.open(fileobj=io.BytesIO(a["shard-000000.tar"])) as tar:
        members = tar.getmembers()
    names = [t.name for t in members]
    assert names == sorted(names) and names[:3] == ["000000_000000.cls", "000000_000000.json", "000000_000000.png"]
    assert {(t.mtime, t.uid, t.gid, t.uname, t.gname) for t in members} == {(946684800, 0, 0, "", "")}
    # Read back by ganray, by the webdataset library, and by Ray Data: the same samples and labels.
    ours = load_shards(tmp_path / "two")
    assert len(ours) == N and ours.images.shape[1:] == (1, 28, 28)
    assert np.bincount(ours.labels.numpy()).tolist() == [25] * 10
    import webdataset as wds

    urls = [str(tmp_path / "two" / e["url"]) for e in m["shardlist"]]
    theirs = list(wds.WebDataset(urls, shardshuffle=False).decode("l8").to_tuple("png", "cls", "json"))
    assert [int(c) for _, c, _ in theirs] == ours.labels.tolist()
    assert np.array_equal(np.stack([np.asarray(img) for img, _, _ in theirs]), ours.images[:, 0].numpy())
    rows = ray_local.data.read_webdataset(urls, decoder=None).take_all()
    by_key = {r["__key__"]: int(r["cls"].decode() if isinstance(r["cls"], bytes) else r["cls"]) for r in rows}
    assert [by_key[k] for k in sorted(by_key)] == ours.labels.tolist()


def test_proportions_and_quality_filter_are_recorded(tmp_path, ray_local, generator_dir):
    out = generate(
        gen_config(tmp_path, str(tmp_path / "f"), "generate.classes=[1, 1, 1, 1, 1, 1, 1, 1, 1, 3]",
                   "generate.min_confidence=0.3", "generate.num_actors=1"),
        load_generator(generator_dir),
    )
    m = out.manifest
    assert m["class_counts"] == dict(zip(map(str, range(10)), [21] * 8 + [20, 62]))
    assert 0 < m["acceptance_rate"] < 1  # some samples were rejected and replaced
    with tarfile.open(tmp_path / "f" / "shard-000000.tar") as tar:
        metas = [json.loads(tar.extractfile(t).read()) for t in tar.getmembers() if t.name.endswith(".json")]
    assert all(meta["confidence"] >= 0.3 for meta in metas)


def test_s3_rerun_writes_nothing_and_deleted_shards_alone_are_rewritten(tmp_path, ray_local, generator_dir, aws_env):
    s3 = aws_env
    bucket = s3.create_bucket("ganray-gen")
    uri = f"s3://{bucket}/{tmp_path.name}/out"
    cfg = gen_config(tmp_path, uri, "generate.num_actors=2")
    loaded = load_generator(generator_dir)
    first = generate(cfg, loaded)
    assert first.written == [0, 1, 2]
    store = open_store(uri, cfg.storage)
    client = s3.client()

    def objects() -> dict[str, tuple[str, object]]:
        listing = client.list_objects_v2(Bucket=bucket, Prefix=f"{tmp_path.name}/out/")["Contents"]
        return {o["Key"].rsplit("/", 1)[-1]: (o["ETag"], o["LastModified"]) for o in listing}

    before = objects()
    with count_requests(store) as counter:
        again = generate(cfg, loaded)
    assert again.written == [] and again.kept == [0, 1, 2] and counter.writes == 0
    assert objects() == before
    store.delete("shard-000000.tar")
    store.delete("shard-000002.tar")
    time.sleep(1.1)  # LastModified has one-second resolution
    third = generate(cfg, loaded)
    assert sorted(third.written) == [0, 2] and third.kept == [1]
    after = objects()
    assert after["shard-000001.tar"] == before["shard-000001.tar"] and after["manifest.json"] == before["manifest.json"]
    assert after["shard-000000.tar"][0] == before["shard-000000.tar"][0]  # same bytes (ETag) rewritten
    assert after["shard-000000.tar"][1] != before["shard-000000.tar"][1]
    # The S3 output reads back identically to a local one, also as a `wds` data source.
    local = generate(gen_config(tmp_path, str(tmp_path / "local"), "generate.num_actors=1"), loaded)
    assert [e["sha256"] for e in local.manifest["shardlist"]] == [e["sha256"] for e in third.manifest["shardlist"]]
    splits = load_splits(DataConfig(source="wds", path=uri, test_fraction=0.2))
    assert len(splits.train) + len(splits.val) + len(splits.test) == N
    assert tuple(splits.train.class_names) == tuple(loaded.info["class_names"])


def test_a_store_down_mid_run_is_one_error_and_the_rerun_writes_only_what_is_missing(tmp_path, ray_local, generator_dir, aws_env):
    """S3 goes down (503 SlowDown to everything) after three shard uploads, for longer than the retries."""
    from faultproxy import FaultProxy

    proxy = FaultProxy(aws_env.endpoint)
    try:
        uri = f"s3://{aws_env.create_bucket('ganray-gen')}/{tmp_path.name}/down"
        cfg = gen_config(tmp_path, uri, "generate.num_samples=500", "generate.num_actors=1",
                         f"storage.endpoint_url={proxy.endpoint}", "storage.max_attempts=2")
        loaded = load_generator(generator_dir)
        proxy.down_after(lambda m, p, q: m == "PUT" and p.endswith(".tar"), 3)
        with pytest.raises(GanrayError) as e:
            generate(cfg, loaded)
        assert "kept failing" in str(e.value) and "SlowDown" in str(e.value) and "\n" not in str(e.value)
        assert not open_store(uri, cfg.storage.model_copy(update={"endpoint_url": aws_env.endpoint})).exists("manifest.json")
        proxy.down = False
        again = generate(cfg, loaded)
    finally:
        proxy.stop()
    assert len(again.kept) >= 2 and not set(again.kept) & set(again.written)
    assert sorted(again.kept + again.written) == [0, 1, 2, 3, 4]
    clean = generate(gen_config(tmp_path, str(tmp_path / "clean"), "generate.num_samples=500", "generate.num_actors=1"), loaded)
    assert again.manifest["shardlist"] == clean.manifest["shardlist"]  # the same bytes as a run without faults
    assert again.manifest["num_samples"] == 500


def test_a_sigkilled_actor_mid_shard_loses_and_duplicates_nothing(tmp_path, ray_local, generator_dir):
    """SIGKILL an actor's process while shards are in flight: its shard is redone, the bytes match a clean run."""
    import os
    import signal

    loaded = load_generator(generator_dir)
    reference = tmp_path / "ref"
    generate(gen_config(tmp_path, str(reference), "generate.num_samples=1200", "generate.num_actors=1"), loaded)
    out_dir = tmp_path / "killed"
    cfg = gen_config(tmp_path, str(out_dir), "generate.num_samples=1200", "generate.num_actors=2")
    result: dict = {}
    worker = threading.Thread(target=lambda: result.setdefault("out", generate(cfg, loaded)))
    worker.start()
    ident = json.loads((reference / "manifest.json").read_text())["identity_hash"]
    pid, finished_at_kill = None, None
    deadline = time.monotonic() + 120
    while pid is None and time.monotonic() < deadline:
        try:
            pid = ray_local.get(ray_local.get_actor(actor_name(ident, 1)).pid.remote(), timeout=30)
        except ValueError:  # not created yet
            time.sleep(0.02)
    while finished_at_kill is None and time.monotonic() < deadline:
        done = list((out_dir / "_parts").glob("*.json")) if (out_dir / "_parts").is_dir() else []
        if done:  # the first shard is finished; both actors have shards in flight
            finished_at_kill = len(done)
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)
    worker.join(timeout=300)
    assert pid is not None and finished_at_kill is not None and finished_at_kill < 12
    assert "out" in result
    assert shard_files(out_dir) == shard_files(reference)
    assert result["out"].manifest["shardlist"] == json.loads((reference / "manifest.json").read_text())["shardlist"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["_parts", "manifest.json", *sorted(shard_files(reference))]


def test_augment_keeps_originals_and_labels_copies(tmp_path, ray_local):
    cfg = tiny_config(tmp_path, f"generate.out={tmp_path / 'aug'}", "data.train_fraction=0.05", "generate.augment_copies=2",
                      "generate.shard_size=50", "generate.num_actors=2")
    out = augment(cfg)
    real = load_splits(cfg.data).train
    assert out.manifest["num_samples"] == 3 * len(real)
    back = load_shards(tmp_path / "aug")
    assert torch.equal(back.images[::3], real.images)  # every third sample is an original
    assert torch.equal(back.labels, real.labels.repeat_interleave(3))
    assert not torch.equal(back.images[1::3], real.images)  # the copies are transformed
    again = augment(cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"out": str(tmp_path / "aug2"), "num_actors": 1})}))
    assert shard_files(tmp_path / "aug") == shard_files(tmp_path / "aug2")
    assert again.manifest["shardlist"] == out.manifest["shardlist"]


def test_bad_outputs_are_one_line_errors(tmp_path, ray_local, generator_dir, aws_env, monkeypatch, capsys):
    base = ["generate", "--generator", str(generator_dir), "--set", f"generate.num_samples={N}", "--set", f"storage.runs_dir={tmp_path}"]
    # A foreign manifest: same place, other seed.
    assert run_cli(capsys, *base, "--out", str(tmp_path / "o"))[0] == 0
    code, err = run_cli(capsys, *base, "--out", str(tmp_path / "o"), "--set", "generate.seed=1")
    assert code == 2 and "holds another output" in err and "generate.overwrite=true" in err and len(err.splitlines()) == 1
    assert run_cli(capsys, *base, "--out", str(tmp_path / "o"), "--set", "generate.seed=1", "--set", "generate.overwrite=true")[0] == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["seed"] == 1
    # Unwritable local path.
    (tmp_path / "file").write_text("x")
    code, err = run_cli(capsys, *base, "--out", str(tmp_path / "file" / "o"))
    assert code == 2 and "cannot write" in err and len(err.splitlines()) == 1
    # Missing bucket, then no credentials.
    code, err = run_cli(capsys, *base, "--out", "s3://no-such-bucket-x/o")
    assert code == 2 and "does not exist" in err and len(err.splitlines()) == 1
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k)
    code, err = run_cli(capsys, *base, "--out", f"s3://{aws_env.create_bucket('ganray-gen')}/nocreds")
    assert code == 2 and "credentials" in err and aws_env.secret_key not in err and len(err.splitlines()) == 1
    # An actor's own error (the filter cannot be met) reaches the user as its one line, not a Ray traceback.
    code, err = run_cli(capsys, *base, "--out", str(tmp_path / "strict"), "--set", "generate.min_confidence=0.9",
                     "--set", f"storage.cache_dir={CACHE_DIR}", "--set", "eval.classifier_steps=1")  # an untrained judge: p ~ 0.1
    last = err.splitlines()[-1]  # above it, only the progress bar
    assert code == 2 and last.startswith("ganray generate: error: shard 0:") and "lower generate.min_confidence" in last
    # Proportions must match the classes.
    code, err = run_cli(capsys, *base, "--out", str(tmp_path / "p"), "--set", "generate.classes=[1, 2]")
    assert code == 2 and "one per class" in err


def test_our_tar_writer_matches_tarfile_byte_for_byte():
    from ganray.generation.shard import MTIME, Sample, encode_png, shard_bytes

    samples = [Sample(f"000003_{i:06d}", np.full((1, 6, 6), 40 * i, np.uint8), i % 3, {"i": i, "name": "é"}) for i in range(7)]
    members = []
    for s in samples:
        members += [
            (f"{s.key}.cls", str(s.label).encode()),
            (f"{s.key}.json", json.dumps(s.meta, sort_keys=True, separators=(",", ":")).encode()),
            (f"{s.key}.png", encode_png(s.image)),
        ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), MTIME, 0o644, 0, 0, "", ""
            tar.addfile(info, io.BytesIO(data))
    assert shard_bytes(samples) == buf.getvalue()


def test_a_run_and_its_exported_generator_have_one_fingerprint(generator_dir):
    from ganray.runs.export import load_run_generator

    exported, run = load_generator(generator_dir), load_run_generator(generator_dir.parent)
    assert exported.fingerprint == run.fingerprint and len(run.fingerprint) == 16


def test_shards_of_an_interrupted_different_run_do_not_join_the_output(tmp_path, ray_local, generator_dir):
    loaded = load_generator(generator_dir)
    out = tmp_path / "o"
    generate(gen_config(tmp_path, str(out), "generate.num_actors=1"), loaded)
    (out / "manifest.json").unlink()  # as if that run had been cut short before its manifest
    smaller = generate(gen_config(tmp_path, str(out), "generate.num_samples=150", "generate.num_actors=1"), loaded)
    assert smaller.written == [0, 1]  # another identity: nothing of the old run is trusted
    assert sorted(shard_files(out)) == ["shard-000000.tar", "shard-000001.tar"]
    assert sorted(p.name for p in (out / "_parts").iterdir()) == ["shard-000000.json", "shard-000001.json"]
    assert len(load_shards(out)) == 150


def test_100k_images_to_s3_have_exact_counts_and_actor_memory_stays_bounded(tmp_path, ray_local, generator_dir, aws_env):
    """Load: 100,000 images (20 shards) to the S3 server; RSS of each actor sampled while it runs."""
    import logging

    import psutil

    uri = f"s3://{aws_env.create_bucket('ganray-load')}/{tmp_path.name}"
    cfg = tiny_config(tmp_path, f"generate.out={uri}", "generate.num_samples=100000", "generate.shard_size=5000",
                      "generate.num_actors=2")
    rss: dict[int, list[int]] = {}
    done = threading.Event()

    def shard_actors() -> set[int]:
        return {p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"]) if "ShardActor" in " ".join(p.info["cmdline"] or [])}

    earlier = shard_actors()  # other tests' actors may still be exiting

    def watch() -> None:
        while not done.is_set():
            for p in psutil.process_iter(["pid", "cmdline"]):
                if p.info["pid"] not in earlier and "ShardActor" in " ".join(p.info["cmdline"] or []):
                    try:
                        rss.setdefault(p.info["pid"], []).append(p.memory_info().rss)
                    except psutil.NoSuchProcess:
                        pass
            done.wait(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = generate(cfg, load_generator(generator_dir))
    finally:
        done.set()
        watcher.join()
    m = out.manifest
    assert m["num_samples"] == 100_000 and len(m["shardlist"]) == 20
    assert [e["nsamples"] for e in m["shardlist"]] == [5000] * 20 and sum(m["class_counts"].values()) == 100_000
    tars = {o.key: o.size for o in open_store(uri).list() if o.key.endswith(".tar")}
    assert tars == {e["url"]: e["filesize"] for e in m["shardlist"]}
    assert len(rss) == 2, rss.keys()
    MiB = 1 << 20
    for pid, series in rss.items():
        assert len(series) >= 10, series
        settled = series[len(series) // 4]  # after the first shards: model loaded, buffers allocated
        growth = max(series[len(series) // 4 :]) - settled
        logging.getLogger(__name__).info("actor %d: RSS settled %.0f MiB, peak %.0f MiB, growth after %.0f MiB",
                                         pid, settled / MiB, max(series) / MiB, growth / MiB)
        assert growth < 150 * MiB and max(series) < 2048 * MiB, (settled / MiB, max(series) / MiB)


def test_png_level_trades_size_for_speed_and_keeps_pixels_and_default_identity(tmp_path, ray_local, generator_dir):
    loaded = load_generator(generator_dir)
    default = generate(gen_config(tmp_path, str(tmp_path / "l6"), "generate.num_actors=1"), loaded)
    stored = generate(gen_config(tmp_path, str(tmp_path / "l0"), "generate.num_actors=1", "generate.png_compress_level=0"), loaded)
    a, b = load_shards(tmp_path / "l6"), load_shards(tmp_path / "l0")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    def png_bytes(out: Path) -> int:  # tar members are padded to 512-byte blocks, so compare the PNGs themselves
        return sum(m.size for p in sorted(out.glob("shard-*.tar")) for m in tarfile.open(p) if m.name.endswith(".png"))

    assert png_bytes(tmp_path / "l0") > 1.1 * png_bytes(tmp_path / "l6")  # 1.24x here
    assert stored.manifest["identity_hash"] != default.manifest["identity_hash"]
    # The default level is not part of the identity, so outputs written before the setting resume as before.
    assert "png_compress_level" not in default.manifest["identity"] and stored.manifest["identity"]["png_compress_level"] == 0


def test_latent_scale_changes_the_samples_spread(tmp_path, generator_dir):
    import io

    import numpy as np
    from PIL import Image

    from ganray.generation.render import GeneratedShards

    loaded = load_generator(generator_dir)
    plan = ShardPlan.build(300, 300, 0, [1.0] * 10)
    names = tuple(loaded.info["class_names"])

    def spread(scale: float) -> float:
        data, _ = GeneratedShards(loaded.G, plan, names, "test", latent_scale=scale).render(0)
        tar = tarfile.open(fileobj=io.BytesIO(data))
        images = np.stack([np.asarray(Image.open(tar.extractfile(m)), dtype=np.float64) for m in tar if m.name.endswith(".png")])
        labels = plan.labels(0)
        # Mean per-pixel std across the samples of each class: how different the samples are.
        return float(np.mean([images[labels == c].std(axis=0).mean() for c in range(10)]))

    narrow, normal, wide = spread(0.25), spread(1.0), spread(2.0)
    assert narrow < 0.7 * normal and normal < wide


def _perturbed(loaded, scale: float = 0.9):
    """A second, different generator of the same data: the first's weights with the output layer scaled."""
    import copy

    from ganray.runs.export import LoadedGenerator

    G = copy.deepcopy(loaded.G)
    last = [p for p in G.parameters() if p.dim() == 4][-1]
    with torch.no_grad():
        last.mul_(scale)
    return LoadedGenerator(G, dict(loaded.info))


def _metas(out: Path) -> list[dict]:
    metas = []
    for shard in sorted(out.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            metas += [json.loads(tar.extractfile(t).read()) for t in tar.getmembers() if t.name.endswith(".json")]
    return metas


def test_ensemble_shards_are_byte_identical_across_actor_counts_and_split_each_class(tmp_path, ray_local, generator_dir):
    a = load_generator(generator_dir)
    b = _perturbed(a)
    assert a.fingerprint != b.fingerprint
    one = generate(gen_config(tmp_path, str(tmp_path / "one"), "generate.num_actors=1"), [a, b])
    two = generate(gen_config(tmp_path, str(tmp_path / "two"), "generate.num_actors=2"), [a, b])
    assert shard_files(tmp_path / "one") == shard_files(tmp_path / "two") and len(shard_files(tmp_path / "one")) == 3
    assert one.manifest["identity"]["generator"] == [a.fingerprint, b.fingerprint] == two.manifest["recipe"]["generators"]
    single = generate(gen_config(tmp_path, str(tmp_path / "single"), "generate.num_actors=1"), a)
    assert single.manifest["identity_hash"] != one.manifest["identity_hash"]
    assert "member" not in _metas(tmp_path / "single")[0]
    # Each class's samples alternate between the members: 25 per class -> 13 and 12.
    metas = _metas(tmp_path / "one")
    for c in range(10):
        members = [m["member"] for m in metas if m["class_name"] == str(c)]
        assert sorted(np.bincount(members).tolist()) == [12, 13]
    # Member 0's samples are the single generator's: each shard draws one noise row per sample, in
    # order, whichever member uses it (up to a grey level: the members run in smaller batches).
    ours, theirs = load_shards(tmp_path / "one"), load_shards(tmp_path / "single")
    diff = (ours.images.int() - theirs.images.int()).abs().flatten(1).amax(1)
    firsts = torch.tensor([m["member"] == 0 for m in metas])
    assert diff[firsts].max() <= 1 and (diff[~firsts] > 1).all()
    # Members of different data are refused in one line.
    other = _perturbed(a)
    other.info["class_names"] = [f"c{i}" for i in range(10)]
    with pytest.raises(GanrayError, match="differ in class names"):
        generate(gen_config(tmp_path, str(tmp_path / "bad")), [a, other])
    assert not (tmp_path / "bad").exists()
    # A student teacher trains on one generator's samples: an ensemble is refused before any work.
    with pytest.raises(GanrayError, match="generate.teacher=mix-50-ens-hard trains its classifiers on one generator"):
        generate(gen_config(tmp_path, str(tmp_path / "bad"), "generate.soft_labels=true", "generate.teacher=mix-50-ens-hard"), [a, b])
    assert not (tmp_path / "bad").exists()


def test_soft_labels_are_the_judges_probabilities_and_sum_to_one(tmp_path, ray_local, generator_dir):
    out = generate(gen_config(tmp_path, str(tmp_path / "soft"), "generate.soft_labels=true", "generate.num_actors=1",
                              "generate.num_samples=100"), load_generator(generator_dir))
    metas = _metas(tmp_path / "soft")
    assert len(metas) == 100 and out.manifest["identity"]["soft_labels"] is True and out.manifest["acceptance_rate"] == 1.0
    for m in metas:
        p = np.asarray(m["soft_label"])
        assert p.shape == (10,) and (p >= 0).all() and abs(p.sum() - 1) < 1e-4
        assert p[int(m["class_name"])] == m["confidence"]
    # The judge is a real classifier, not a constant: most samples get their own class as the top guess.
    assert np.mean([np.argmax(m["soft_label"]) == int(m["class_name"]) for m in metas]) > 0.5


def test_the_real_teacher_labels_and_picks_the_least_certain_half_identically_on_1_and_2_actors(tmp_path, ray_local, generator_dir):
    # What the report's mix-50-ens-hard recipe trains on, in one command: soft labels from the mean
    # of the real-only classifiers, half of each class the least certain of 4x as many candidates.
    from ganray.metrics.classifier import predict
    from ganray.metrics.recipes import Budget, Fits

    extra = ("generate.soft_labels=true", "generate.teacher=real", "generate.uncertain_share=0.5", "eval.report_seeds=[0,1]",
             "eval.recipe_steps=40")
    one = generate(gen_config(tmp_path, str(tmp_path / "one"), *extra, "generate.num_actors=1"), load_generator(generator_dir))
    generate(gen_config(tmp_path, str(tmp_path / "two"), *extra, "generate.num_actors=2"), load_generator(generator_dir))
    assert shard_files(tmp_path / "one") == shard_files(tmp_path / "two") and len(shard_files(tmp_path / "one")) == 3
    m = one.manifest
    assert m["identity"]["teacher"] == {"name": "real", "seeds": [0, 1], "steps": 40, "augment": "affine"} and m["identity"]["uncertain_share"] == 0.5
    assert (m["recipe"]["teacher"], m["recipe"]["uncertain_share"]) == ("real", 0.5)
    assert m["num_samples"] == N and list(m["class_counts"].values()) == [N // 10] * 10
    assert m["acceptance_rate"] == pytest.approx(1 / 3, abs=0.01)  # each picked sample is one of 4 candidates
    # The soft labels are the teacher's: the mean of the report's real-only classifiers (same seeds, steps, augmentation).
    cfg = gen_config(tmp_path, str(tmp_path / "x"), *extra)
    teacher = Fits(None, load_splits(cfg.data).train, Budget.of(cfg.eval)).models("real")
    shards, metas = load_shards(tmp_path / "one"), _metas(tmp_path / "one")
    expected = torch.stack([predict(t, shards.images) for t in teacher]).mean(0).numpy()
    soft = np.asarray([x["soft_label"] for x in metas])
    assert np.abs(soft - expected).max() < 1e-4 and np.allclose(soft.sum(1), 1, atol=1e-4)
    # The picked half (the last of each class in each shard) is the least certain: higher entropy.
    entropy = -(soft * np.log(np.clip(soft, 1e-8, None))).sum(1)
    picked = np.zeros(N, dtype=bool)
    for start in range(0, N, SHARD):
        labels = np.asarray([int(x["class_name"]) for x in metas[start : start + SHARD]])
        for c in range(10):
            where = np.flatnonzero(labels == c)
            picked[start + where[len(where) - round(0.5 * len(where)) :]] = True
    assert 0.45 < picked.mean() < 0.55 and entropy[picked].mean() > 1.5 * entropy[~picked].mean()


def test_a_student_teacher_is_the_reports_classifiers_of_its_recipe_on_this_generator(tmp_path, ray_local, generator_dir):
    # mix-50-ns's data in one command: soft labels from the mean of mix-50-ens-hard's classifiers,
    # trained as the report trains them (seeds, steps, synthetic cap) on the same generator.
    from ganray.metrics.classifier import predict
    from ganray.metrics.recipes import Budget, Fits

    extra = ("generate.soft_labels=true", "generate.teacher=mix-50-ens-hard", "eval.report_seeds=[0,1]", "eval.recipe_steps=20",
             "eval.report_samples=200", "generate.num_samples=100", "generate.num_actors=1")
    loaded = load_generator(generator_dir)
    cfg = gen_config(tmp_path, str(tmp_path / "one"), *extra)
    m = generate(cfg, loaded).manifest
    assert m["identity"]["teacher"] == {"name": "mix-50-ens-hard", "seeds": [0, 1], "steps": 20, "augment": "affine", "samples": 200}
    students = Fits(loaded.G, load_splits(cfg.data).train, Budget.of(cfg.eval)).models("mix-50-ens-hard")
    real = Fits(None, load_splits(cfg.data).train, Budget.of(cfg.eval)).models("real")
    shards = load_shards(tmp_path / "one")
    soft = np.asarray([x["soft_label"] for x in _metas(tmp_path / "one")])
    expected = torch.stack([predict(t, shards.images) for t in students]).mean(0).numpy()
    assert np.abs(soft - expected).max() < 1e-4 and np.allclose(soft.sum(1), 1, atol=1e-4)
    # ... and not the real-only classifiers' (the teacher of mix-50-ens-hard itself).
    assert np.abs(soft - torch.stack([predict(t, shards.images) for t in real]).mean(0).numpy()).max() > 0.01


def test_auto_settings_are_searched_on_validation_and_recorded(tmp_path, ray_local, generator_dir):
    from ganray.generation.search import CONFIDENCES, LATENT_SCALES

    cfg = gen_config(tmp_path, str(tmp_path / "auto"), "generate.latent_scale=auto", "generate.min_confidence=auto",
                     "generate.num_actors=1", "generate.num_samples=100")
    out = generate(cfg, load_generator(generator_dir))
    r = out.manifest["recipe"]
    assert r["searched_on"] == "val" and r["latent_scale"] in LATENT_SCALES and r["min_confidence"] in CONFIDENCES
    # Every scale at the filter off, then every threshold at the chosen scale; each scored on validation.
    tried = [(t["latent_scale"], t["min_confidence"]) for t in r["search"]]
    assert tried[:3] == [(s, 0.0) for s in LATENT_SCALES]
    assert tried[3:] == [(r["latent_scale"], c) for c in CONFIDENCES[1:]]
    assert all(t["val_accuracy"] is None or 0.0 <= t["val_accuracy"] <= 1.0 for t in r["search"])
    assert len({t["val_accuracy"] for t in r["search"]}) > 1  # the candidates really differ
    # The chosen values are the output's identity: the same explicit settings resume it without writing.
    explicit = gen_config(tmp_path, str(tmp_path / "auto"), f"generate.latent_scale={r['latent_scale']}",
                          f"generate.min_confidence={r['min_confidence']}", "generate.num_actors=1", "generate.num_samples=100")
    again = generate(explicit, load_generator(generator_dir))
    assert again.written == [] and again.manifest["identity_hash"] == out.manifest["identity_hash"]
    # Other data than the generator's, or no validation split: one line each, before any shard.
    noval = gen_config(tmp_path, str(tmp_path / "noval"), "generate.latent_scale=auto", "data.val_fraction=0")
    with pytest.raises(GanrayError, match=r"generate.latent_scale=auto needs the generator's training data"):
        generate(noval, load_generator(generator_dir))
    trained_without_val = load_generator(generator_dir)
    trained_without_val.info["data_fingerprint"] = load_splits(noval.data).train.fingerprint()
    with pytest.raises(GanrayError, match=r"searched on the validation split; set data.val_fraction above 0"):
        generate(noval, trained_without_val)
    assert not (tmp_path / "noval").exists()


def test_a_full_disk_is_one_line_and_the_rerun_completes(tmp_path, ray_local, generator_dir, capsys):
    """A real full filesystem (a tiny tmpfs): one line naming it, no partial shard, then an exact resume."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        argv = ["generate", "--generator", str(generator_dir), "--out", str(small / "o"), "--set", "generate.num_samples=1200",
                "--set", "generate.shard_size=200", "--set", "generate.num_actors=1", "--set", f"storage.runs_dir={tmp_path}"]
        code, err = run_cli(capsys, *argv)
        assert code == 2 and err.splitlines()[-1].startswith(f"ganray generate: error: no space left on {small / 'o'}"), err
        names = [p.name for p in (small / "o").iterdir()]
        assert "manifest.json" not in names and all(n.startswith("shard-") and n.endswith(".tar") for n in names)
        kept = {n: (small / "o" / n).read_bytes() for n in names}
        subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
        code, err = run_cli(capsys, *argv)
        assert code == 0, err
        manifest = json.loads((small / "o" / "manifest.json").read_text())
        assert manifest["num_samples"] == 1200 and len(manifest["shardlist"]) == 6
        assert all((small / "o" / n).read_bytes() == b for n, b in kept.items())  # finished shards kept as they were
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)
