"""One WebDataset shard as bytes (docs/contracts.md): an uncompressed tar, members sorted by key, fixed metadata.

Nothing in a shard depends on when or where it was written (fixed mtime/uid/gid/mode, no user
names, PNGs without timestamps, JSON with sorted keys), so the same samples always give the
same bytes; that is what lets a rerun recognize a finished shard by its checksum.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from PIL import Image

MTIME = 946684800  # 2000-01-01T00:00:00Z: any fixed value works; 0 upsets some tools


def shard_name(s: int) -> str:
    return f"shard-{s:06d}.tar"


def shard_index(name: str) -> int | None:
    """`shard-000012.tar` -> 12; None for any other name."""
    stem = name.removeprefix("shard-").removesuffix(".tar")
    return int(stem) if name.startswith("shard-") and name.endswith(".tar") and stem.isdigit() else None


def sample_key(shard: int, index: int) -> str:
    """`000012_000345`: shard and index within it; WebDataset keys must hold no dots."""
    return f"{shard:06d}_{index:06d}"


@dataclass(frozen=True)
class Sample:
    key: str
    image: np.ndarray  # uint8 CxHxW
    label: int
    meta: dict[str, Any]  # becomes <key>.json


PNG_LEVEL = 6  # zlib's default; the level that every earlier shard was written with


def encode_png(image: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """uint8 CxHxW -> PNG (L or RGB); PIL writes no time chunk, so the bytes are a function of the pixels."""
    arr = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), mode="L" if image.shape[0] == 1 else "RGB").save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


BLOCK, RECORD = 512, 10240  # tar block and record sizes, as tarfile writes them


def _octal(n: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, n)


def ustar_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header tarfile would write for a regular file with our fixed metadata.

    Built directly because tarfile's per-member Python overhead was a tenth of a shard's
    render time; a test checks it byte for byte against `TarInfo.tobuf`.
    """
    raw = name.encode()
    if len(raw) > 100:
        raise ValueError(f"member name too long for ustar: {name!r}")
    head = b"".join([
        raw.ljust(100, b"\0"), _octal(0o644, 8), _octal(0, 8), _octal(0, 8), _octal(size, 12), _octal(MTIME, 12),
        b" " * 8, b"0", b"\0" * 100, b"ustar\x0000", b"\0" * 32, b"\0" * 32, b"\0" * 16, b"\0" * 155,  # no device numbers
    ]).ljust(BLOCK, b"\0")
    checksum = b"%06o\0" % sum(head)
    return head[:148] + checksum + head[155:]


def shard_bytes(samples: Iterable[Sample], png_level: int = PNG_LEVEL) -> bytes:
    """The tar of the samples: per key `.cls` (ASCII index), `.json`, `.png`, keys in sorted order."""
    members: list[tuple[str, bytes]] = []
    for s in samples:
        members += [
            (f"{s.key}.cls", str(int(s.label)).encode()),
            (f"{s.key}.json", json.dumps(s.meta, sort_keys=True, separators=(",", ":")).encode()),
            (f"{s.key}.png", encode_png(s.image, png_level)),
        ]
    parts: list[bytes] = []
    for name, data in sorted(members):
        parts += [ustar_header(name, len(data)), data, b"\0" * (-len(data) % BLOCK)]
    parts.append(b"\0" * (2 * BLOCK))
    size = sum(map(len, parts))
    parts.append(b"\0" * (-size % RECORD))
    return b"".join(parts)
