"""The store interface shared by local directories and S3 prefixes.

Everything that persists outputs (shards, manifests, checkpoints exported for consumers)
goes through a `Store` rooted at a directory or `s3://bucket/prefix` and addresses objects
by a relative key, so callers never branch on where the data lives.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    """An object under a store's root: its key, size in bytes and, when known, its SHA-256 hex."""

    key: str
    size: int
    sha256: str | None = None


@runtime_checkable
class Store(Protocol):
    """Objects under one root, addressed by relative keys like "shard-000000.tar" or "sub/x".

    Writes are atomic: a reader sees either no object or the whole object under a key, never
    a partial one. Stores are small picklable values (no open clients or handles), so they
    can be passed to Ray actors.
    """

    def uri(self, key: str = "") -> str:
        """Where `key` lives: a local path or an s3:// URI (the root itself for "")."""
        ...

    def exists(self, key: str) -> bool: ...

    def stat(self, key: str) -> ObjectInfo | None:
        """Size and, if known without reading the data, the SHA-256 recorded at write time; None if absent."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole object; FileNotFoundError if absent."""
        ...

    def write_bytes(self, key: str, data: bytes, sha256: str | None = None) -> ObjectInfo: ...

    def upload_file(self, local_path: str | Path, key: str, sha256: str | None = None) -> ObjectInfo:
        """Copy a local file to `key`; `sha256` (hex of the file) saves re-reading it when the caller knows it."""
        ...

    def download_file(self, key: str, local_path: str | Path) -> None:
        """Copy `key` to a local file, atomically replacing it; FileNotFoundError if absent."""
        ...

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Objects whose key starts with `prefix`, sorted by key."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    def sha256(self, key: str) -> str:
        """SHA-256 hex of the object: the recorded value if there is one, else computed by reading it."""
        ...

    def check_writable(self) -> None:
        """Raise a one-line GanrayError now if writing under the root would fail later."""
        ...

    def remove_orphans(self) -> int:
        """Remove what writers killed mid-write left under the root; the number removed. Call it only
        when no writer is running: a live writer's temporary looks the same."""
        ...


def check_key(key: str) -> str:
    """Normalize a relative object key; absolute keys and `..` are programming errors."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"object key must be a non-empty string, got {key!r}")
    norm = posixpath.normpath(key.replace("\\", "/"))
    if norm.startswith("/") or norm == "." or norm == ".." or norm.startswith("../") or key.endswith("/"):
        raise ValueError(f"object key must be a relative file path inside the store, got {key!r}")
    return norm
