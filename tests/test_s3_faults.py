"""S3 faults injected for real by a proxy in front of the S3 server: retried, nothing lost or duplicated.

500 InternalError, 503 SlowDown, a connection reset before the store sees a request and one
after it applied it, at single PUTs, multipart parts and multipart completion; then a store
that stays down for longer than the retries.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from faultproxy import FaultProxy, is_complete_multipart, is_put_object
from ganray.errors import GanrayError
from ganray.storage import S3Store

MiB = 1 << 20


@pytest.fixture
def proxy(s3):
    p = FaultProxy(s3.endpoint)
    yield p
    p.stop()


def _stores(aws_env, proxy, prefix: str, **kw) -> tuple[S3Store, S3Store]:
    """(through the faulty proxy, straight to the server) for the same prefix."""
    bucket = aws_env.create_bucket("ganray-faults")
    return (S3Store(bucket, prefix, endpoint_url=proxy.endpoint, max_attempts=5, **kw),
            S3Store(bucket, prefix, endpoint_url=aws_env.endpoint))


def test_transient_put_faults_are_retried_and_nothing_is_lost_or_duplicated(aws_env, proxy, tmp_path):
    faulty, direct = _stores(aws_env, proxy, "puts")
    data = {f"obj-{i}": os.urandom(1000 + i) for i in range(4)}
    plan = {"obj-0": ("500", "reset"), "obj-1": ("503", "reset-after"), "obj-2": ("reset", "500"), "obj-3": ("reset-after", "503")}
    for key, faults in plan.items():
        proxy.fail(lambda m, p, q, key=key: is_put_object(m, p, q) and p.endswith(f"/{key}"), *faults)
    for key, blob in list(data.items())[:2]:
        faulty.write_bytes(key, blob)
    for key, blob in list(data.items())[2:]:  # file bodies are rewound for each retry too
        path = tmp_path / key
        path.write_bytes(blob)
        faulty.upload_file(path, key)
    assert proxy.injected() == [f for faults in plan.values() for f in faults]
    assert [o.key for o in direct.list()] == sorted(data)
    for key, blob in data.items():
        assert direct.read_bytes(key) == blob
        assert direct.stat(key).sha256 == hashlib.sha256(blob).hexdigest()


def _in_progress_uploads(store: S3Store) -> list:
    return store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix).get("Uploads", [])


@pytest.mark.parametrize("faults", [("500", "503"), ("reset",), ("reset-after",)])
def test_multipart_completion_faults_are_retried(aws_env, proxy, faults):
    faulty, direct = _stores(aws_env, proxy, f"mpu-{'-'.join(faults)}", multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    blob = os.urandom(11 * MiB)  # three parts
    proxy.fail(lambda m, p, q: m == "PUT" and "partNumber=" in q, "500", "reset")
    proxy.fail(is_complete_multipart, *faults)
    info = faulty.write_bytes("big.bin", blob)
    assert proxy.injected() == ["500", "reset", *faults]
    assert info.sha256 == hashlib.sha256(blob).hexdigest()
    assert direct.read_bytes("big.bin") == blob and direct.stat("big.bin").sha256 == info.sha256
    assert [o.key for o in direct.list()] == ["big.bin"] and _in_progress_uploads(direct) == []


def test_a_store_down_past_the_retries_is_one_clear_error(aws_env, proxy):
    faulty, direct = _stores(aws_env, proxy, "down")
    faulty = S3Store(faulty.bucket, faulty.prefix, endpoint_url=proxy.endpoint, max_attempts=2)
    proxy.down = True
    with pytest.raises(GanrayError) as e:
        faulty.write_bytes("x", b"payload")
    msg = str(e.value)
    assert "kept failing" in msg and "SlowDown" in msg and "after 2 attempts" in msg and "rerun the same command" in msg
    assert len(proxy.log) == 2 and direct.list() == []
