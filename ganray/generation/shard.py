"""One WebDataset shard as bytes (DESIGN.md): an uncompressed tar, members sorted by key, fixed metadata.

Nothing in a shard depends on when or where it was written (fixed mtime/uid/gid/mode, no user
names, PNGs without timestamps, JSON with sorted keys), so the same samples always give the
same bytes; that is what lets a rerun recognize a finished shard by its checksum.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from PIL import Image

MTIME = 946684800  # 2000-01-01T00:00:00Z: any fixed value works; 0 upsets some tools


def shard_name(s: int) -> str:
    return f"shard-{s:06d}.tar"


def sample_key(shard: int, index: int) -> str:
    """`000012_000345`: shard and index within it; WebDataset keys must hold no dots."""
    return f"{shard:06d}_{index:06d}"


@dataclass(frozen=True)
class Sample:
    key: str
    image: np.ndarray  # uint8 CxHxW
    label: int
    meta: dict[str, Any]  # becomes <key>.json


def encode_png(image: np.ndarray) -> bytes:
    """uint8 CxHxW -> PNG (L or RGB); PIL writes no time chunk, so the bytes are a function of the pixels."""
    arr = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), mode="L" if image.shape[0] == 1 else "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


def shard_bytes(samples: Iterable[Sample]) -> bytes:
    """The tar of the samples: per key `.cls` (ASCII index), `.json`, `.png`, keys in sorted order."""
    members: list[tuple[str, bytes]] = []
    for s in samples:
        members += [
            (f"{s.key}.cls", str(int(s.label)).encode()),
            (f"{s.key}.json", json.dumps(s.meta, sort_keys=True, separators=(",", ":")).encode()),
            (f"{s.key}.png", encode_png(s.image)),
        ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(members):
            tar.addfile(*_member(name, data))
    return buf.getvalue()
