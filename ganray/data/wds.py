"""Reading WebDataset shards (DESIGN.md format): `<dir>/shard-*.tar` with `<key>.png/.cls/.json`.

ganray's own `generate`/`augment` output is read back through here, for evaluation and as a
training source. Class names come from `manifest.json` when present, else from the samples'
JSON, else the class indices.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganray.data.base import ImageDataset
from ganray.data.folder import to_mode
from ganray.errors import GanrayError


def shard_paths(root: Path) -> list[Path]:
    if not root.is_dir():
        raise GanrayError(f"shard directory {str(root)!r} does not exist; point at a directory of shard-*.tar files")
    shards = sorted(root.glob("shard-*.tar"))
    if not shards:
        raise GanrayError(f"no shard-*.tar files in {str(root)!r}; point at the output directory of ganray generate")
    return shards


def _read_shard(path: Path, channels: int) -> tuple[list[np.ndarray], list[int], dict[int, str]]:
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = Path(member.name).name.partition(".")
                f = tar.extractfile(member)
                samples.setdefault(key, {})[ext] = f.read() if f is not None else b""
    except tarfile.TarError as e:
        raise GanrayError(f"shard {str(path)!r} is not a readable tar ({e}); regenerate it") from None
    images, labels, names = [], [], {}
    for key in sorted(samples):
        s = samples[key]
        if "png" not in s or "cls" not in s:
            raise GanrayError(f"sample {key!r} in {str(path)!r} lacks a .png or .cls member; it is not a ganray shard")
        try:
            label = int(s["cls"].decode().strip())
            with Image.open(io.BytesIO(s["png"])) as im:
                arr = np.asarray(to_mode(im, channels))
        except (ValueError, OSError) as e:
            raise GanrayError(f"sample {key!r} in {str(path)!r} is corrupt ({type(e).__name__}); regenerate the shard") from None
        if "json" in s:
            meta = json.loads(s["json"])
            if isinstance(meta.get("class_name"), str):
                names[label] = meta["class_name"]
        images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        labels.append(label)
    return images, labels, names


def load_shards(root: str | Path, channels: int = 1) -> ImageDataset:
    """All samples of all shards in `root`, in shard then key order."""
    root = Path(root).expanduser()
    images, labels, names = [], [], {}
    for path in shard_paths(root):
        i, l, n = _read_shard(path, channels)
        images += i
        labels += l
        names.update(n)
    if not images:
        raise GanrayError(f"the shards in {str(root)!r} hold no samples")
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise GanrayError(f"shards in {str(root)!r} mix image shapes {sorted(shapes)}; one dataset has one shape")
    manifest = root / "manifest.json"
    class_names: list[str] | None = None
    if manifest.is_file():
        class_names = json.loads(manifest.read_text()).get("class_names")
    if not class_names:
        k = max(max(labels) + 1, max(names, default=-1) + 1)
        class_names = [names.get(c, str(c)) for c in range(k)]
    return ImageDataset(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long), tuple(class_names))
