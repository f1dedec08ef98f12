"""A pool of Ray actors that turn shard indices into stored shards.

Why `ray.util.ActorPool` over Ray Data with an actor class: a shard here is one precomputed
unit, (plan, s) -> bytes -> one object under a fixed name, and reruns must find and skip it.
Ray Data plans its own blocks and names written files by a per-write id unless given a
filename provider, so a rerun would add files instead of recognizing them. ActorPool alone
does not resubmit a call whose actor died, so the actors are created with `max_restarts` and
`max_task_retries`: Ray restarts a dead actor and retries its call there. A retried shard has
the same bytes and the store's writes are atomic, so a killed actor neither loses nor
duplicates a shard.

Each actor takes two calls at once (`max_concurrency=2`, listed twice in the pool): one renders
while the other stores its finished shard, so uploads and fsyncs hide behind the next shard's
forward pass. A lock keeps rendering one at a time, so the actor's CPU budget holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any, Callable, Iterator, Protocol

import ray
import torch
from ray.util import ActorPool

from ganray.generation.manifest import ShardRecord, part_key
from ganray.storage import Store

log = logging.getLogger(__name__)

RESTARTS = 4  # actor restarts (and call retries) before a shard is reported failed


class Renderer(Protocol):
    def render(self, s: int) -> tuple[bytes, ShardRecord]: ...


def store_shard(renderer: Renderer, store: Store, s: int, lock: threading.Lock | None = None) -> ShardRecord:
    """Render shard s and store it, then its record: a record never points at a missing shard."""
    with lock or contextlib.nullcontext():
        data, record = renderer.render(s)
    store.write_bytes(record.url, data, sha256=record.sha256)
    store.write_bytes(part_key(record.url), record.to_json())
    return record


@ray.remote
class ShardActor:
    """Builds its renderer (loads the generator or the dataset) once, then writes shards."""

    def __init__(self, factory: Callable[[torch.device], Renderer], store: Store, threads: int) -> None:
        from ganray.log import setup_logging

        setup_logging(worker=True)
        torch.set_num_threads(threads)
        device = torch.device("cuda") if ray.get_gpu_ids() and torch.cuda.is_available() else torch.device("cpu")
        self.renderer, self.store = factory(device), store
        self.render_lock = threading.Lock()

    def write(self, s: int) -> ShardRecord:
        return store_shard(self.renderer, self.store, s, self.render_lock)

    def pid(self) -> int:
        return os.getpid()


def default_actors(resources: dict[str, float], cpus: float, gpus: float = 0.0) -> int:
    """How many actors the cluster's `resources` hold at `cpus` CPUs (and `gpus` GPUs) each.

    GPU actors are counted against both: a GPU actor encodes its PNGs in one thread, so several
    share a GPU (`gpus` < 1) and then the CPUs, not the GPUs, may run out first.
    """
    fits = [resources.get("CPU", 1.0) / cpus] + ([resources.get("GPU", 0.0) / gpus] if gpus else [])
    return max(1, int(min(fits) + 1e-9))  # 1.0 / 0.1 is 9.999...: count it as the 10 it means


def actor_name(tag: str, i: int) -> str:
    return f"ganray-shards-{tag}-{i}"


def run_pool(
    factory: Callable[[torch.device], Renderer],
    store: Store,
    shards: list[int],
    num_actors: int,
    cpus: float,
    gpus: float,
    tag: str,
    spread: bool = False,
) -> Iterator[ShardRecord]:
    """Records of the given shards as they finish (in completion order)."""
    if not shards:
        return
    factory_ref = ray.put(factory)
    threads = max(1, int(cpus))
    actors: list[Any] = [
        ShardActor.options(
            name=actor_name(tag, i), num_cpus=cpus, num_gpus=gpus, max_restarts=RESTARTS, max_task_retries=RESTARTS,
            max_concurrency=2, scheduling_strategy="SPREAD" if spread else "DEFAULT",
        ).remote(factory_ref, store, threads)
        for i in range(min(num_actors, len(shards)))
    ]
    log.info("writing %d shards with %d actors", len(shards), len(actors))
    try:
        yield from ActorPool([a for a in actors for _ in range(2)]).map_unordered(lambda a, s: a.write.remote(s), shards)
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
