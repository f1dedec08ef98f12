"""Writing an output (shards + manifest) resumably and idempotently, whatever renders the shards.

1. An existing manifest from another identity (generator, seed, sizes, class mix, filter) is
   refused unless `generate.overwrite`.
2. Each planned shard whose record has this identity and whose stored object still has the
   recorded size and checksum is kept; only the others go to the actor pool.
3. The manifest is written last, and only if its content would change, so a rerun of a
   finished output writes nothing at all.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

import ray
import torch
from tqdm import tqdm

from ganray.config import Config
from ganray.errors import GanrayError, user_error
from ganray.generation.manifest import MANIFEST, ShardRecord, build_manifest, identity_hash, part_key, same_content
from ganray.generation.plan import ShardPlan
from ganray.generation.pool import Renderer, default_actors, run_pool
from ganray.generation.shard import shard_index, shard_name
from ganray.storage import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputSummary:
    uri: str
    manifest: dict[str, Any]
    written: list[int]  # shards written by this call
    kept: list[int]  # shards found finished and left alone


def _read_json(store: Store, key: str) -> Any | None:
    try:
        return json.loads(store.read_bytes(key))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # absent or torn: the object is treated as not written


def finished_record(store: Store, s: int, ident: str) -> ShardRecord | None:
    """The shard's record if the stored shard is complete, of this identity, and intact."""
    url = shard_name(s)
    raw = _read_json(store, part_key(url))
    if raw is None:
        return None
    try:
        record = ShardRecord(**raw)
    except TypeError:
        return None
    info = store.stat(url)
    if record.identity != ident or info is None or info.size != record.filesize:
        return None
    digest = info.sha256 or store.sha256(url)
    return record if digest == record.sha256 else None


def check_foreign(store: Store, identity: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The existing manifest if it is this output's; a foreign one is an error unless overwriting."""
    old = _read_json(store, MANIFEST)
    if old is None:
        return None
    if old.get("identity_hash") == identity_hash(identity):
        return old
    if not overwrite:
        theirs = old.get("identity", {})
        raise GanrayError(
            f"{store.uri()} holds another output (generator {theirs.get('generator')}, seed {theirs.get('seed')}); "
            "choose another generate.out or set generate.overwrite=true to replace it"
        )
    log.warning("replacing the output in %s (generate.overwrite)", store.uri())
    store.delete(MANIFEST)
    return None


def _remove_extra_shards(store: Store, plan: ShardPlan) -> None:
    """Shards past the plan would be listed with the output by readers that glob instead of using the manifest."""
    for info in store.list("shard-"):
        s = shard_index(info.key)
        if s is not None and s >= plan.num_shards:
            store.delete(part_key(info.key))
            store.delete(info.key)


def write_output(
    cfg: Config,
    store: Store,
    plan: ShardPlan,
    identity: dict[str, Any],
    class_names: list[str],
    factory: Callable[[torch.device], Renderer],
    extra: dict[str, Any] | None = None,
) -> OutputSummary:
    """`extra`: manifest fields that describe how the output was made but not its bytes (the generation recipe)."""
    g = cfg.generate
    ident = identity_hash(identity)
    old = check_foreign(store, identity, g.overwrite)
    # Shards past the plan (a different earlier run, cut short before its manifest) are not this output.
    _remove_extra_shards(store, plan)
    records: dict[int, ShardRecord] = {}
    for s in range(plan.num_shards):
        record = finished_record(store, s, ident)
        if record is not None:
            records[s] = record
    kept = sorted(records)
    todo = [s for s in range(plan.num_shards) if s not in records]
    if todo or old is None:
        store.check_writable()  # a probe write: only when something will be written
    if todo:
        from ganray.ray_session import ensure_ray

        ensure_ray(cfg.ray)
        gpus = g.gpus_per_actor if cfg.ray.use_gpu else 0.0
        cpus = cfg.ray.cpus_per_worker
        actors = g.num_actors or default_actors(ray.cluster_resources(), cpus, gpus)
        done = sum(r.nsamples for r in records.values())
        log.info("%s: %d shards to write, %d already finished", store.uri(), len(todo), len(kept))
        with tqdm(total=plan.num_samples, initial=done, unit="sample", desc="shards", smoothing=0.1) as bar:
            try:
                for record in run_pool(factory, store, todo, actors, cpus, gpus, ident, cfg.ray.placement == "spread"):
                    records[shard_index(record.url)] = record
                    bar.update(record.nsamples)
            except (GanrayError, ray.exceptions.RayError) as e:
                user = user_error(e)
                if user is None:
                    raise
                raise user from None
        # Every actor is gone now; one killed mid-shard may have left a temporary file behind.
        orphans = store.remove_orphans()
        if orphans:
            log.info("removed %d unfinished temporary file(s) of killed writers", orphans)
    ordered = [records[s] for s in range(plan.num_shards)]
    config = {"generate": g.model_dump(exclude={"overwrite", "num_actors", "gpus_per_actor", "out"}), "data": cfg.data.model_dump()}
    manifest = build_manifest(identity, ordered, class_names, config) | (extra or {})
    if old is not None and same_content(old, manifest):
        manifest = old
    else:
        store.write_bytes(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return OutputSummary(store.uri(), manifest, todo, kept)

