"""A store rooted at a local directory: temp file + fsync + os.replace for every write."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ganray.errors import GanrayError
from ganray.fileio import sha256_file
from ganray.storage.base import ObjectInfo, check_key

log = logging.getLogger(__name__)

TMP_MARK = ".ganray-tmp-"
CHUNK = 1 << 20


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable (a no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """mkdir -p, then fsync the parent of every directory it created."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in reversed(missing):
        _fsync_dir(d.parent)


def atomic_write(path: Path, fill: Callable[[BinaryIO], None]) -> None:
    """Write `path` via `fill(f)` on a temp sibling, fsync it, rename it over `path`, fsync the dir.

    A crash or an exception at any point leaves either the old file or the new one under
    `path`, never a partial one; the temp file is removed on exceptions (a hard crash can
    leave a `.name.ganray-tmp-*` sibling, which `list` ignores).
    """
    _makedirs_durable(path.parent)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:12]}")
    try:
        with open(tmp, "xb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise no_space(path.parent) from None
        raise
    _fsync_dir(path.parent)


def no_space(where: Path | str) -> GanrayError:
    """The one line for a full disk: where, and that a rerun keeps what was finished."""
    return GanrayError(
        f"no space left on {where}; free some space or choose another location, then rerun the same "
        "command (finished work is kept; nothing partial was left under a final name)"
    )


def _mismatch(what: str, claimed: str, actual: str) -> GanrayError:
    return GanrayError(
        f"{what} has sha256 {actual[:12]}..., not the {claimed[:12]}... it was written with; "
        "the source changed while being copied, write it again"
    )


@dataclass(frozen=True)
class LocalStore:
    """Objects as files under `root` (an absolute path); keys map to relative paths."""

    root: str

    @classmethod
    def from_path(cls, path: str | Path) -> "LocalStore":
        return cls(str(Path(path).expanduser().absolute()))

    def _path(self, key: str) -> Path:
        return Path(self.root, check_key(key))

    def uri(self, key: str = "") -> str:
        return self.root if not key else str(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> ObjectInfo | None:
        p = self._path(key)
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        if not p.is_file():
            return None
        return ObjectInfo(check_key(key), st.st_size, None)

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes, sha256: str | None = None) -> ObjectInfo:
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and sha256 != digest:
            raise _mismatch(f"data for {self.uri(key)}", sha256, digest)
        atomic_write(self._path(key), lambda f: f.write(data))
        log.debug("wrote %s (%d bytes)", self.uri(key), len(data))
        return ObjectInfo(check_key(key), len(data), digest)

    def upload_file(self, local_path: str | Path, key: str, sha256: str | None = None) -> ObjectInfo:
        h = hashlib.sha256()
        size = 0

        def copy(dst: BinaryIO) -> None:
            nonlocal size
            with open(local_path, "rb") as src:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    h.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
            if sha256 is not None and sha256 != h.hexdigest():
                raise _mismatch(str(local_path), sha256, h.hexdigest())

        atomic_write(self._path(key), copy)
        log.debug("copied %s to %s (%d bytes)", local_path, self.uri(key), size)
        return ObjectInfo(check_key(key), size, h.hexdigest())

    def download_file(self, key: str, local_path: str | Path) -> None:
        src_path = self._path(key)
        if not src_path.is_file():
            raise FileNotFoundError(f"{src_path} does not exist")

        def copy(dst: BinaryIO) -> None:
            with open(src_path, "rb") as src:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    dst.write(chunk)

        atomic_write(Path(local_path), copy)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        root = Path(self.root)
        out = []
        for dirpath, _, files in os.walk(root):
            for name in files:
                if TMP_MARK in name:
                    continue
                p = Path(dirpath, name)
                key = p.relative_to(root).as_posix()
                if key.startswith(prefix):
                    try:
                        out.append(ObjectInfo(key, p.stat().st_size, None))
                    except FileNotFoundError:  # deleted while listing
                        continue
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def sha256(self, key: str) -> str:
        return sha256_file(self._path(key))

    def remove_orphans(self) -> int:
        """Temp siblings (`.name.ganray-tmp-*`) of writes whose process was killed before the rename."""
        removed = 0
        for dirpath, _, files in os.walk(Path(self.root)):
            for name in files:
                if TMP_MARK in name:
                    Path(dirpath, name).unlink(missing_ok=True)
                    removed += 1
        return removed

    def check_writable(self) -> None:
        root = Path(self.root)
        try:
            _makedirs_durable(root)
            probe = root / f".ganray-write-probe{TMP_MARK}{uuid.uuid4().hex[:12]}"
            with open(probe, "xb") as f:
                f.write(b"ok")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as e:
            why = e.strerror or type(e).__name__
            raise GanrayError(
                f"cannot write to local directory {self.root!r} ({why}); choose a writable path or fix its permissions"
            ) from None
