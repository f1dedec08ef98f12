"""The storage layer against a real local directory and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from dataclasses import replace

import pytest

from ganray.config import StorageConfig, load_config
from ganray.errors import GanrayError
from ganray.storage import LocalStore, ObjectInfo, S3Store, Store, count_requests, get_client, open_store
from s3server import closed_port

BUCKET = "ganray-test"
MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, msg
    return msg


@pytest.fixture(scope="session")
def bucket(s3) -> str:
    return s3.create_bucket(BUCKET)


@pytest.fixture
def s3_store(aws_env, bucket) -> S3Store:
    store = open_store(f"s3://{BUCKET}/t-{uuid.uuid4().hex[:10]}/", StorageConfig(max_attempts=2))
    assert isinstance(store, S3Store)
    return store


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path) -> Store:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    return request.getfixturevalue("s3_store")


# -- round trips --------------------------------------------------------------------------


def test_round_trip(any_store: Store, tmp_path):
    store = any_store
    store.check_writable()
    assert store.list() == []
    a, b = b"alpha" * 1000, os.urandom(3000)
    info = store.write_bytes("manifest.json", a)
    assert info == ObjectInfo("manifest.json", 5000, sha(a))
    assert store.write_bytes("sub/dir/x", b, sha256=sha(b)).sha256 == sha(b)
    assert store.read_bytes("manifest.json") == a
    assert store.exists("sub/dir/x") and not store.exists("sub/dir")
    assert store.stat("sub/dir/x").size == 3000
    assert store.stat("nope") is None
    assert store.sha256("manifest.json") == sha(a)
    assert store.sha256("sub/dir/x") == sha(b)
    assert [(o.key, o.size) for o in store.list()] == [("manifest.json", 5000), ("sub/dir/x", 3000)]
    assert [o.key for o in store.list("sub/")] == ["sub/dir/x"]
    assert store.uri("sub/dir/x").endswith("/sub/dir/x")

    src = tmp_path / "src.bin"
    src.write_bytes(b)
    assert store.upload_file(src, "shard-000000.tar") == ObjectInfo("shard-000000.tar", 3000, sha(b))
    dst = tmp_path / "out" / "copy.bin"
    store.download_file("shard-000000.tar", dst)
    assert dst.read_bytes() == b
    assert sorted(os.listdir(dst.parent)) == ["copy.bin"]  # no temp file left behind

    store.write_bytes("manifest.json", b"v2")  # overwrite
    assert store.read_bytes("manifest.json") == b"v2"
    store.delete("manifest.json")
    store.delete("manifest.json")  # missing is fine
    assert store.stat("manifest.json") is None
    assert not store.exists("manifest.json")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("manifest.json")
    with pytest.raises(FileNotFoundError):
        store.download_file("manifest.json", tmp_path / "x")
    assert [o.key for o in store.list()] == ["shard-000000.tar", "sub/dir/x"]


def test_local_uri_and_file_scheme(tmp_path):
    store = open_store(f"file://{tmp_path}/d")
    assert isinstance(store, LocalStore)
    assert store.uri() == str(tmp_path / "d")
    assert store.uri("a/b") == str(tmp_path / "d" / "a" / "b")
    with pytest.raises(ValueError):
        store.write_bytes("../escape", b"x")
    with pytest.raises(ValueError):
        store.write_bytes("/abs", b"x")


def test_s3_records_sha256_and_stat_reads_it_from_a_head(s3_store: S3Store, s3):
    data = os.urandom(10_000)
    with count_requests(s3_store) as n:
        s3_store.write_bytes("shard-000001.tar", data)
    assert n.calls == {"PutObject": 1} and n.writes == 1 and n.puts == 1

    with count_requests(s3_store) as n:
        info = s3_store.stat("shard-000001.tar")
        assert s3_store.sha256("shard-000001.tar") == sha(data)
    assert info == ObjectInfo("shard-000001.tar", 10_000, sha(data))
    assert n.calls == {"HeadObject": 2} and n.writes == 0  # no GetObject: nothing was read

    head = s3.client().head_object(Bucket=BUCKET, Key=f"{s3_store.prefix}/shard-000001.tar", ChecksumMode="ENABLED")
    assert head["Metadata"] == {"sha256": sha(data)}
    assert bytes.fromhex(sha(data)) == base64.b64decode(head["ChecksumSHA256"])
    assert s3_store.uri("shard-000001.tar") == f"s3://{BUCKET}/{s3_store.prefix}/shard-000001.tar"


def test_s3_prefix_does_not_leak_into_sibling_prefixes(aws_env, bucket):
    base = f"s3://{BUCKET}/p-{uuid.uuid4().hex[:8]}"
    a, ab = open_store(f"{base}/a"), open_store(f"{base}/ab")
    a.write_bytes("x", b"1")
    ab.write_bytes("x", b"22")
    assert [(o.key, o.size) for o in a.list()] == [("x", 1)]
    assert [(o.key, o.size) for o in open_store(base).list()] == [("a/x", 1), ("ab/x", 2)]


def test_endpoint_from_config_instead_of_env(aws_env, bucket, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    cfg = load_config(None, [f"storage.endpoint_url={aws_env.endpoint}", "storage.region=us-east-1"])
    store = open_store(f"s3://{BUCKET}/cfg-{uuid.uuid4().hex[:8]}", cfg.storage)
    store.check_writable()
    store.write_bytes("k", b"hello")
    assert store.read_bytes("k") == b"hello"
    assert store.client.meta.endpoint_url == aws_env.endpoint


def test_endpoint_url_must_be_http():
    with pytest.raises(GanrayError, match="storage.endpoint_url.*http"):
        load_config(None, ["storage.endpoint_url=localhost:8333"])


def test_multipart_upload_round_trips_with_its_sha(s3_store: S3Store, tmp_path):
    store = replace(s3_store, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    data = os.urandom(11 * MiB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with count_requests(store) as n:
        info = store.upload_file(src, "big.tar")
    assert n.calls["CreateMultipartUpload"] == 1 and n.calls["UploadPart"] == 3
    assert n.calls["CompleteMultipartUpload"] == 1 and n.calls["PutObject"] == 0 and n.writes == 1
    assert info == ObjectInfo("big.tar", 11 * MiB, sha(data))
    assert store.stat("big.tar") == info
    assert store.read_bytes("big.tar") == data
    out = tmp_path / "back.bin"
    store.download_file("big.tar", out)
    assert sha(out.read_bytes()) == sha(data)
    assert store.write_bytes("big2.tar", data[: 6 * MiB]).sha256 == sha(data[: 6 * MiB])
    assert store.stat("big2.tar").sha256 == sha(data[: 6 * MiB])


# -- atomic visibility ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["write_bytes", "upload_file"])
def test_local_failed_write_leaves_old_or_nothing(tmp_path, monkeypatch, how):
    store = open_store(str(tmp_path / "store"))
    store.write_bytes("old.bin", b"old")
    src = tmp_path / "src.bin"
    src.write_bytes(b"new" * 1000)

    def disk_full(fd):  # the injected fault: the data never becomes durable
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    for key in ("old.bin", "new.bin"):
        with pytest.raises(GanrayError, match=f"no space left on {tmp_path / 'store'}; free some space"):
            if how == "write_bytes":
                store.write_bytes(key, b"new" * 1000)
            else:
                store.upload_file(src, key)
    monkeypatch.undo()
    assert store.read_bytes("old.bin") == b"old"
    assert not store.exists("new.bin")
    assert sorted(os.listdir(tmp_path / "store")) == ["old.bin"]


def test_a_writer_killed_mid_write_leaves_a_temporary_that_remove_orphans_clears(tmp_path, s3_store: S3Store):
    import subprocess
    import sys

    store = open_store(str(tmp_path / "store"))
    store.write_bytes("done.bin", b"done")
    # A real SIGKILL between the temp file's bytes and its rename, as when Ray kills a shard actor.
    code = (
        "import os, signal; from pathlib import Path; from ganray.storage.local import atomic_write; "
        f"atomic_write(Path({str(tmp_path / 'store' / 'shard.tar')!r}), lambda f: (f.write(b'half'), f.flush(), "
        "os.kill(os.getpid(), signal.SIGKILL)))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    left = sorted(os.listdir(tmp_path / "store"))
    assert len(left) == 2 and left[0].startswith(".shard.tar.ganray-tmp-") and left[1] == "done.bin"
    assert [o.key for o in store.list()] == ["done.bin"]  # readers never see it
    assert store.remove_orphans() == 1 and sorted(os.listdir(tmp_path / "store")) == ["done.bin"]
    assert store.remove_orphans() == 0 and store.read_bytes("done.bin") == b"done"
    assert s3_store.remove_orphans() == 0  # a PUT is atomic: nothing partial to remove


def test_checksum_mismatch_is_refused_and_leaves_nothing(any_store: Store, tmp_path):
    """A recorded sha256 that does not match the bytes never lands (S3: the server checks it)."""
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    with pytest.raises(GanrayError, match="sha256|SHA-256") as e:
        any_store.upload_file(src, "x.bin", sha256=sha(b"something else"))
    one_line(e)
    with pytest.raises(GanrayError, match="sha256"):
        any_store.write_bytes("y.bin", b"payload", sha256=sha(b"something else"))
    assert any_store.list() == []


def _uploads(s3, store: S3Store) -> list[dict]:
    resp = s3.client().list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix + "/")
    return resp.get("Uploads", [])


def test_s3_multipart_failing_midway_is_aborted_and_invisible(s3_store: S3Store, s3, tmp_path):
    store = replace(s3_store, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    store.write_bytes("shard.tar", b"old version")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(11 * MiB))

    def fault(**_):  # the injected fault: the connection dies after a part was uploaded
        raise ConnectionResetError("injected: connection lost mid-upload")

    events = store.client.meta.events
    events.register("after-call.s3.UploadPart", fault)
    try:
        with pytest.raises(ConnectionResetError):
            store.upload_file(src, "shard.tar")
        with pytest.raises(ConnectionResetError):
            store.upload_file(src, "fresh.tar")
    finally:
        events.unregister("after-call.s3.UploadPart", fault)
    assert store.read_bytes("shard.tar") == b"old version"
    assert store.stat("fresh.tar") is None
    assert [o.key for o in store.list()] == ["shard.tar"]
    assert _uploads(s3, store) == []  # the transfer manager aborted its multipart uploads


CHILD = textwrap.dedent(
    """
    import os, pickle, signal, sys
    store = pickle.loads(bytes.fromhex(sys.argv[1]))
    if sys.argv[2] == "kill":
        def die(**_):
            os.kill(os.getpid(), signal.SIGKILL)
        store.client.meta.events.register("after-call.s3.UploadPart", die)
        store.upload_file(sys.argv[3], "killed.tar")
    else:
        assert store.read_bytes("from-parent") == b"parent"
        print(store.write_bytes("from-child", b"child").sha256)
    """
)


def _child(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, pickle.dumps(store).hex(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def test_s3_killed_upload_leaves_nothing_visible(s3_store: S3Store, s3, tmp_path):
    store = replace(s3_store, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(11 * MiB))
    proc = _child(store, "kill", str(src))
    assert proc.returncode == -9, proc.stderr
    assert store.stat("killed.tar") is None
    assert store.list() == []
    # What a kill leaves: an incomplete upload, invisible under the key (a lifecycle rule clears these).
    left = _uploads(s3, store)
    assert [u["Key"] for u in left] == [f"{store.prefix}/killed.tar"]
    for u in left:
        s3.client().abort_multipart_upload(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])


def test_stores_pickle_and_work_in_another_process(any_store: Store):
    any_store.write_bytes("from-parent", b"parent")
    blob = pickle.dumps(any_store)
    assert len(blob) < 1000  # settings only, no client
    assert pickle.loads(blob) == any_store
    proc = _child(any_store, "roundtrip")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == sha(b"child")
    assert any_store.read_bytes("from-child") == b"child"


def test_one_client_per_process(s3_store: S3Store):
    assert s3_store.client is open_store(f"s3://{BUCKET}/other", StorageConfig(max_attempts=2)).client
    assert s3_store.client is get_client(None, None, 2)
    assert "client" not in vars(s3_store)


# -- one-line errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, match",
    [
        ("s3://", "no bucket name"),
        ("s3:///runs", "no bucket name"),
        ("s3://ab/runs", "not a valid bucket name"),
        ("s3://My_Bucket/runs", "not a valid bucket name"),
        ("s3://bucket/a/../b", "'..' are not allowed"),
        ("gs://bucket/runs", "unsupported storage URI"),
        ("", "empty storage path"),
    ],
)
def test_malformed_uri(uri, match):
    with pytest.raises(GanrayError, match=match) as e:
        open_store(uri, StorageConfig())
    one_line(e)


def test_unwritable_local_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = open_store(str(blocker / "runs"))
    with pytest.raises(GanrayError, match="cannot write to local directory .*a-file/runs.*writable path") as e:
        store.check_writable()
    one_line(e)


def test_missing_bucket(aws_env, bucket):
    store = open_store("s3://no-such-bucket-here/runs", StorageConfig(max_attempts=1))
    expected = "bucket 'no-such-bucket-here' does not exist; create it or fix the s3:// URI"
    with pytest.raises(GanrayError) as e:
        store.check_writable()
    assert one_line(e) == expected
    with pytest.raises(GanrayError) as e:
        store.write_bytes("x", b"x")
    assert one_line(e) == expected


def test_no_credentials(aws_env, bucket, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store(f"s3://{BUCKET}/runs", StorageConfig(max_attempts=1))
    with pytest.raises(GanrayError, match=r"^no AWS credentials found for s3://ganray-test/runs; set AWS_") as e:
        store.check_writable()
    one_line(e)


def test_wrong_secret(aws_env, bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = open_store(f"s3://{BUCKET}/runs", StorageConfig(max_attempts=1))
    with pytest.raises(GanrayError, match=r"access to s3://ganray-test/runs denied \(HTTP 403\); check") as e:
        store.check_writable()  # HEAD bucket: a bare 403
    one_line(e)
    with pytest.raises(GanrayError, match="secret key does not match the access key; fix AWS_SECRET") as e:
        store.write_bytes("x", b"x")  # PUT: the server names the signature mismatch
    one_line(e)


def test_unknown_access_key(aws_env, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobodyknowsme")
    store = open_store(f"s3://{BUCKET}/runs", StorageConfig(max_attempts=1))
    with pytest.raises(GanrayError, match="does not know the access key used for s3://ganray-test/runs/x") as e:
        store.write_bytes("x", b"x")
    one_line(e)


def test_unreachable_endpoint(aws_env, bucket, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    url = f"http://127.0.0.1:{closed_port()}"
    store = open_store(f"s3://{BUCKET}/runs", StorageConfig(endpoint_url=url, max_attempts=1))
    with pytest.raises(GanrayError, match=f"cannot reach the S3 endpoint {url} .*check storage.endpoint_url") as e:
        store.check_writable()
    one_line(e)


def test_secret_never_in_messages_or_logs(aws_env, bucket, monkeypatch, caplog, tmp_path):
    secret = aws_env.secret_key
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="botocore")  # ganray's logging setup quiets it to WARNING
    messages = []
    store = open_store(f"s3://{BUCKET}/leak-{uuid.uuid4().hex[:6]}", StorageConfig(max_attempts=1))
    store.write_bytes("ok", b"ok")
    store.stat("ok")
    for env, uri in [
        ({}, "s3://no-such-bucket-here/x"),
        ({"AWS_SECRET_ACCESS_KEY": secret + "x"}, f"s3://{BUCKET}/x"),
        ({"AWS_ACCESS_KEY_ID": "nobodyknowsme"}, f"s3://{BUCKET}/x"),
        ({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}"}, f"s3://{BUCKET}/x"),
    ]:
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            s = open_store(uri, StorageConfig(max_attempts=1))
            for op in (s.check_writable, lambda: s.write_bytes("k", b"v")):
                with pytest.raises(GanrayError) as e:
                    op()
                messages.append(str(e.value))
    assert len(messages) == 8
    assert caplog.records, "botocore debug logging was captured"
    for text in [*messages, caplog.text]:
        assert secret not in text
