"""MNIST / Fashion-MNIST idx files, plain or gzipped, read without torchvision's downloader.

Users usually fetch these files by hand, so every check names the offending file: a truncated
download or a swapped label file should say so rather than fail deep inside training.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import numpy as np
import torch

from ganray.config import DataConfig
from ganray.data.base import ImageDataset, Splits, to_model_shape
from ganray.errors import GanrayError

log = logging.getLogger(__name__)

# idx type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

MNIST_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
FASHION_MNIST_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CLASS_NAMES: dict[str, tuple[str, ...]] = {"mnist": MNIST_NAMES, "fashion-mnist": FASHION_MNIST_NAMES}

# (split, role) -> the canonical file stem; `.gz` and the dotted Kaggle spelling are also accepted
IDX_FILES: dict[tuple[str, str], str] = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}



def _read_bytes(path: Path) -> bytes:
    """Gzip is detected by its magic, not the name, so a renamed or already-unpacked file still loads."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise GanrayError(f"idx file '{path}' is a corrupt gzip archive ({e}); download it again") from None


def parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Header: two zero bytes, a type byte, a dimension count, then one big-endian uint32 per dimension."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise GanrayError(f"'{name}' is not an idx file (bad magic number); point data.path at the MNIST idx files")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise GanrayError(f"'{name}' has unknown idx type byte 0x{code:02x}; the file is corrupt, download it again")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise GanrayError(f"'{name}' has a truncated idx header; the file is corrupt, download it again")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        raise GanrayError(
            f"'{name}' holds {got} data bytes but its header {dims} needs {expected}; "
            "the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """One idx file (optionally gzipped) as a native-endian array."""
    path = Path(path)
    try:
        raw = _read_bytes(path)
    except OSError as e:
        raise GanrayError(
            f"cannot read idx file '{path}' ({e.strerror or e}); check the file and its permissions"
        ) from None
    return parse_idx(raw, str(path))


def find_idx_file(root: Path, stem: str) -> Path:
    """The canonical name, then `.gz`, then the `train-images.idx3-ubyte` spelling some mirrors use."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (root / name).is_file():
            return root / name
    raise GanrayError(
        f"missing '{stem}' (or '{stem}.gz') in '{root}'; put the four MNIST-format idx files there "
        "or point data.path at the directory that holds them"
    )


def _load_split(root: Path, split: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    img_path = find_idx_file(root, IDX_FILES[(split, "images")])
    lab_path = find_idx_file(root, IDX_FILES[(split, "labels")])
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise GanrayError(
            f"'{img_path}' holds {images.dtype} {images.shape}, not uint8 N x H x W images; "
            "check that the image and label files are not swapped"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise GanrayError(
            f"'{lab_path}' holds {labels.dtype} {labels.shape}, not integer N labels; "
            "check that the image and label files are not swapped"
        )
    if len(labels) != len(images):
        raise GanrayError(
            f"'{lab_path}' has {len(labels)} labels but '{img_path.name}' has {len(images)} images; "
            "use matching files from the same download"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise GanrayError(
            f"'{lab_path}' has labels in [{int(labels.min())}, {int(labels.max())}], expected 0..{num_classes - 1}; "
            "the file is corrupt or not an MNIST-format label file"
        )
    return torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels.astype(np.int64))



def load_idx_splits(cfg: DataConfig, kind: str) -> Splits:
    """The official train/t10k split is kept: published numbers on these sets use it."""
    if kind not in CLASS_NAMES:
        raise GanrayError(f"unknown idx dataset {kind!r}; use one of {sorted(CLASS_NAMES)}")
    if cfg.path is None:
        raise GanrayError(f"data.path is required for data.source={kind}; set it to the directory of idx files")
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise GanrayError(f"data.path '{root}' is not a directory; point it at the directory of {kind} idx files")
    names = CLASS_NAMES[kind]
    parts = {}
    for split in ("train", "test"):
        images, labels = _load_split(root, split, len(names))
        parts[split] = ImageDataset(to_model_shape(images, cfg.image_size, cfg.channels), labels, names)
    log.info("%s: %d train, %d test images from %s", kind, len(parts["train"]), len(parts["test"]), root)
    return Splits(train=parts["train"], test=parts["test"])
