"""One writer per run directory: a lock that names its holder and frees itself when the holder is gone.

Two `ganray train` with the same run name would both append every step to `metrics.jsonl` and
write the same checkpoints. The first to start holds `<run>/run.lock`; the second is refused
with one line naming the holder (pid, host, since when).

- **Local disk:** an `flock` on the lock file. The kernel drops it when the holder exits, killed
  or not, so a stale lock never needs clearing; the file only tells the next caller who holds it.
- **S3:** a lease object written with a conditional PUT (If-None-Match), renewed every
  `RENEW_S` with If-Match, and taken over once it expires (`LEASE_S`) or when its holder was a
  process on this host that no longer exists.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ganray.fileio import pid_gone
from ganray.errors import GanrayError
from ganray.storage.s3 import S3Store
from ganray.runs.run_dir import RunDir

log = logging.getLogger(__name__)

LOCK = "run.lock"
LEASE_S = 120.0
RENEW_S = 30.0


def _holder(lease_s: float | None = None) -> dict:
    now = time.time()
    out = {"pid": os.getpid(), "host": socket.gethostname(), "since": round(now, 3), "token": uuid.uuid4().hex}
    return out if lease_s is None else {**out, "expires": round(now + lease_s, 3)}


def _in_use(run: RunDir, holder: dict | None) -> GanrayError:
    if not holder:
        who = "another ganray process"
    else:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
        who = f"pid {holder.get('pid')} on {holder.get('host')} (since {since})"
    return GanrayError(
        f"run dir {run.uri!r} is in use by {who}; wait for it to finish, stop it, or choose another storage.run_name"
    )


def _parse(raw: bytes) -> dict | None:
    try:
        got = json.loads(raw)
    except ValueError:
        return None
    return got if isinstance(got, dict) else None


def _process_gone(holder: dict) -> bool:
    """True when the holder ran on this host and its pid no longer exists."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    return pid_gone(holder["pid"])


@contextlib.contextmanager
def _local_lock(run: RunDir, path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _parse(os.pread(fd, 4096, 0))
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise _in_use(run, holder) from None
            raise
        # The previous holder may have unlinked the file between our open and our flock.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no one takes the old inode
        os.close(fd)


class _Lease:
    """The S3 lease: acquire, renew in a daemon thread, release."""

    def __init__(self, run: RunDir, store: S3Store, lease_s: float, renew_s: float) -> None:
        self.run, self.store, self.lease_s, self.renew_s = run, store, lease_s, renew_s
        self.holder = _holder(lease_s)
        self.etag: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, name="ganray-run-lease", daemon=True)

    def _body(self) -> bytes:
        return json.dumps(self.holder).encode()

    def acquire(self) -> None:
        self.etag = self.store.put_if(LOCK, self._body())
        if self.etag is None:
            found = self.store.read_versioned(LOCK)
            if found is None:  # released meanwhile
                self.etag = self.store.put_if(LOCK, self._body())
            else:
                holder = _parse(found[0])
                stale = holder is None or float(holder.get("expires", 0)) < time.time() or _process_gone(holder)
                if not stale:
                    raise _in_use(self.run, holder)
                log.warning("taking over the stale lock of %s", self.run.uri)
                self.etag = self.store.put_if(LOCK, self._body(), found[1])
        if self.etag is None:
            raise _in_use(self.run, None)
        self.thread.start()

    def _renew(self) -> None:
        while not self.stop.wait(self.renew_s):
            self.holder["expires"] = round(time.time() + self.lease_s, 3)
            try:
                etag = self.store.put_if(LOCK, self._body(), self.etag)
            except Exception as e:  # noqa: BLE001 - a store hiccup: try again at the next renewal
                log.warning("could not renew the lock of %s (%s)", self.run.uri, e)
                continue
            if etag is None:
                log.error("the lock of %s was taken by another process; this run is no longer its only writer", self.run.uri)
                return
            self.etag = etag

    def release(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        found = self.store.read_versioned(LOCK)
        if found is not None and (_parse(found[0]) or {}).get("token") == self.holder["token"]:
            self.store.delete(LOCK)


@contextlib.contextmanager
def run_lock(run: RunDir, lease_s: float = LEASE_S, renew_s: float = RENEW_S) -> Iterator[None]:
    """Hold the run directory for the duration; GanrayError at once if another process holds it."""
    run.store.check_writable()  # an unwritable location is its own one-line error, not a lock failure
    local = run.local
    if local is not None:
        with _local_lock(run, local / LOCK):
            yield
        return
    store = run.store
    if not isinstance(store, S3Store):
        raise TypeError(f"no lock for {type(store).__name__}")
    lease = _Lease(run, store, lease_s, renew_s)
    lease.acquire()
    try:
        yield
    finally:
        lease.release()
