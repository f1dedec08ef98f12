"""The run directory of docs/contracts.md, on local disk or under an s3:// prefix, with the same layout.

    <run>/config.yaml  metrics.jsonl  samples/step_XXXXXXX.png  checkpoints/step_XXXXXXX/  generator/
          tensorboard/  (event files of the same scalars and grids, for people)

Every file goes through a `ganray.storage` Store, so training, evaluation, reports and generation
never branch on where the run lives; only Ray Train, which writes the checkpoints, is handed a
pyarrow filesystem for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ganray.fileio import temp_dir
from ganray.config import Config, StorageConfig, dump_config, read_stored_config
from ganray.errors import GanrayError
from ganray.storage import Store, arrow_location, is_s3, open_store, parse_s3_uri
from ganray.runs.checkpoint import load_checkpoint
from ganray.runs.curves import Curves

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SAMPLES = "samples"
_CHECKPOINT_NAME = re.compile(r"^step_\d{7,}$")
# Sections that must match for a checkpoint to load into the model the config describes.
_SHAPE_SECTIONS = ("model",)


@dataclass(frozen=True)
class RunDir:
    """Where one run lives: an absolute local path or an s3://bucket/prefix URI, plus how to reach S3.

    A small picklable value, handed to Ray Train workers (rank 0 writes metrics and samples).
    """

    uri: str
    storage: StorageConfig = field(default_factory=StorageConfig)

    @classmethod
    def at(cls, location: "str | Path | RunDir", storage: StorageConfig | None = None) -> "RunDir":
        if isinstance(location, RunDir):
            return location
        storage = storage or StorageConfig()
        text = str(location)
        if is_s3(text):
            parse_s3_uri(text)  # a one-line error for a malformed URI
            return cls(text.rstrip("/"), storage)
        return cls(str(Path(text).expanduser().resolve()), storage)

    @property
    def store(self) -> Store:
        return open_store(self.uri, self.storage)

    @property
    def local(self) -> Path | None:
        """The directory itself when the run is on local disk; None on S3."""
        return None if is_s3(self.uri) else Path(self.uri)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def join(self, key: str) -> str:
        """Where `key` lives, for messages and summaries."""
        return f"{self.uri.rstrip('/')}/{key}"

    @property
    def parent(self) -> str:
        """The runs_dir this run is in."""
        return self.uri.rstrip("/").rsplit("/", 1)[0]

    def sibling(self, name: str) -> "RunDir":
        """Another run next to this one (the report's low-data GANs)."""
        return RunDir(f"{self.parent}/{name}", self.storage)

    def ray_storage(self) -> tuple[str, Any | None]:
        """Ray Train's (storage_path, storage_filesystem) for this run: a path, or "bucket/prefix" on S3."""
        return arrow_location(self.uri, self.storage)


def resolve_run_dir(cfg: Config) -> RunDir:
    """storage.runs_dir/run_name; without a run_name, `<arch>-<time>`."""
    name = cfg.storage.run_name or f"{cfg.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    return RunDir.at(f"{cfg.storage.runs_dir.rstrip('/')}/{name}", cfg.storage)


def read_config(run: RunDir) -> Config | None:
    """The run's config.yaml; None when the location holds no run."""
    return read_stored_config(run.store, f"run dir {run.uri!r}")


def prepare_run_dir(run: RunDir, cfg: Config) -> bool:
    """Record the config, or check that the run dir holds a compatible run; True when resuming.

    A run is resumed only when its model config matches; anything else would load a
    checkpoint into the wrong network, so it is refused before any worker starts. Call it
    under `run_lock`, which has already checked that the run dir can be written.
    """
    store = run.store
    old = read_config(run)
    if old is not None and (
        old.fingerprint(*_SHAPE_SECTIONS) != cfg.fingerprint(*_SHAPE_SECTIONS) or old.data.image_size != cfg.data.image_size
    ):
        raise GanrayError(
            f"run dir {run.uri!r} holds a run with a different model config; "
            "resume it with its own config.yaml or choose another storage.run_name"
        )
    try:
        store.write_bytes(CONFIG, dump_config(cfg).encode())
    except OSError as e:
        raise GanrayError(f"cannot write to run dir {run.uri!r} ({e.strerror}); choose a writable storage.runs_dir") from None
    return old is not None


def _metric_lines(raw: bytes) -> list[str]:
    return [line for line in raw.decode(errors="replace").splitlines() if line.strip()]


def _read_metric_lines(store: Store) -> list[str]:
    try:
        return _metric_lines(store.read_bytes(METRICS))
    except FileNotFoundError:
        return []


def truncate_metrics(run: RunDir, step: int) -> None:
    """Drop metric lines past `step`: after a resume they would be logged twice."""
    store = run.store
    lines = _read_metric_lines(store)
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash
    if kept != lines:
        store.write_bytes(METRICS, "".join(l + "\n" for l in kept).encode())


def read_metrics(run: "RunDir | str | Path") -> list[dict]:
    out = []
    for line in _read_metric_lines(RunDir.at(run).store):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class RunWriter:
    """Rank 0's writer for metrics and sample grids; every other rank's calls are no-ops.

    On local disk each metrics line is appended as it comes. S3 has no append, so lines are
    buffered and the object rewritten at most every `flush_s` seconds and at every checkpoint;
    lines past the last checkpoint are dropped on resume anyway, so nothing a resume needs is lost.
    """

    def __init__(self, run: RunDir, rank: int = 0, flush_s: float = 30.0) -> None:
        self.run, self.active, self.flush_s = run, rank == 0, flush_s
        self._pending: list[str] = []
        self._flushed = time.monotonic()
        self.curves = Curves(run.store, run.local) if self.active else None

    def metrics(self, step: int, metrics: dict) -> None:
        if not self.active:
            return
        if self.curves is not None:
            self.curves.scalars(step, metrics)
        line = json.dumps({"step": step, "time": round(time.time(), 3), **metrics}, sort_keys=True)
        if self.run.local is not None:
            with open(self.run.local / METRICS, "a") as f:
                f.write(line + "\n")
            return
        self._pending.append(line)
        if time.monotonic() - self._flushed >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Metrics and curves durable up to now (called before every checkpoint)."""
        if self.curves is not None:
            self.curves.flush()
        if not self.active or not self._pending:
            return
        store = self.run.store
        lines = _read_metric_lines(store) + self._pending
        store.write_bytes(METRICS, "".join(l + "\n" for l in lines).encode())
        self._pending, self._flushed = [], time.monotonic()

    def close(self) -> None:
        if self.curves is not None:
            self.curves.close()  # flushes (on S3, uploads) its event file once
        self.flush()

    def samples(self, step: int, png: bytes) -> str | None:
        if not self.active:
            return None
        key = f"{SAMPLES}/step_{step:07d}.png"
        self.run.store.write_bytes(key, png)
        if self.curves is not None:
            self.curves.samples(step, png)
        return self.run.join(key)


def checkpoint_names(run: "RunDir | str | Path") -> list[str]:
    """The run's checkpoint directory names (step_XXXXXXX), newest first."""
    names = set()
    for obj in RunDir.at(run).store.list(f"{CHECKPOINTS}/"):
        parts = obj.key.split("/")
        if len(parts) >= 3 and _CHECKPOINT_NAME.match(parts[1]):
            names.add(parts[1])
    return sorted(names, reverse=True)


@contextlib.contextmanager
def checkpoint_files(run: RunDir, name: str) -> Iterator[Path]:
    """A local directory holding checkpoint `name`: the directory itself, or a download of it from S3."""
    if run.local is not None:
        yield run.local / CHECKPOINTS / name
        return
    store, prefix = run.store, f"{CHECKPOINTS}/{name}/"
    with temp_dir("ckpt") as tmp:
        for obj in store.list(prefix):
            store.download_file(obj.key, Path(tmp, obj.key[len(prefix) :]))
        yield Path(tmp)


def prune_checkpoints(run: RunDir, keep: int, protect: set[str] = frozenset()) -> list[str]:
    """Delete all but the newest `keep` checkpoints and the `protect`ed ones; returns the deleted names.

    ganray prunes, not Ray Train: the checkpoint that export selection chose (`protect`) must
    outlive newer ones, and one persisted by a worker that died before the controller
    registered it would stay behind otherwise.
    """
    stale = [n for n in checkpoint_names(run)[keep:] if n not in protect]
    for name in stale:
        if run.local is not None:
            shutil.rmtree(run.local / CHECKPOINTS / name, ignore_errors=True)
        else:
            store = run.store
            for obj in store.list(f"{CHECKPOINTS}/{name}/"):
                store.delete(obj.key)
    return stale


def load_latest(run: RunDir, names: list[str] | None = None) -> tuple[dict, dict, str] | None:
    """(state, meta, uri) of the newest checkpoint that loads; corrupt ones are skipped with a warning."""
    errors = []
    for name in checkpoint_names(run) if names is None else names:
        with checkpoint_files(run, name) as d:
            try:
                state, meta = load_checkpoint(d)
                return state, meta, run.join(f"{CHECKPOINTS}/{name}")
            except GanrayError as e:
                msg = str(e).replace(str(d), run.join(f"{CHECKPOINTS}/{name}"))  # name S3, not a temp copy
                log.warning("skipping checkpoint: %s", msg)
                errors.append(msg)
    if errors:
        raise GanrayError(
            f"no loadable checkpoint ({errors[0]}); "
            "move the run's checkpoints/ aside to start over, or choose another storage.run_name"
        )
    return None
