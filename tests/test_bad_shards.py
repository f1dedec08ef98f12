"""Malformed WebDataset shards and manifests read as a `wds` source: one-line errors naming the file."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from ganray.data.wds import load_shards
from ganray.errors import GanrayError
from ganray.generation.shard import Sample, shard_bytes


def _samples(n: int = 4, label=lambda i: i % 2, meta=lambda i: {"class_name": f"c{i % 2}"}) -> list[Sample]:
    rng = np.random.default_rng(0)
    return [Sample(f"000000_{i:06d}", rng.integers(0, 256, (1, 8, 8), dtype=np.uint8), label(i), meta(i)) for i in range(n)]


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _manifest(urls: list[str], class_names=("c0", "c1")) -> bytes:
    return json.dumps({"__kind__": "wids-shard-index-v1", "shardlist": [{"url": u} for u in urls],
                       "class_names": list(class_names)}).encode()


def test_a_good_shard_reads_back(tmp_path):
    (tmp_path / "shard-000000.tar").write_bytes(shard_bytes(_samples()))
    ds = load_shards(tmp_path)
    assert len(ds) == 4 and ds.class_names == ("c0", "c1") and ds.labels.tolist() == [0, 1, 0, 1]


GOOD = shard_bytes(_samples())
PNG = tarfile.open(fileobj=io.BytesIO(GOOD)).extractfile("000000_000000.png").read()


@pytest.mark.parametrize(
    "shard, message",
    [
        (GOOD[:700], "is not a readable tar"),  # truncated inside the first member
        (b"\x00garbage" * 100, "is not a readable tar"),
        (_tar({"a.png": PNG}), "lacks a .png or .cls member"),
        (_tar({"a.png": PNG, "a.cls": b"seven"}), "is corrupt (ValueError)"),
        (_tar({"a.png": PNG, "a.cls": b"\xff\xfe"}), "is corrupt (UnicodeDecodeError)"),
        (_tar({"a.png": b"not a png", "a.cls": b"1"}), "is corrupt (UnidentifiedImageError)"),
        (_tar({"a.png": PNG[: len(PNG) // 2], "a.cls": b"1"}), "is corrupt"),
        (_tar({"a.png": PNG, "a.cls": b"1", "a.json": b"{not json"}), "is corrupt (JSONDecodeError)"),
        (_tar({"a.png": PNG, "a.cls": b"-3"}), "negative class index -3"),
    ],
)
def test_malformed_shards_name_the_file(tmp_path, shard, message):
    (tmp_path / "shard-000000.tar").write_bytes(shard)
    with pytest.raises(GanrayError) as e:
        load_shards(tmp_path)
    assert message in str(e.value) and "shard-000000.tar" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "manifest, message",
    [
        (b"{truncated", "manifest.json' is corrupt"),
        (b"[1, 2]", "is not a ganray manifest"),
        (json.dumps({"shardlist": "shard-000000.tar"}).encode(), "is not a ganray manifest"),
        (_manifest(["../elsewhere/shard-000000.tar"]), "is not a ganray manifest"),
        (_manifest(["/etc/passwd.tar"]), "is not a ganray manifest"),
        (_manifest(["shard-000000.tar"], class_names=[1, 2]), "is not a ganray manifest"),
        (_manifest(["shard-000000.tar", "shard-000001.tar"]), "shard-000001.tar' listed in the manifest is missing"),
        (_manifest(["shard-000000.tar"], class_names=["only"]), "has class index 1 but the manifest names 1 classes"),
    ],
)
def test_malformed_manifests_are_refused(tmp_path, manifest, message):
    (tmp_path / "shard-000000.tar").write_bytes(GOOD)
    (tmp_path / "manifest.json").write_bytes(manifest)
    with pytest.raises(GanrayError, match="regenerate|rerun") as e:
        load_shards(tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_mixed_image_sizes_are_refused(tmp_path):
    (tmp_path / "shard-000000.tar").write_bytes(GOOD)
    rng = np.random.default_rng(1)
    big = [Sample("000001_000000", rng.integers(0, 256, (1, 12, 12), dtype=np.uint8), 0, {})]
    (tmp_path / "shard-000001.tar").write_bytes(shard_bytes(big))
    with pytest.raises(GanrayError, match="mix image shapes"):
        load_shards(tmp_path)
