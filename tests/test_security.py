"""Security properties that hold across modules: loopback-only local Ray, safe loads, keys inside their prefix."""

from __future__ import annotations

import ast
import ipaddress
from pathlib import Path

import psutil
import pytest

from ganray.storage import LocalStore, S3Store

PACKAGE = Path(__file__).resolve().parents[1] / "ganray"


def listening(procs) -> list[tuple[str, str, int]]:
    """(process name, ip, port) of every listening TCP socket of these processes."""
    out = []
    for p in procs:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.append((p.name(), c.laddr.ip, c.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def test_the_local_ray_listens_on_loopback_only(ray_local):
    """GCS, raylet, workers, agents and dashboard: nothing reachable from another machine."""

    @ray_local.remote
    def ping() -> int:
        return 1

    assert ray_local.get(ping.remote()) == 1  # a worker process is up and serving
    sockets = listening(psutil.Process().children(recursive=True))
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names and len(sockets) >= 5, sockets
    assert [s for s in sockets if not is_loopback(s[1])] == []
    assert ray_local.util.get_node_ip_address() == "127.0.0.1"


def test_is_loopback_can_fail():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.2")


def test_every_torch_load_is_weights_only():
    """A source check: torch.load anywhere in ganray passes weights_only=True (a pickle can run code)."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                if isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                    kw = {k.arg: k.value for k in node.keywords}
                    ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                    calls.append((f"{path.name}:{node.lineno}", ok))
    assert len(calls) >= 3  # checkpoints, Inception weights, the real-feature cache
    assert [c for c, ok in calls if not ok] == []


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "..", ".", "a/", ""])
def test_keys_cannot_escape_the_prefix(tmp_path, key):
    local = LocalStore.from_path(tmp_path / "root")
    s3 = S3Store("bucket", "prefix")
    for op in (lambda: local.write_bytes(key, b"x"), lambda: local.read_bytes(key), lambda: s3.uri(key) if key else s3._obj(key)):
        with pytest.raises(ValueError):
            op()
    assert not any(tmp_path.rglob("x"))
