"""Reading WebDataset shards (docs/contracts.md format): `<dir or s3 prefix>/shard-*.tar` with `<key>.png/.cls/.json`.

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

from ganray.config import DataConfig, StorageConfig
from ganray.data.base import ImageDataset, Splits, stratified_split
from ganray.data.folder import to_mode
from ganray.errors import GanrayError
from ganray.storage import Store, is_s3, open_store


def shard_keys(store: Store) -> list[str]:
    """Shard object keys under the store's root, in shard order."""
    try:
        keys = [o.key for o in store.list("shard-") if o.key.endswith(".tar") and "/" not in o.key]
    except FileNotFoundError:
        keys = []
    if not keys:
        raise GanrayError(f"no shard-*.tar files in {store.uri()!r}; point at the output of ganray generate or augment")
    return sorted(keys)


def _read_shard(data: bytes, where: str, channels: int) -> tuple[list[np.ndarray], list[int], dict[int, str]]:
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = Path(member.name).name.partition(".")
                f = tar.extractfile(member)
                samples.setdefault(key, {})[ext] = f.read() if f is not None else b""
    except tarfile.TarError as e:
        raise GanrayError(f"shard {where!r} is not a readable tar ({e}); regenerate it") from None
    images, labels, names = [], [], {}
    for key in sorted(samples):
        s = samples[key]
        if "png" not in s or "cls" not in s:
            raise GanrayError(f"sample {key!r} in {where!r} lacks a .png or .cls member; it is not a ganray shard")
        try:
            label = int(s["cls"].decode().strip())
            with Image.open(io.BytesIO(s["png"])) as im:
                arr = np.asarray(to_mode(im, channels))
            meta = json.loads(s["json"]) if "json" in s else {}
        except (ValueError, OSError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise GanrayError(f"sample {key!r} in {where!r} is corrupt ({type(e).__name__}); regenerate the shard") from None
        if label < 0:
            raise GanrayError(f"sample {key!r} in {where!r} has a negative class index {label}; regenerate the shard")
        if isinstance(meta, dict) and isinstance(meta.get("class_name"), str):
            names[label] = meta["class_name"]
        images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        labels.append(label)
    return images, labels, names


def _manifest(store: Store) -> dict | None:
    """The manifest, checked for the fields a reader relies on: a shard list of relative .tar keys."""
    where = store.uri("manifest.json")
    try:
        manifest = json.loads(store.read_bytes("manifest.json"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GanrayError(f"{where!r} is corrupt; regenerate the output or remove the manifest") from None
    shards = manifest.get("shardlist") if isinstance(manifest, dict) else None
    names = manifest.get("class_names") if isinstance(manifest, dict) else None
    if (
        not isinstance(shards, list)
        or not all(isinstance(e, dict) and _plain_shard_key(e.get("url")) for e in shards)
        or not (names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names)))
    ):
        raise GanrayError(
            f"{where!r} is not a ganray manifest (needs a shardlist of shard-*.tar urls under the same prefix); "
            "regenerate the output or remove the manifest"
        )
    return manifest


def _plain_shard_key(url: object) -> bool:
    """A shard next to the manifest: no directories, `..` or absolute paths, so a manifest can't point elsewhere."""
    return isinstance(url, str) and url.endswith(".tar") and "/" not in url and "\\" not in url and url not in {".", ".."}


def load_shards(root: str | Path, channels: int = 1, storage: StorageConfig | None = None) -> ImageDataset:
    """All samples of all shards under a directory or s3:// prefix, in shard then key order."""
    uri = str(root)
    if not is_s3(uri):
        path = Path(uri).expanduser()
        if not path.is_dir():
            raise GanrayError(f"shard directory {str(path)!r} does not exist; point at a directory of shard-*.tar files")
        uri = str(path)
    store = open_store(uri, storage)
    manifest = _manifest(store)
    # With a manifest, exactly its shards: anything else under the prefix is not this dataset.
    keys = [e["url"] for e in manifest["shardlist"]] if manifest else shard_keys(store)
    images, labels, names = [], [], {}
    for key in keys:
        try:
            data = store.read_bytes(key)
        except FileNotFoundError:
            raise GanrayError(f"shard {store.uri(key)!r} listed in the manifest is missing; rerun the generate command to restore it") from None
        i, l, n = _read_shard(data, store.uri(key), channels)
        if manifest and manifest.get("class_names") and l and max(l) >= len(manifest["class_names"]):
            raise GanrayError(
                f"shard {store.uri(key)!r} has class index {max(l)} but the manifest names "
                f"{len(manifest['class_names'])} classes; regenerate the output or fix manifest.json"
            )
        images += i
        labels += l
        names.update(n)
    if not images:
        raise GanrayError(f"the shards in {store.uri()!r} hold no samples")
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise GanrayError(f"shards in {store.uri()!r} mix image shapes {sorted(shapes)}; one dataset has one shape")
    class_names = manifest.get("class_names") if manifest else None
    if not class_names:
        k = max(max(labels) + 1, max(names, default=-1) + 1)
        class_names = [names.get(c, str(c)) for c in range(k)]
    return ImageDataset(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long), tuple(class_names))


def load_wds_splits(cfg: DataConfig, storage: StorageConfig | None = None) -> Splits:
    """A `wds` data source: shards (local or S3) with a stratified test split held out."""
    if cfg.path is None:
        raise GanrayError("data.path is required for data.source=wds; set it to a shard directory or s3://bucket/prefix")
    full = load_shards(cfg.path, cfg.channels, storage)
    train_idx, test_idx = stratified_split(full.labels.numpy(), cfg.test_fraction, cfg.split_seed)
    return Splits(train=full.subset(train_idx), test=full.subset(test_idx))
