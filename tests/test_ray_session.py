"""Joining Ray: a second ganray process joins the running loopback cluster; a dead address is one line, fast."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ganray.errors import GanrayError
from ganray.ray_session import join_ray

JOIN = """
import json, ray
from ganray.config import RayConfig
from ganray.ray_session import ensure_ray
ensure_ray(RayConfig())
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "ip": ray.util.get_node_ip_address(),
                  "cpus": ray.cluster_resources().get("CPU")}))
"""


def test_a_second_process_joins_the_running_loopback_cluster(ray_local):
    """What `ganray generate` does while `ganray train` runs: join, not hang on the external address.

    Started on its own, as from a second terminal: without RAY_AUTH_MODE, which Ray 2.59+ sets only
    in the environment of the process that started a local cluster (and its children), so the
    join has to find the cluster's token itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", JOIN], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["gcs"] == ray_local.get_runtime_context().gcs_address and got["gcs"].startswith("127.0.0.1:")
    assert got["ip"] == "127.0.0.1" and got["cpus"] == 2.0
    assert time.monotonic() - t0 < 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "localhost:{port}", "nohost", "127.0.0.1:notaport"])
def test_an_unreachable_or_malformed_address_is_one_line_at_once(address):
    t0 = time.monotonic()
    with pytest.raises(GanrayError) as err:
        join_ray(address.format(port=free_port()))
    assert time.monotonic() - t0 < 5
    msg = str(err.value)
    assert "\n" not in msg and ("no Ray cluster answers" in msg or "is not host:port" in msg), msg


def test_a_cluster_that_refuses_the_join_is_one_line(monkeypatch):
    # A refusal (a wrong or missing token) is a ConnectionError from ray.init after its retries;
    # injected here, since a real one costs two Ray clusters and ~20 s of Ray's retries.
    import ray

    def refuse(**_):
        raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:1")

    monkeypatch.setattr(ray, "init", refuse)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with pytest.raises(GanrayError) as err:
            join_ray(f"127.0.0.1:{server.getsockname()[1]}")
    msg = str(err.value)
    assert "\n" not in msg and "refused this process" in msg and "RAY_AUTH_TOKEN" in msg and "ray.address=local" in msg
