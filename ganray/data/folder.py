"""ImageFolder layout: `root/<class>/<images>`, optionally pre-split as `root/train` and `root/test`.

This is the source for users' own data, so it has to cope with whatever files they have: any
PIL mode (palette, alpha, 16-bit), any size, and a clear error naming the one file that is broken.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ganray.config import DataConfig
from ganray.data.base import ImageDataset, Splits, stratified_split
from ganray.errors import GanrayError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


def _visible(name: str) -> bool:
    return not name.startswith(".")


def list_classes(root: Path) -> tuple[str, ...]:
    """Sorted so label ids are the same on every machine, whatever order the filesystem lists."""
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p.name)))
    if not classes:
        raise GanrayError(f"no class folders in '{root}'; lay images out as {root}/<class_name>/<image files>")
    return classes


def list_images(class_dir: Path) -> list[Path]:
    """Recursive, like torchvision's ImageFolder; non-image files (notes, thumbnails dbs) are skipped."""
    files = sorted(
        p for p in class_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        and all(_visible(part) for part in p.relative_to(class_dir).parts)
    )
    if not files:
        raise GanrayError(
            f"class folder '{class_dir}' has no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
            "add images or remove the folder"
        )
    return files


def _wide_to_uint8(a: np.ndarray, is_float: bool) -> np.ndarray:
    """Scale by the range the data evidently uses ([0,1] float, 8-bit, 16-bit), else min-max."""
    a = a.astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if is_float and lo >= 0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif lo >= 0 and hi <= 65535:
        a = a / 257.0
    else:
        a = (a - lo) * (255.0 / (hi - lo))
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def to_mode(im: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to "L" or "RGB": PIL's own convert clips 16-bit data and keeps alpha junk."""
    if im.mode.startswith("I;16"):
        im = Image.fromarray(_wide_to_uint8(np.asarray(im) / 257.0, is_float=False))
    elif im.mode in ("I", "F"):
        im = Image.fromarray(_wide_to_uint8(np.asarray(im), is_float=im.mode == "F"))
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        # Composite onto black: fully transparent pixels carry arbitrary colour that would otherwise leak in.
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    if im.mode not in ("L", "RGB"):  # 1, CMYK, YCbCr, ...
        im = im.convert("RGB")
    target = "L" if channels == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


def load_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One file as uint8 C x size x size (stretched to square, like to_model_shape)."""
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im) or im
            im = to_mode(im, channels)
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            a = np.asarray(im, dtype=np.uint8)
    except GanrayError:
        raise
    except Exception as e:  # PIL reports corrupt files as OSError, ValueError, SyntaxError, struct.error, ...
        raise GanrayError(
            f"cannot read image '{path}' ({type(e).__name__}: {e}); delete or replace the file"
        ) from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def load_tree(root: Path, classes: tuple[str, ...], size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = list_images(root / name)
        files += found
        labels += [label] * len(found)
    workers = min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes with the GIL released
        arrays = list(pool.map(lambda p: load_image(p, size, channels), files))
    return torch.from_numpy(np.stack(arrays)), torch.tensor(labels, dtype=torch.int64)


def load_folder_splits(cfg: DataConfig) -> Splits:
    """Use the user's own train/test split when they made one; otherwise hold out a stratified fraction."""
    if cfg.path is None:
        raise GanrayError("data.path is required for data.source=folder; set it to the root of the class folders")
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise GanrayError(f"data.path '{root}' is not a directory; point it at a folder of <class_name>/ subfolders")
    size, ch = cfg.image_size, cfg.channels
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = list_classes(root / "train")
        test_classes = list_classes(root / "test")
        if classes != test_classes:
            only_train = sorted(set(classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(classes))
            raise GanrayError(
                f"'{root}/train' and '{root}/test' have different class folders "
                f"(only in train: {only_train}, only in test: {only_test}); give both the same classes"
            )
        train = ImageDataset(*load_tree(root / "train", classes, size, ch), classes)
        test = ImageDataset(*load_tree(root / "test", classes, size, ch), classes)
    else:
        classes = list_classes(root)
        full = ImageDataset(*load_tree(root, classes, size, ch), classes)
        train_idx, test_idx = stratified_split(full.labels.numpy(), cfg.test_fraction, cfg.split_seed)
        train, test = full.subset(train_idx), full.subset(test_idx)
    log.info("folder: %d classes, %d train, %d test images from %s", len(classes), len(train), len(test), root)
    return Splits(train=train, test=test)
