"""CIFAR-10 "python version" batches.

The batches are pickles, and a plain `pickle.load` runs whatever code a tampered file names.
They are read with an unpickler that resolves only the globals array reconstruction needs, so a
malicious file fails with an error instead of executing.
"""

from __future__ import annotations

import builtins
import codecs
import io
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganray.config import DataConfig
from ganray.data.base import ImageDataset, Splits, to_model_shape
from ganray.errors import GanrayError

log = logging.getLogger(__name__)

TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
SUBDIR = "cifar-10-batches-py"
CIFAR10_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
_PIXELS = 3 * 32 * 32

# Resolved from numpy itself so the same table works on numpy 1.x and 2.x, whichever wrote the file.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]
_SAFE_BUILTINS = (
    "bytes", "bytearray", "list", "dict", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bool",
)
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 1.x pickles (the official files)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 2.x pickles
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,  # protocol 5 arrays
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol <= 2 pickles written by Python 3
    **{(mod, name): getattr(builtins, name) for mod in ("builtins", "__builtin__") for name in _SAFE_BUILTINS},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS; everything else (os.system, eval, ...) is refused, never imported."""

    def __init__(self, file: io.BufferedIOBase, name: str) -> None:
        super().__init__(file, encoding="bytes")
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise GanrayError(
                f"'{self.name}': ganray refuses to unpickle {module}.{name}; CIFAR batches hold only arrays, "
                "so this file is not a genuine CIFAR-10 batch — download the dataset again"
            ) from None


def restricted_load(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, str(path)).load()
    except GanrayError:
        raise
    except OSError as e:
        raise GanrayError(
            f"cannot read CIFAR file '{path}' ({e.strerror or e}); check the file and its permissions"
        ) from None
    except Exception as e:  # pickle reports corruption as many exception types
        raise GanrayError(
            f"'{path}' is not a readable CIFAR-10 pickle ({type(e).__name__}: {e}); download the dataset again"
        ) from None


def _get(batch: dict, key: str, path: Path) -> Any:
    """Python 2 pickles (the official files) have bytes keys; re-pickled copies often have str keys."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise GanrayError(f"'{path}' has no '{key}' entry; it is not a CIFAR-10 batch (CIFAR-100 is not supported)")


def _decode(name: Any) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, (bytes, bytearray)) else str(name)


def read_batch(path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch as uint8 N x 3 x 32 x 32: each row is the R, G and B planes of a 32x32 image, row-major."""
    batch = restricted_load(path)
    if not isinstance(batch, dict):
        raise GanrayError(
            f"'{path}' holds a {type(batch).__name__}, not a CIFAR-10 batch dict; download the dataset again"
        )
    data = _get(batch, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise GanrayError(f"'{path}' data is {desc}, expected uint8 N x {_PIXELS}; download the dataset again")
    try:
        labels = np.asarray(_get(batch, "labels", path), dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise GanrayError(f"'{path}' labels are not a list of integers; download the dataset again") from None
    if labels.shape != (len(data),):
        raise GanrayError(f"'{path}' has {labels.size} labels for {len(data)} images; download the dataset again")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise GanrayError(
            f"'{path}' has labels in [{int(labels.min())}, {int(labels.max())}], expected 0..{num_classes - 1}; "
            "download the dataset again"
        )
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def read_label_names(path: Path) -> tuple[str, ...]:
    """The meta file is optional: CIFAR-10's names are fixed, so a missing one costs nothing."""
    if not path.is_file():
        log.info("no %s in %s; using the standard CIFAR-10 class names", META, path.parent)
        return CIFAR10_NAMES
    meta = restricted_load(path)
    names = _get(meta, "label_names", path) if isinstance(meta, dict) else None
    if not isinstance(names, (list, tuple)) or not names:
        raise GanrayError(f"'{path}' has no list of label_names; delete it to use the standard CIFAR-10 names")
    return tuple(_decode(n) for n in names)


def find_batch_dir(root: Path) -> Path:
    """Accept the directory the archive unpacks into, or its parent."""
    for d in (root, root / SUBDIR):
        if (d / TEST_BATCH).is_file() or (d / TRAIN_BATCHES[0]).is_file():
            return d
    raise GanrayError(
        f"no CIFAR-10 batches in '{root}' (expected data_batch_1..5 and test_batch, or a {SUBDIR} folder); "
        "extract cifar-10-python.tar.gz there"
    )



def load_cifar10_splits(cfg: DataConfig) -> Splits:
    """The official 50k/10k split is kept: published numbers on CIFAR-10 use it."""
    if cfg.path is None:
        raise GanrayError(
            "data.path is required for data.source=cifar10; set it to the extracted cifar-10-batches-py directory"
        )
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise GanrayError(
            f"data.path '{root}' is not a directory; extract cifar-10-python.tar.gz and point data.path at it"
        )
    bdir = find_batch_dir(root)
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (bdir / n).is_file()]
    if missing:
        raise GanrayError(f"'{bdir}' lacks {', '.join(missing)}; extract the complete cifar-10-python.tar.gz there")
    names = read_label_names(bdir / META)
    train = [read_batch(bdir / n, len(names)) for n in TRAIN_BATCHES]
    test_images, test_labels = read_batch(bdir / TEST_BATCH, len(names))
    train_ds = ImageDataset(to_model_shape(torch.cat([x for x, _ in train]), cfg.image_size, cfg.channels), torch.cat([y for _, y in train]), names)
    test_ds = ImageDataset(to_model_shape(test_images, cfg.image_size, cfg.channels), test_labels, names)
    log.info("cifar10: %d train, %d test images from %s", len(train_ds), len(test_ds), bdir)
    return Splits(train=train_ds, test=test_ds)
