"""Exported generators: the EMA weights plus everything needed to sample without the dataset.

`<run>/generator/` (DESIGN.md) holds `generator.safetensors` and `generator.json`. BatchNorm
statistics are recalibrated before export, so the exported weights sample correctly as-is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors.torch import load_file, save_file

from ganray import __version__
from ganray.config import ModelConfig
from ganray.errors import GanrayError
from ganray.fileio import sha256_file
from ganray.metrics.names import SCORE_PREFIXES
from ganray.models import build_generator
from ganray.training.checkpoint import load_checkpoint
from ganray.training.hooks import checkpoint_dirs, load_latest
from ganray.training.run_dir import CHECKPOINTS, read_metrics
from ganray.training.sampling import recalibrate_batchnorm

GENERATOR_DIR = "generator"
WEIGHTS = "generator.safetensors"
INFO = "generator.json"


@dataclass(frozen=True)
class LoadedGenerator:
    G: nn.Module
    info: dict[str, Any]  # arch, model, image_shape, class_names, data_fingerprint, step, metrics

    @property
    def fingerprint(self) -> str:
        """A hash of the weights themselves, so a run's checkpoint and its export have the same one."""
        return weights_fingerprint(self.G)


def weights_fingerprint(G: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _generator_from(meta: dict[str, Any], state: dict) -> nn.Module:
    model = ModelConfig.model_validate(meta["model"])
    G = build_generator(model, tuple(meta["image_shape"]), len(meta["class_names"]))
    G.load_state_dict(state)
    return G.eval().requires_grad_(False)


def _loaded(state: dict, meta: dict[str, Any], path: Path, scores: dict[str, float]) -> LoadedGenerator:
    """The recalibrated EMA generator of one checkpoint, with what generator.json records."""
    G = _generator_from(meta, state["G_ema"] if state.get("G_ema") is not None else state["G"])
    recalibrate_batchnorm(G)
    info = {k: meta[k] for k in ("arch", "model", "image_shape", "class_names", "data_fingerprint", "data_source")}
    info.update(step=int(meta["step"]), checkpoint=str(path), metrics=scores)
    return LoadedGenerator(G, info)


def load_run_generator(run_dir: str | Path) -> LoadedGenerator:
    """The EMA generator of a run's latest loadable checkpoint, BatchNorm recalibrated."""
    run_dir = Path(run_dir)
    found = load_latest(checkpoint_dirs(run_dir / CHECKPOINTS))
    if found is None:
        raise GanrayError(f"run dir {str(run_dir)!r} has no checkpoints; train it first (ganray train) or fix the path")
    state, meta, path = found
    step = int(meta["step"])
    scores = {}
    for line in read_metrics(run_dir):
        if line.get("step") == step:
            scores.update({k: v for k, v in line.items() if k.startswith(SCORE_PREFIXES)})
    return _loaded(state, meta, path, scores)


def export_generator(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write `<run>/generator/` (or `out_dir`) from the latest checkpoint; replaced atomically."""
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / GENERATOR_DIR
    return write_generator(load_run_generator(run_dir), out)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, scores: dict[str, float]) -> Path:
    """Write an exported generator from one checkpoint directory (a sweep's best trial)."""
    state, meta = load_checkpoint(checkpoint)
    scores = {k: v for k, v in scores.items() if k.startswith(SCORE_PREFIXES)}
    return write_generator(_loaded(state, meta, Path(checkpoint), scores), Path(out_dir))


def write_generator(loaded: LoadedGenerator, out: Path) -> Path:
    """generator.safetensors + generator.json, swapped in atomically so readers never see half."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in loaded.G.state_dict().items()}, str(tmp / WEIGHTS))
    info = {
        **{k: v for k, v in loaded.info.items() if k != "checkpoint"},
        "z_dim": loaded.G.z_dim,
        "num_classes": loaded.G.num_classes,
        "weights": WEIGHTS,
        "weights_sha256": sha256_file(tmp / WEIGHTS),
        "ganray_version": __version__,
    }
    (tmp / INFO).write_text(json.dumps(info, indent=2, sort_keys=True))
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def load_generator(path: str | Path) -> LoadedGenerator:
    """An exported generator directory; the weights are checked against generator.json first."""
    d = Path(path)
    try:
        info = json.loads((d / INFO).read_text())
    except FileNotFoundError:
        raise GanrayError(f"{str(d)!r} has no {INFO}; point at an exported generator directory (<run>/generator)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GanrayError(f"{str(d / INFO)!r} is corrupt; export the generator again") from None
    weights = d / info.get("weights", WEIGHTS)
    if not weights.is_file() or sha256_file(weights) != info.get("weights_sha256"):
        raise GanrayError(f"generator weights {str(weights)!r} are missing or fail their checksum; export the generator again")
    try:
        G = _generator_from(info, load_file(str(weights)))
    except (RuntimeError, KeyError, ValueError) as e:
        raise GanrayError(f"generator {str(d)!r} does not match its generator.json ({str(e).splitlines()[0][:120]})") from None
    return LoadedGenerator(G, info)
