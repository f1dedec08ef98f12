"""manifest.json (docs/contracts.md) and the per-shard records it is assembled from.

Each finished shard gets a small record under `_parts/` (written after the shard itself) with
its size, checksum, class counts and acceptance, tagged with the output's identity. A rerun
trusts a shard only when its record has the same identity and the stored object still has the
recorded size and checksum; the manifest, a valid `wids-shard-index-v1` index plus ganray's
fields, is written last from the records.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

KIND = "wids-shard-index-v1"
MANIFEST = "manifest.json"
PARTS = "_parts"


def part_key(shard_url: str) -> str:
    return f"{PARTS}/{shard_url.removesuffix('.tar')}.json"


def identity_hash(identity: dict[str, Any]) -> str:
    """What an output's bytes depend on; two runs with the same hash write the same shards."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ShardRecord:
    url: str
    nsamples: int
    filesize: int
    sha256: str
    class_counts: list[int]
    drawn: int  # candidates generated; > nsamples when the quality filter rejected some
    identity: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def build_manifest(
    identity: dict[str, Any],
    records: list[ShardRecord],
    class_names: list[str],
    config: dict[str, Any],
    created: float | None = None,
) -> dict[str, Any]:
    counts = [sum(r.class_counts[c] for r in records) for c in range(len(class_names))]
    total, drawn = sum(r.nsamples for r in records), sum(r.drawn for r in records)
    return {
        "__kind__": KIND,
        "wids_version": 1,
        "name": identity.get("source", "ganray"),
        "shardlist": [{"url": r.url, "nsamples": r.nsamples, "filesize": r.filesize, "sha256": r.sha256} for r in records],
        "num_samples": total,
        "class_names": list(class_names),
        "class_counts": dict(zip(class_names, counts)),
        "acceptance_rate": total / drawn if drawn else 1.0,
        "identity": identity,
        "identity_hash": identity_hash(identity),
        "seed": identity.get("seed"),
        "generator": identity.get("generator"),
        "config": config,
        "created": created if created is not None else round(time.time(), 3),
    }


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from the creation time: rewriting would change nothing a reader uses."""
    return {k: v for k, v in a.items() if k != "created"} == {k: v for k, v in b.items() if k != "created"}
