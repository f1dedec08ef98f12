"""Small file helpers shared by checkpoints, exports and extractors."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_cache_dir(cache_dir: str | Path) -> Path:
    """The expanded cache directory, created; a one-line GanrayError now if it cannot be written,
    rather than a traceback after minutes of training the classifier it would cache."""
    import os
    import uuid

    from ganray.errors import GanrayError

    root = Path(cache_dir).expanduser()
    probe = root / f".ganray-write-probe-{uuid.uuid4().hex[:12]}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        os.unlink(probe)
    except OSError as e:
        raise GanrayError(
            f"cannot write to storage.cache_dir {str(cache_dir)!r} ({e.strerror or type(e).__name__}); "
            "set storage.cache_dir to a writable directory"
        ) from None
    return root


def pid_gone(pid: int) -> bool:
    """True when no process `pid` exists on this machine (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


_SWEPT: set[tuple[str, int]] = set()  # (kind, pid): keyed by pid too, so a forked child sweeps again


def temp_dir(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary directory `ganray-<kind>-<pid>-*`, after removing those of this kind whose process is gone.

    A Ray worker that is killed (Ctrl-C of the driver, SIGKILL, a lost node) never runs its
    cleanup; the pid in the name lets the next process of this kind remove what it left. The
    sweep runs once per process and kind (a training worker asks for one at every checkpoint).
    """
    if (kind, os.getpid()) not in _SWEPT:
        _SWEPT.add((kind, os.getpid()))
        for old in Path(tempfile.gettempdir()).glob(f"ganray-{kind}-*-*"):
            pid = old.name.split("-")[2]
            if pid.isdigit() and int(pid) != os.getpid() and pid_gone(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"ganray-{kind}-{os.getpid()}-")
