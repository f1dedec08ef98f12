"""Exported generators: the EMA weights plus everything needed to sample without the dataset.

`<run>/generator/` (docs/contracts.md, on local disk or S3) holds `generator.safetensors` and `generator.json`. BatchNorm
statistics are recalibrated before export, so the exported weights sample correctly as-is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ganray import __version__
from ganray.config import ModelConfig, StorageConfig
from ganray.errors import GanrayError
from ganray.fileio import sha256_file
from ganray.metrics.names import SCORE_PREFIXES
from ganray.models import build_generator
from ganray.runs.checkpoint import checkpoint_name, checkpoint_step, load_checkpoint
from ganray.storage import is_s3, open_store, upload_dir
from ganray.runs.run_dir import RunDir, checkpoint_names, load_latest, read_config, read_metrics
from ganray.runs.selection import best_step
from ganray.models.sampling import recalibrate_batchnorm

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


def generator_from(meta: dict[str, Any], state: dict) -> nn.Module:
    """An inference-ready G from its weights and the `model`, `image_shape`, `class_names` of generator.json."""
    model = ModelConfig.model_validate(meta["model"])
    G = build_generator(model, tuple(meta["image_shape"]), len(meta["class_names"]))
    G.load_state_dict(state)
    # NHWC: oneDNN's and cuDNN's transposed convolutions are faster in it (CPU sampling +9%).
    return G.eval().requires_grad_(False).to(memory_format=torch.channels_last)


def _loaded(state: dict, meta: dict[str, Any], path: str, scores: dict[str, float]) -> LoadedGenerator:
    """The recalibrated EMA generator of one checkpoint, with what generator.json records."""
    G = generator_from(meta, state["G_ema"] if state.get("G_ema") is not None else state["G"])
    recalibrate_batchnorm(G)
    info = {k: meta[k] for k in ("arch", "model", "image_shape", "class_names", "data_fingerprint", "data_source")}
    info.update(step=int(meta["step"]), checkpoint=path, metrics=scores)
    return LoadedGenerator(G, info)


def load_run_generator(
    run: "RunDir | str | Path", storage: StorageConfig | None = None, select: str | None = None
) -> LoadedGenerator:
    """The recalibrated EMA generator of a run's selected checkpoint (local or S3).

    `select` (default: the run's own `export.select`) picks the evaluated step with the best
    validation utility (`cas_val`) or FID among the checkpoints on disk; `last`, or a run with no
    such metric, gives the newest loadable checkpoint.
    """
    run = RunDir.at(run, storage)
    if select is None:
        own = read_config(run)
        select = own.export.select if own is not None else "last"
    names = checkpoint_names(run)
    lines = read_metrics(run)
    best = best_step(lines, select, {checkpoint_step(n) for n in names})
    if best is not None:
        chosen = checkpoint_name(best[0])
        names = [chosen, *[n for n in names if n != chosen]]
    found = load_latest(run, names)
    if found is None:
        raise GanrayError(f"run dir {run.uri!r} has no checkpoints; train it first (ganray train) or fix the path")
    state, meta, where = found
    step = int(meta["step"])
    scores = {}
    for line in lines:
        if line.get("step") == step:
            scores.update({k: v for k, v in line.items() if k.startswith(SCORE_PREFIXES)})
    loaded = _loaded(state, meta, where, scores)
    chosen_by = {"select": select, "metric": best[1], "value": best[2]} if best and best[0] == step else {"select": "last"}
    loaded.info["selected_by"] = chosen_by
    return loaded


def export_generator(run: "RunDir | str | Path") -> str:
    """Write `<run>/generator/` from the run's selected checkpoint (`export.select`); returns where it is."""
    run = RunDir.at(run)
    return write_generator(load_run_generator(run), run.join(GENERATOR_DIR), run.storage)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, scores: dict[str, float]) -> Path:
    """Write an exported generator from one checkpoint directory (a sweep's best trial)."""
    state, meta = load_checkpoint(checkpoint)
    scores = {k: v for k, v in scores.items() if k.startswith(SCORE_PREFIXES)}
    return Path(write_generator(_loaded(state, meta, str(checkpoint), scores), Path(out_dir)))


def _write_files(loaded: LoadedGenerator, d: Path) -> None:
    save_file({k: v.contiguous() for k, v in loaded.G.state_dict().items()}, str(d / WEIGHTS))
    info = {
        **{k: v for k, v in loaded.info.items() if k != "checkpoint"},
        "z_dim": loaded.G.z_dim,
        "num_classes": loaded.G.num_classes,
        "weights": WEIGHTS,
        "weights_sha256": sha256_file(d / WEIGHTS),
        "ganray_version": __version__,
    }
    (d / INFO).write_text(json.dumps(info, indent=2, sort_keys=True))


def write_generator(loaded: LoadedGenerator, out: str | Path, storage: StorageConfig | None = None) -> str:
    """generator.safetensors + generator.json into a directory or an s3:// prefix.

    Locally the directory is swapped in atomically. On S3 the weights go first and
    generator.json, which carries their checksum, last, so a reader never trusts a mismatch.
    """
    if is_s3(str(out)):
        store = open_store(str(out), storage)
        with tempfile.TemporaryDirectory(prefix="ganray-export-") as tmp:
            _write_files(loaded, Path(tmp))
            upload_dir(store, Path(tmp), last=INFO)
        return str(out).rstrip("/")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_files(loaded, tmp)
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return str(out)


def load_generator(path: str | Path, storage: StorageConfig | None = None) -> LoadedGenerator:
    """An exported generator directory or s3:// prefix; the weights are checked against generator.json first."""
    if is_s3(str(path)):
        store = open_store(str(path), storage)
        with tempfile.TemporaryDirectory(prefix="ganray-generator-") as tmp:
            for key in (INFO, WEIGHTS):
                try:
                    store.download_file(key, Path(tmp, key))
                except FileNotFoundError:
                    pass  # reported below, as for a local directory
            loaded = _load_dir(Path(tmp), str(path))
        return loaded
    return _load_dir(Path(path), str(path))


def _load_dir(d: Path, where: str) -> LoadedGenerator:
    try:
        info = json.loads((d / INFO).read_text())
    except FileNotFoundError:
        raise GanrayError(f"{where!r} has no {INFO}; point at an exported generator directory (<run>/generator)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GanrayError(f"{where.rstrip('/')}/{INFO} is corrupt; export the generator again") from None
    weights = d / WEIGHTS
    if not weights.is_file() or sha256_file(weights) != info.get("weights_sha256"):
        raise GanrayError(f"generator weights {where.rstrip('/')}/{WEIGHTS} are missing or fail their checksum; export the generator again")
    try:
        G = generator_from(info, load_file(str(weights)))
    except (RuntimeError, KeyError, ValueError) as e:
        raise GanrayError(f"generator {where!r} does not match its generator.json ({str(e).splitlines()[0][:120]})") from None
    return LoadedGenerator(G, info)
