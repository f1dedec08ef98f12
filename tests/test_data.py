"""Data sources: small real files written to tmp_path, loaded through the public entry points."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganray.config import DataConfig
from ganray.data import ImageDataset, Splits, load_splits, to_uint8, to_unit
from ganray.data.cifar import CIFAR10_NAMES
from ganray.data.idx import FASHION_MNIST_NAMES, read_idx
from ganray.data.registry import SOURCES, train_subset
from ganray.errors import GanrayError

# ---------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    raw = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def make_idx_dir(root: Path, n_train: int = 30, n_test: int = 10, gz: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{split}-images-idx3-ubyte", images, gz)
        write_idx(root / f"{split}-labels-idx1-ubyte", labels, gz)
        arrays[split] = (images, labels)
    return arrays


def cifar_batch(n: int, seed: int, str_keys: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"training batch",
        b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return {k.decode(): v for k, v in batch.items()} if str_keys else batch


def write_cifar(root: Path, n: int = 4, protocol: int = pickle.HIGHEST_PROTOCOL, str_keys: bool = False,
                meta: bool = True) -> dict[str, dict]:
    root.mkdir(parents=True, exist_ok=True)
    batches = {name: cifar_batch(n, i, str_keys)
               for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"])}
    for name, batch in batches.items():
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    if meta:
        names = [f"class_{i}".encode() for i in range(10)]
        with open(root / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": names, b"num_cases_per_batch": n}, f, protocol=protocol)
    return batches


def save(path: Path, im: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


class Evil:
    """Unpickling this runs a shell command: the restricted unpickler must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------- idx


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = make_idx_dir(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    got = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    np.testing.assert_array_equal(got, arrays["train"][0])
    splits = load_splits(DataConfig(val_fraction=0.0, source="mnist", path=str(tmp_path)))
    assert isinstance(splits, Splits)
    assert (len(splits.train), len(splits.test)) == (30, 10)
    assert splits.train.shape == (1, 28, 28)
    assert splits.train.class_names == tuple(str(d) for d in range(10))
    np.testing.assert_array_equal(splits.train.images[:, 0].numpy(), arrays["train"][0])
    np.testing.assert_array_equal(splits.test.labels.numpy(), arrays["t10k"][1])


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_other_dtypes(tmp_path: Path, dtype: type) -> None:
    arr = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    got = read_idx(write_idx(tmp_path / "x-idx3", arr))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_payload_names_file(tmp_path: Path, gz: bool) -> None:
    raw = idx_bytes(np.zeros((5, 4, 4), dtype=np.uint8))[:-3]
    path = tmp_path / ("short-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(GanrayError, match="short-images-idx3-ubyte") as e:
        read_idx(path)
    assert "77 data bytes" in str(e.value) and "80" in str(e.value)


def test_idx_trailing_bytes_and_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "long-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)) + b"\0")
    with pytest.raises(GanrayError, match="long-idx1-ubyte"):
        read_idx(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(GanrayError, match="not an idx file"):
        read_idx(path)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 2, 2), np.uint8)))[:-6])
    with pytest.raises(GanrayError, match="train-images-idx3-ubyte.gz"):
        read_idx(path)


def test_idx_missing_file_names_file_and_dir(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(GanrayError) as e:
        load_splits(DataConfig(val_fraction=0.0, source="mnist", path=str(tmp_path)))
    assert "t10k-labels-idx1-ubyte" in str(e.value) and str(tmp_path) in str(e.value)


def test_idx_count_mismatch_and_label_range(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29, dtype=np.uint8))
    with pytest.raises(GanrayError, match="train-labels-idx1-ubyte.*29 labels.*30 images"):
        load_splits(DataConfig(val_fraction=0.0, source="mnist", path=str(tmp_path)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(30, 10, dtype=np.uint8))
    with pytest.raises(GanrayError, match="train-labels-idx1-ubyte.*labels in \\[10, 10\\]"):
        load_splits(DataConfig(val_fraction=0.0, source="mnist", path=str(tmp_path)))


def test_fashion_mnist_names_and_resize(tmp_path: Path) -> None:
    make_idx_dir(tmp_path, gz=True)
    splits = load_splits(DataConfig(val_fraction=0.0, source="fashion-mnist", path=str(tmp_path), image_size=32, channels=3))
    assert splits.train.class_names == FASHION_MNIST_NAMES
    assert splits.train.class_names[0] == "T-shirt/top" and splits.train.class_names[9] == "Ankle boot"
    assert splits.train.shape == (3, 32, 32)
    # grey to RGB: the three channels are equal
    assert torch.equal(splits.train.images[:, 0], splits.train.images[:, 2])


# ---------------------------------------------------------------- CIFAR


def test_cifar_pixel_layout_round_trips(tmp_path: Path) -> None:
    batches = write_cifar(tmp_path)
    batches["data_batch_1"][b"data"][0, [5 * 32 + 7, 1024 + 5 * 32 + 7, 2048 + 5 * 32 + 7]] = [11, 22, 33]
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump(batches["data_batch_1"], f)
    splits = load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(tmp_path), image_size=32, channels=3))
    assert (len(splits.train), len(splits.test)) == (20, 4)
    assert splits.train.shape == (3, 32, 32)
    assert splits.train.images[0, :, 5, 7].tolist() == [11, 22, 33]
    assert splits.train.class_names == tuple(f"class_{i}" for i in range(10))
    want_labels = sum((batches[f"data_batch_{j}"][b"labels"] for j in range(1, 6)), [])
    assert splits.train.labels.tolist() == want_labels
    test_data = batches["test_batch"][b"data"]
    np.testing.assert_array_equal(splits.test.images.reshape(4, -1).numpy(), test_data)


def test_cifar_subdir_str_keys_protocol2_no_meta(tmp_path: Path) -> None:
    batches = write_cifar(tmp_path / "cifar-10-batches-py", protocol=2, str_keys=True, meta=False)
    splits = load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(tmp_path), image_size=32, channels=3))
    assert splits.train.class_names == CIFAR10_NAMES
    np.testing.assert_array_equal(splits.test.images.reshape(4, -1).numpy(), batches["test_batch"]["data"])
    grey = load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(tmp_path), image_size=16, channels=1))
    assert grey.train.shape == (1, 16, 16)


def test_cifar_malicious_pickle_refused_and_not_executed(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil(marker), b"labels": []}, f)
    with pytest.raises(GanrayError, match="data_batch_3.*refuses to unpickle .*system.*CIFAR batches hold only arrays"):
        load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(tmp_path), image_size=32, channels=3))
    assert not marker.exists()


def test_cifar_bad_shapes_and_labels_name_file(tmp_path: Path) -> None:
    batches = write_cifar(tmp_path)
    bad = {**batches["data_batch_2"], b"data": np.zeros((4, 3000), np.uint8)}
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump(bad, f)
    with pytest.raises(GanrayError, match="data_batch_2.*3072"):
        load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(tmp_path), image_size=32, channels=3))
    bad = {**batches["data_batch_2"], b"labels": [0, 1, 2, 10]}
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump(bad, f)
    with pytest.raises(GanrayError, match="data_batch_2.*labels in"):
        load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(tmp_path), image_size=32, channels=3))
    (tmp_path / "data_batch_2").write_bytes(b"garbage")
    with pytest.raises(GanrayError, match="data_batch_2"):
        load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(tmp_path), image_size=32, channels=3))
    (tmp_path / "data_batch_2").unlink()
    with pytest.raises(GanrayError, match="lacks data_batch_2"):
        load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(tmp_path), image_size=32, channels=3))


# ---------------------------------------------------------------- folder


def make_mixed_folder(root: Path) -> None:
    save(root / "b_rgb" / "solid.png", Image.new("RGB", (13, 7), (10, 200, 30)))
    save(root / "b_rgb" / "big.JPG", Image.new("RGB", (40, 33), (255, 255, 255)))
    save(root / "b_rgb" / "notes" / "nested.bmp", Image.new("RGB", (5, 5), (0, 0, 255)))
    (root / "b_rgb" / "readme.txt").write_text("not an image")
    save(root / "a_grey" / "grey.png", Image.new("L", (9, 9), 77))
    save(root / "a_grey" / "wide16.png", Image.fromarray(np.full((6, 10), 257 * 100, dtype=np.uint16)))
    transparent = Image.new("RGBA", (8, 8), (250, 0, 0, 0))
    save(root / "c_alpha" / "transparent.png", transparent)
    save(root / "c_alpha" / "opaque.webp", Image.new("RGBA", (8, 8), (0, 250, 0, 255)))
    pal = Image.new("P", (11, 11), 1)
    pal.putpalette([0, 0, 0, 100, 150, 200] + [0] * 762)
    save(root / "c_alpha" / "palette.gif", pal)


def _by_label(ds: ImageDataset) -> dict[int, list[torch.Tensor]]:
    out: dict[int, list[torch.Tensor]] = {}
    for im, y in zip(ds.images, ds.labels.tolist()):
        out.setdefault(y, []).append(im)
    return out


def test_folder_mixed_modes_rgb(tmp_path: Path) -> None:
    make_mixed_folder(tmp_path)
    splits = load_splits(DataConfig(val_fraction=0.0, source="folder", path=str(tmp_path), image_size=12, channels=3, test_fraction=0.01))
    ds = splits.train
    assert ds.class_names == ("a_grey", "b_rgb", "c_alpha")
    assert len(splits.test) == 0 and len(ds) == 8 and ds.shape == (3, 12, 12)
    # files sorted within a class: a_grey = [grey.png, wide16.png]; b_rgb = [big.JPG, notes/nested.bmp, solid.png]
    per = _by_label(ds)
    colour = {y: [tuple(int(v) for v in im[:, 6, 6]) for im in ims] for y, ims in per.items()}
    assert colour[0] == [(77, 77, 77), (100, 100, 100)]
    assert colour[1][0] == (255, 255, 255) and colour[1][1] == (0, 0, 255)
    assert all(abs(a - b) <= 1 for a, b in zip(colour[1][2], (10, 200, 30)))
    # c_alpha sorted: opaque.webp, palette.gif, transparent.png (fully transparent -> black)
    assert colour[2][0][1] >= 245 and colour[2][0][0] <= 5
    assert colour[2][1] == (100, 150, 200)
    assert colour[2][2] == (0, 0, 0)
    # constant images stay constant after the resize
    assert all(int(im.max()) - int(im.min()) <= 1 for im in per[0])


def test_folder_grey_and_odd_size(tmp_path: Path) -> None:
    make_mixed_folder(tmp_path)
    splits = load_splits(DataConfig(val_fraction=0.0, source="folder", path=str(tmp_path), image_size=20, channels=1, test_fraction=0.01))
    assert splits.train.shape == (1, 20, 20)
    per = _by_label(splits.train)
    assert [int(im[0, 10, 10]) for im in per[0]] == [77, 100]
    solid = int(per[1][2][0, 10, 10])
    assert abs(solid - round(0.299 * 10 + 0.587 * 200 + 0.114 * 30)) <= 1


def test_folder_stratified_split(tmp_path: Path) -> None:
    for c in ("cat", "dog"):
        for i in range(10):
            save(tmp_path / c / f"{i}.png", Image.new("L", (8, 8), i * 10))
    cfg = DataConfig(val_fraction=0.0, source="folder", path=str(tmp_path), image_size=8, test_fraction=0.2)
    splits = load_splits(cfg)
    assert (len(splits.train), len(splits.test)) == (16, 4)
    assert splits.test.labels.bincount().tolist() == [2, 2]
    again = load_splits(cfg)
    assert torch.equal(splits.test.images, again.test.images)


def test_folder_train_test_subdirs(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 2)):
        for c in ("x", "y"):
            for i in range(n):
                save(tmp_path / split / c / f"{i}.png", Image.new("L", (8, 8), 50 if c == "x" else 150))
    splits = load_splits(DataConfig(val_fraction=0.0, source="folder", path=str(tmp_path), image_size=8))
    assert splits.train.class_names == ("x", "y")
    assert (len(splits.train), len(splits.test)) == (6, 4)
    assert splits.test.labels.tolist() == [0, 0, 1, 1]
    assert splits.test.images[:, 0, 0, 0].tolist() == [50, 50, 150, 150]
    save(tmp_path / "test" / "z" / "0.png", Image.new("L", (8, 8)))
    with pytest.raises(GanrayError, match="different class folders.*only in test: \\['z'\\]"):
        load_splits(DataConfig(val_fraction=0.0, source="folder", path=str(tmp_path), image_size=8))


def test_folder_corrupt_empty_and_no_classes(tmp_path: Path) -> None:
    save(tmp_path / "a" / "ok.png", Image.new("L", (8, 8)))
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    cfg = DataConfig(val_fraction=0.0, source="folder", path=str(tmp_path), image_size=8)
    with pytest.raises(GanrayError, match="broken.png"):
        load_splits(cfg)
    (tmp_path / "a" / "broken.png").unlink()
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanrayError, match="'.*empty' has no images"):
        load_splits(cfg)
    bare = tmp_path / "bare"
    (bare / "loose.png").parent.mkdir()
    Image.new("L", (8, 8)).save(bare / "loose.png")
    with pytest.raises(GanrayError, match="no class folders"):
        load_splits(DataConfig(val_fraction=0.0, source="folder", path=str(bare), image_size=8))


# ---------------------------------------------------------------- digits, registry, contract


@pytest.fixture(scope="module")
def digits() -> Splits:
    """The source's own train/test split (no validation carved), as the loaders make it."""
    return load_splits(DataConfig(val_fraction=0.0))


def test_digits_sizes_shape_and_values(digits: Splits) -> None:
    assert len(digits.train) + len(digits.test) == 1797
    assert (len(digits.train), len(digits.test)) == (1438, 359)
    assert digits.train.shape == (1, 28, 28)
    assert digits.train.class_names == tuple(str(d) for d in range(10))
    assert digits.train.images.dtype == torch.uint8 and int(digits.train.images.max()) >= 250
    native = load_splits(DataConfig(val_fraction=0.0, image_size=8))
    from sklearn.datasets import load_digits

    raw = load_digits()
    all_images = torch.cat([native.train.images, native.test.images])
    assert sorted(torch.unique(all_images).tolist()) == sorted({round(v * 255 / 16) for v in np.unique(raw.images)})


def test_digits_deterministic_and_stratified(digits: Splits) -> None:
    again = load_splits(DataConfig(val_fraction=0.0))
    assert torch.equal(digits.train.images, again.train.images)
    assert torch.equal(digits.test.labels, again.test.labels)
    totals = digits.train.labels.bincount(minlength=10) + digits.test.labels.bincount(minlength=10)
    test_counts = digits.test.labels.bincount(minlength=10)
    assert test_counts.tolist() == [int(round(int(n) * 0.2)) for n in totals]
    other = load_splits(DataConfig(val_fraction=0.0, split_seed=1))
    assert not torch.equal(digits.test.images, other.test.images)


def test_digits_rgb(digits: Splits) -> None:
    rgb = load_splits(DataConfig(val_fraction=0.0, channels=3, image_size=16))
    assert rgb.train.shape == (3, 16, 16)
    assert torch.equal(rgb.train.images[:, 0], rgb.train.images[:, 1])


def test_train_fraction_subsets(digits: Splits) -> None:
    half = load_splits(DataConfig(train_fraction=0.5, val_fraction=0.0))
    full_counts = digits.train.labels.bincount(minlength=10)
    half_counts = half.train.labels.bincount(minlength=10)
    assert all(abs(int(h) - int(f) / 2) <= 1 for h, f in zip(half_counts, full_counts))
    assert abs(len(half.train) - 719) <= 5
    assert torch.equal(half.test.images, digits.test.images)  # test is never subset
    tiny = load_splits(DataConfig(val_fraction=0.0, train_fraction=0.001))
    assert tiny.train.labels.bincount(minlength=10).tolist() == [1] * 10
    assert torch.equal(load_splits(DataConfig(train_fraction=0.5, val_fraction=0.0)).train.images, half.train.images)
    # Validation comes out of the fraction, so a run on it validates on images it never trains on.
    with_val = load_splits(DataConfig(train_fraction=0.5))
    assert len(with_val.train) + len(with_val.val) == len(half.train)


def test_train_subset_keeps_every_class() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2, 2, 2, 2, 2])
    idx = train_subset(labels, 0.1, seed=3)
    assert sorted(set(labels[idx].tolist())) == [0, 1, 2]
    assert len(set(idx.tolist())) == len(idx)


def test_registry_errors(tmp_path: Path) -> None:
    assert tuple(SOURCES) == ("digits", "mnist", "fashion-mnist", "cifar10", "folder", "wds")
    with pytest.raises(GanrayError, match="unknown data.source 'mnsit'; use one of digits, mnist, fashion-mnist"):
        load_splits(DataConfig(val_fraction=0.0, source="mnsit"))
    with pytest.raises(GanrayError, match="data.path is required for data.source=wds"):
        load_splits(DataConfig(val_fraction=0.0, source="wds"))
    with pytest.raises(GanrayError, match="does not exist"):
        load_splits(DataConfig(val_fraction=0.0, source="wds", path=str(tmp_path / "no-shards")))
    with pytest.raises(GanrayError, match="data.path is required for data.source=mnist"):
        load_splits(DataConfig(val_fraction=0.0, source="mnist"))
    with pytest.raises(GanrayError, match="data.path is required for data.source=folder"):
        load_splits(DataConfig(val_fraction=0.0, source="folder"))
    missing = tmp_path / "nope"
    with pytest.raises(GanrayError, match=f"'{missing}' does not exist"):
        load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(missing)))
    with pytest.raises(GanrayError, match="no CIFAR-10 batches"):
        load_splits(DataConfig(val_fraction=0.0, source="cifar10", path=str(tmp_path)))


def test_image_dataset_rejects_bad_labels() -> None:
    images = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(GanrayError, match="labels must lie in \\[0, 2\\)"):
        ImageDataset(images, torch.tensor([0, 1, 2]), ("a", "b"))
    with pytest.raises(GanrayError, match="labels must lie"):
        ImageDataset(images, torch.tensor([0, -1, 1]), ("a", "b"))
    with pytest.raises(GanrayError, match="2 labels for 3 images"):
        ImageDataset(images, torch.tensor([0, 1]), ("a", "b"))


def test_unit_range_round_trip() -> None:
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    u = to_unit(x)
    assert float(u.min()) == -1.0 and float(u.max()) == 1.0
    assert torch.equal(to_uint8(u), x)
