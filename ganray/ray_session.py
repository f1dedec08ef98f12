"""Joining Ray: the configured or running cluster, else a new local one that listens on loopback only.

Ray 2.60 turns a requested node IP of 127.0.0.1 into the machine's external address, so its
GCS, raylet and worker gRPC servers would listen on every interface. Its own switch for
single-machine clusters (what it does on macOS and Windows) keeps every service on loopback;
`start_local_ray` sets it for this process and the processes Ray starts.
"""

from __future__ import annotations

import os
from typing import Any

from ganray.config import RayConfig

# Read by ray._private.ray_constants at import time, in every Ray process.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ensure_ray(rc: RayConfig) -> None:
    """Join `ray.address` / $RAY_ADDRESS / a running cluster; otherwise start a local one."""
    import ray

    if ray.is_initialized():
        return
    address = rc.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    try:
        ray.init(address="auto", log_to_driver=True)
    except ConnectionError:
        start_local_ray()


def loopback_only() -> None:
    """Make Ray started from this process bind 127.0.0.1 (call before `ray.init` starts a cluster)."""
    import ray._private.ray_constants as ray_constants

    os.environ[LOOPBACK_ENV] = "0"  # Ray's own processes read it when they start
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process has read it already


def start_local_ray(**kwargs: Any) -> None:
    """A single-machine Ray on loopback, dashboard included (Ray Train's controller queries its state API)."""
    import ray

    loopback_only()
    ray.init(**{"include_dashboard": True, "dashboard_host": "127.0.0.1", "log_to_driver": True, **kwargs})
