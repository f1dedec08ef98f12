"""The run directory layout of DESIGN.md: config.yaml, metrics.jsonl, samples/, checkpoints/."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ganray.config import Config, dump_config, load_config
from ganray.errors import GanrayError

CHECKPOINTS = "checkpoints"
# Sections that must match for a checkpoint to load into the model the config describes.
_SHAPE_SECTIONS = ("model",)


def resolve_run_dir(cfg: Config) -> Path:
    """storage.runs_dir/run_name; without a run_name, `<arch>-<time>`."""
    if cfg.storage.runs_dir.startswith("s3://"):
        raise GanrayError("storage.runs_dir on S3 is not supported for training yet; use a local or shared path")
    name = cfg.storage.run_name or f"{cfg.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.storage.runs_dir).expanduser().resolve() / name


def prepare_run_dir(run_dir: Path, cfg: Config) -> bool:
    """Create the run dir or check that it holds a compatible run; True when resuming.

    A run is resumed only when its model config matches; anything else would load a
    checkpoint into the wrong network, so it is refused before any worker starts.
    """
    cfg_path = run_dir / "config.yaml"
    resuming = cfg_path.is_file()
    if resuming:
        try:
            old = load_config(cfg_path)
        except GanrayError as e:
            raise GanrayError(f"run dir {str(run_dir)!r} holds an unreadable config.yaml ({e}); choose another storage.run_name") from None
        if old.fingerprint(*_SHAPE_SECTIONS) != cfg.fingerprint(*_SHAPE_SECTIONS) or old.data.image_size != cfg.data.image_size:
            raise GanrayError(
                f"run dir {str(run_dir)!r} holds a run with a different model config; "
                "resume it with its own config.yaml or choose another storage.run_name"
            )
    try:
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GanrayError(f"cannot create run dir {str(run_dir)!r} ({e.strerror}); choose a writable storage.runs_dir") from None
    tmp = cfg_path.with_suffix(".yaml.tmp")
    tmp.write_text(dump_config(cfg))
    os.replace(tmp, cfg_path)
    return resuming


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metric lines past `step`: after a resume they would be logged twice."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(l + "\n" for l in kept))
    os.replace(tmp, path)


class RunWriter:
    """Rank 0's writer for metrics and sample grids; every other rank's calls are no-ops."""

    def __init__(self, run_dir: Path, rank: int = 0) -> None:
        self.run_dir, self.active = Path(run_dir), rank == 0

    def metrics(self, step: int, metrics: dict) -> None:
        if not self.active:
            return
        line = json.dumps({"step": step, "time": round(time.time(), 3), **metrics}, sort_keys=True)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(line + "\n")

    def samples(self, step: int, png: bytes) -> Path | None:
        if not self.active:
            return None
        path = self.run_dir / "samples" / f"step_{step:07d}.png"
        tmp = path.with_suffix(".png.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, path)
        return path


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
