"""A store rooted at an `s3://bucket/prefix`, through boto3 and the standard credential chain.

Atomicity comes from S3 itself: a single PUT or a completed multipart upload becomes
visible whole or not at all; a failed multipart upload is aborted by boto3's transfer
manager (a killed process leaves an incomplete upload that is invisible under the key and
that a bucket lifecycle rule, AbortIncompleteMultipartUpload, cleans up).

Integrity: every object carries its SHA-256 hex as user metadata (`x-amz-meta-sha256`), so
`stat` reports it from a HEAD request without reading the data. Uploads also ask the server
to verify: a single PUT sends the full-object `x-amz-checksum-sha256`, so the server rejects
the object unless its content hashes to the recorded value; a multipart upload sends a
SHA-256 per part (`ChecksumAlgorithm="SHA256"`, S3 allows no full-object SHA-256 for
multipart), so every part is verified in transit and the recorded value is the one hashed
locally. SeaweedFS, which the tests run against, verifies both (a wrong checksum is
rejected with BadDigest). Reads check the recorded SHA-256 of what they got.

Credentials are never passed, stored or logged here: boto3 finds them (env, profile, role).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ganray.config import StorageConfig
from ganray.errors import GanrayError
from ganray.fileio import sha256_file
from ganray.storage.base import ObjectInfo, check_key
from ganray.storage.local import atomic_write

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 64 << 20  # objects at least this large go up as multipart uploads
MULTIPART_CHUNKSIZE = 16 << 20  # part size (boto3 raises anything under 5 MiB to 5 MiB)
MAX_CONCURRENCY = 8  # parts in flight per upload/download
SHA256_META = "sha256"
CHUNK = 1 << 20

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MISSING_CODES = {"NoSuchKey", "NotFound", "404"}
_DENIED_CODES = {"AccessDenied", "Forbidden", "403", "AllAccessDisabled", "AccountProblem"}
_EXPIRED_CODES = {"ExpiredToken", "TokenRefreshRequired", "RequestExpired", "InvalidToken"}
_DIGEST_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}
_RERUN = "rerun the same command once the store is healthy (finished work is kept; raise storage.max_attempts to wait longer)"
# What boto3's standard retry mode retries; still failing after max_attempts means the store is down or overloaded.
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "ThrottlingException"}

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def is_s3(uri: str) -> bool:
    return uri.lower().startswith("s3://")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b/` -> ("bucket", "a/b"); a missing or invalid bucket is a GanrayError."""
    if not is_s3(uri):
        raise GanrayError(f"{uri!r} is not an S3 URI; write s3://bucket/prefix")
    rest = uri[5:]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise GanrayError(f"malformed S3 URI {uri!r}: no bucket name; write s3://bucket/prefix")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise GanrayError(
            f"malformed S3 URI {uri!r}: {bucket!r} is not a valid bucket name "
            "(3-63 lowercase letters, digits, '.' or '-'); fix the s3:// URI"
        )
    parts = [p for p in prefix.split("/") if p]
    if any(p in {".", ".."} for p in parts):
        raise GanrayError(f"malformed S3 URI {uri!r}: '.' and '..' are not allowed in the prefix; fix the s3:// URI")
    return bucket, "/".join(parts)


def _env_fingerprint() -> str:
    """Hash of the AWS_* environment, so a changed credential/endpoint env gets a new client."""
    items = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
    return hashlib.sha256(repr(items).encode()).hexdigest()


def get_client(endpoint_url: str | None, region: str | None, max_attempts: int) -> Any:
    """The process's S3 client for these settings, created on first use.

    Clients are thread-safe and expensive to build, so one is shared per process (and per
    AWS_* environment, which tests and Ray runtime envs change); stores hold only settings.
    """
    key = (endpoint_url, region, max_attempts, os.getpid(), _env_fingerprint())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _make_client(endpoint_url, region, max_attempts)
            _clients[key] = client
        return client


def _make_client(endpoint_url: str | None, region: str | None, max_attempts: int) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    custom = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = BotoConfig(
        retries={"mode": "standard", "total_max_attempts": max_attempts},  # max_attempts would count retries only
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=MAX_CONCURRENCY + 2,
        # S3-compatible servers (SeaweedFS, MinIO, Ceph) rarely serve virtual-host buckets.
        s3={"addressing_style": "path"} if custom else None,
    )
    # endpoint_url=None lets boto3 apply AWS_ENDPOINT_URL(_S3) and the profile's endpoint itself.
    return boto3.session.Session(region_name=region).client("s3", endpoint_url=endpoint_url, config=config)


def _b64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


@dataclass(frozen=True)
class S3Store:
    """Objects under `s3://bucket/prefix`; holds settings only, so it pickles to Ray actors."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    max_attempts: int = 5
    multipart_threshold: int = MULTIPART_THRESHOLD
    multipart_chunksize: int = MULTIPART_CHUNKSIZE

    @classmethod
    def from_uri(cls, uri: str, cfg: StorageConfig, **overrides: Any) -> "S3Store":
        bucket, prefix = parse_s3_uri(uri)
        settings: dict[str, Any] = {
            "endpoint_url": cfg.endpoint_url,
            "region": cfg.region,
            "max_attempts": cfg.max_attempts,
        }
        return cls(bucket, prefix, **{**settings, **overrides})

    @property
    def client(self) -> Any:
        return get_client(self.endpoint_url, self.region, self.max_attempts)

    def _obj(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, obj: str) -> str:
        return obj[len(self.prefix) + 1 :] if self.prefix else obj

    def uri(self, key: str = "") -> str:
        if not key:
            return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"s3://{self.bucket}/{self._obj(key)}"

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=MAX_CONCURRENCY,
            use_threads=True,
        )

    # -- errors ------------------------------------------------------------------------

    def _endpoint(self) -> str:
        try:
            return str(self.client.meta.endpoint_url)
        except Exception:  # noqa: BLE001 - only used to word a message
            return self.endpoint_url or "the default AWS endpoint"

    @contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Turn what a user can fix (credentials, bucket, endpoint) into one-line GanrayErrors."""
        from botocore.exceptions import (
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = self.uri(key) if key else self.uri()
        try:
            yield
        except (NoCredentialsError, PartialCredentialsError):
            raise GanrayError(
                f"no AWS credentials found for {where}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or give the machine an IAM role"
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError):
            raise GanrayError(
                f"cannot reach the S3 endpoint {self._endpoint()} for {where}; "
                "check storage.endpoint_url (or $AWS_ENDPOINT_URL) and that the server is up"
            ) from None
        except HTTPClientError as e:  # connections reset or timing out, after every retry
            raise GanrayError(
                f"the connection to the S3 endpoint {self._endpoint()} kept failing for {where} "
                f"({type(e).__name__}) after {self.max_attempts} attempts; {_RERUN}"
            ) from None
        except ClientError as e:
            err = self._translate(e, where)
            if err is None:
                raise
            raise err from None

    def _translate(self, e: Any, where: str) -> Exception | None:
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        op = getattr(e, "operation_name", "")
        if code == "NoSuchBucket" or (op == "HeadBucket" and (status == 404 or code in _MISSING_CODES)):
            return GanrayError(f"bucket '{self.bucket}' does not exist; create it or fix the s3:// URI")
        if code in _MISSING_CODES or status == 404:
            return FileNotFoundError(f"{where} does not exist")
        if code == "SignatureDoesNotMatch":
            return GanrayError(
                f"S3 rejected the request signature for {where}: the secret key does not match the access key; "
                "fix AWS_SECRET_ACCESS_KEY or the profile's credentials"
            )
        if code == "InvalidAccessKeyId":
            return GanrayError(
                f"S3 does not know the access key used for {where}; fix AWS_ACCESS_KEY_ID or the profile "
                "(or storage.endpoint_url if this is the wrong server)"
            )
        if code in _EXPIRED_CODES:
            return GanrayError(f"the AWS credentials used for {where} have expired; refresh them and rerun")
        if code in _DENIED_CODES or status == 403:
            return GanrayError(
                f"access to {where} denied (HTTP 403); check the access key and secret key "
                "and that they may read and write this bucket"
            )
        if code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            return GanrayError(
                f"S3 at {self._endpoint()} kept failing for {where} ({code or 'error'}, HTTP {status}) "
                f"after {self.max_attempts} attempts; {_RERUN}"
            )
        if code in _DIGEST_CODES:
            return GanrayError(
                f"S3 rejected {where}: the data did not match its SHA-256 checksum; "
                "the source changed while uploading or was corrupted in transit, write it again"
            )
        return None

    # -- reads -------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors(key):
                head = self.client.head_object(Bucket=self.bucket, Key=self._obj(key), ChecksumMode="ENABLED")
        except FileNotFoundError:
            return None
        sha = head.get("Metadata", {}).get(SHA256_META)
        full = head.get("ChecksumSHA256")
        if sha is None and full and "-" not in full and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            sha = base64.b64decode(full).hex()
        return ObjectInfo(check_key(key), int(head["ContentLength"]), sha)

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def read_bytes(self, key: str) -> bytes:
        with self._errors(key):
            resp = self.client.get_object(Bucket=self.bucket, Key=self._obj(key))
            data = resp["Body"].read()
        recorded = resp.get("Metadata", {}).get(SHA256_META)
        if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
            raise GanrayError(f"{self.uri(key)} does not match its recorded sha256; it is corrupt, write it again")
        return data

    def sha256(self, key: str) -> str:
        info = self.stat(key)
        if info is None:
            raise FileNotFoundError(f"{self.uri(key)} does not exist")
        if info.sha256 is not None:
            return info.sha256
        h = hashlib.sha256()
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._obj(key))["Body"]
            for chunk in iter(lambda: body.read(CHUNK), b""):
                h.update(chunk)
        return h.hexdigest()

    def download_file(self, key: str, local_path: str | Path) -> None:
        info = self.stat(key)
        if info is None:
            raise FileNotFoundError(f"{self.uri(key)} does not exist")

        def fetch(f: BinaryIO) -> None:
            with self._errors(key):
                self.client.download_fileobj(self.bucket, self._obj(key), f, Config=self._transfer_config())
            f.flush()
            if info.sha256 is not None and sha256_file(f.name) != info.sha256:
                raise GanrayError(f"download of {self.uri(key)} does not match its recorded sha256; download it again")

        atomic_write(Path(local_path), fetch)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        out = []
        with self._errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root + prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith("/"):
                        continue  # a directory marker (pyarrow writes them for Ray's checkpoints), not an object
                    out.append(ObjectInfo(self._rel(obj["Key"]), int(obj["Size"]), None))
        return sorted(out, key=lambda o: o.key)

    # -- writes ------------------------------------------------------------------------

    def _put(self, key: str, body: bytes | BinaryIO, size: int, digest: str) -> ObjectInfo:
        """One PUT whose full-object SHA-256 the server checks against the recorded one."""
        with self._errors(key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._obj(key),
                Body=body,
                Metadata={SHA256_META: digest},
                ChecksumSHA256=_b64(digest),
            )
        log.debug("put %s (%d bytes)", self.uri(key), size)
        return ObjectInfo(check_key(key), size, digest)

    def _multipart(self, key: str, fileobj: BinaryIO, size: int, digest: str) -> ObjectInfo:
        """A managed multipart upload, every part SHA-256-verified; aborted on failure."""
        with self._errors(key):
            self.client.upload_fileobj(
                fileobj,
                self.bucket,
                self._obj(key),
                ExtraArgs={"Metadata": {SHA256_META: digest}, "ChecksumAlgorithm": "SHA256"},
                Config=self._transfer_config(),
            )
        log.debug("uploaded %s (%d bytes, multipart)", self.uri(key), size)
        return ObjectInfo(check_key(key), size, digest)

    def write_bytes(self, key: str, data: bytes, sha256: str | None = None) -> ObjectInfo:
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and sha256 != digest:
            raise GanrayError(
                f"data for {self.uri(key)} has sha256 {digest[:12]}..., not the {sha256[:12]}... it was "
                "written with; the source changed while being written, write it again"
            )
        if len(data) < self.multipart_threshold:
            return self._put(key, data, len(data), digest)
        return self._multipart(key, io.BytesIO(data), len(data), digest)

    def upload_file(self, local_path: str | Path, key: str, sha256: str | None = None) -> ObjectInfo:
        size = os.path.getsize(local_path)
        digest = sha256 or sha256_file(local_path)
        with open(local_path, "rb") as f:
            if size < self.multipart_threshold:
                return self._put(key, f, size, digest)
            return self._multipart(key, f, size, digest)

    # -- conditional writes (leases) -----------------------------------------------------

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The object and its ETag, or None when absent: the version a conditional write names."""
        try:
            with self._errors(key):
                resp = self.client.get_object(Bucket=self.bucket, Key=self._obj(key))
                return resp["Body"].read(), str(resp["ETag"])
        except FileNotFoundError:
            return None

    def put_if(self, key: str, data: bytes, etag: str | None = None) -> str | None:
        """PUT only if `key` is absent (`etag` None) or still at version `etag`; the new ETag, or
        None when another writer got there first (S3's conditional writes: If-None-Match / If-Match)."""
        from botocore.exceptions import ClientError

        cond = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            with self._errors(key):
                return str(self.client.put_object(Bucket=self.bucket, Key=self._obj(key), Body=data, **cond)["ETag"])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            raise
        except FileNotFoundError:  # If-Match on an object deleted meanwhile
            return None

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._obj(key))

    def remove_orphans(self) -> int:
        """Nothing to do: a PUT is atomic, so a killed writer leaves no partial object. (An
        interrupted multipart upload leaves invisible parts; a bucket lifecycle rule aborts them.)"""
        return 0

    def check_writable(self) -> None:
        """HEAD the bucket, then PUT and DELETE a tiny probe object under the prefix."""
        from botocore.exceptions import ClientError

        with self._errors():
            self.client.head_bucket(Bucket=self.bucket)
        probe = f".ganray-write-probe-{uuid.uuid4().hex[:12]}"
        self._put(probe, b"", 0, hashlib.sha256(b"").hexdigest())
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._obj(probe))
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "?")
            log.warning("could not delete the write probe %s (%s); delete it by hand", self.uri(probe), code)


class RequestCounter:
    """S3 API calls by operation name ("PutObject", "UploadPart", ...), counted by a botocore hook.

    One count per API call (a `before-call` event), so botocore's own retries of a call are
    not counted again.
    """

    WRITE_OPS = ("PutObject", "CreateMultipartUpload", "CopyObject")

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _on_call(self, event_name: str = "", **_: Any) -> None:
        with self._lock:
            self.calls[event_name.rsplit(".", 1)[-1]] += 1

    @property
    def writes(self) -> int:
        """Objects this process started writing (a multipart upload counts once)."""
        return sum(self.calls[op] for op in self.WRITE_OPS)

    @property
    def puts(self) -> int:
        """Requests that write data: object PUTs, copies, and a multipart upload's create, parts and complete."""
        return sum(
            self.calls[op]
            for op in ("PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload", "CopyObject")
        )


@contextmanager
def count_requests(store: S3Store) -> Iterator[RequestCounter]:
    """Count the S3 calls this process makes for `store` inside the block (tests: "a rerun writes nothing").

    Calls made in other processes (Ray actors) use their own clients and are not counted.
    """
    client = store.client
    counter = RequestCounter()
    client.meta.events.register("before-call.s3", counter._on_call)
    try:
        yield counter
    finally:
        client.meta.events.unregister("before-call.s3", counter._on_call)


def arrow_filesystem(endpoint_url: str | None, region: str | None) -> Any:
    """A pyarrow S3 filesystem for libraries that take one (Ray Tune's storage), same endpoint rules.

    Credentials stay with the AWS SDK's default chain on every node; none are passed here.
    """
    import pyarrow.fs

    custom = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {"region": region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if custom:
        scheme, _, host = custom.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme, force_virtual_addressing=False)
    return pyarrow.fs.S3FileSystem(**kwargs)
