"""Local directories and `s3://bucket/prefix` URIs behind one small `Store` interface.

    store = open_store(cfg.storage.runs_dir + "/digits-a/shards", cfg.storage)
    store.check_writable()                     # one-line GanrayError now, not after an hour
    info = store.upload_file("/tmp/shard-000000.tar", "shard-000000.tar")
    store.stat("shard-000000.tar").sha256      # recorded at write time (S3: from a HEAD)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ganray.config import StorageConfig
from ganray.errors import GanrayError
from ganray.storage.base import ObjectInfo, Store
from ganray.storage.local import LocalStore
from ganray.storage.s3 import (
    MULTIPART_THRESHOLD,
    RequestCounter,
    S3Store,
    arrow_filesystem,
    count_requests,
    get_client,
    is_s3,
    parse_s3_uri,
)

__all__ = [
    "MULTIPART_THRESHOLD",
    "LocalStore",
    "ObjectInfo",
    "RequestCounter",
    "S3Store",
    "arrow_filesystem",
    "arrow_location",
    "Store",
    "count_requests",
    "get_client",
    "is_s3",
    "open_store",
    "upload_dir",
    "parse_s3_uri",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(uri: str, cfg: StorageConfig | None = None) -> Store:
    """The store rooted at a local path (or file:// URI) or an s3://bucket/prefix URI."""
    cfg = cfg or StorageConfig()
    if is_s3(uri):
        return S3Store.from_uri(uri, cfg)
    m = _SCHEME.match(uri)
    if m and m.group(1).lower() != "file":
        raise GanrayError(f"unsupported storage URI {uri!r}; use a local path or s3://bucket/prefix")
    if m:
        uri = uri[len(m.group(0)) :]
    if not uri:
        raise GanrayError("empty storage path; give a local directory or s3://bucket/prefix")
    return LocalStore.from_path(uri)


def arrow_location(uri: str, cfg: StorageConfig | None = None) -> tuple[str, Any | None]:
    """(path, filesystem) for Ray's storage_path/storage_filesystem: the path itself locally,
    "bucket/prefix" with a pyarrow S3 filesystem for an s3:// URI."""
    if not is_s3(uri):
        return uri, None
    cfg = cfg or StorageConfig()
    bucket, prefix = parse_s3_uri(uri)
    return f"{bucket}/{prefix}".rstrip("/"), arrow_filesystem(cfg.endpoint_url, cfg.region)


def upload_dir(store: Store, local: Path, last: str) -> None:
    """Copy every file under `local` to the store, files named `last` after the rest.

    `last` is the file readers trust the others by (a checksum or a finished result), so a
    reader never sees it before what it describes.
    """
    files = sorted((p for p in local.rglob("*") if p.is_file()), key=lambda p: (p.name == last, p))
    for path in files:
        store.upload_file(path, path.relative_to(local).as_posix())
