"""Small file helpers shared by checkpoints, exports and extractors."""

from __future__ import annotations

import hashlib
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
