"""Checkpoint directories: `state.pt` (weights_only-loadable) plus `meta.json` with its checksum.

The checksum lets a resume tell a truncated or corrupted file from a good one before torch
tries to parse it, and the file is only ever parsed with `weights_only=True`, so a checkpoint
can never execute code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ganray import __version__
from ganray.errors import GanrayError
from ganray.fileio import sha256_file

STATE_FILE = "state.pt"
META_FILE = "meta.json"


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def checkpoint_step(name: str) -> int:
    """The step of a checkpoint directory name: the inverse of `checkpoint_name`."""
    return int(name.removeprefix("step_"))



def save_checkpoint(directory: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, d / STATE_FILE)
    full_meta = {**meta, "step": int(state["step"]), "sha256": sha256_file(d / STATE_FILE), "ganray_version": __version__}
    (d / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=True))
    return d


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GanrayError(f"checkpoint {str(directory)!r} has no {META_FILE}; it is not a ganray checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GanrayError(f"checkpoint metadata {str(path)!r} is corrupt") from None


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (state, meta); a GanrayError names the checkpoint and what is wrong with it.

    The remedy depends on the caller (resume falls back to an older checkpoint), so the
    caller adds it.
    """
    d = Path(directory)
    meta = read_meta(d)
    path = d / STATE_FILE
    if not path.is_file():
        raise GanrayError(f"checkpoint {str(d)!r} has no {STATE_FILE}; it is incomplete")
    if sha256_file(path) != meta.get("sha256"):
        raise GanrayError(f"checkpoint {str(path)!r} fails its checksum (truncated or corrupt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GanrayError(f"checkpoint {str(path)!r} cannot be loaded safely ({first[:200]}); it is not a ganray checkpoint") from None
    return state, meta
