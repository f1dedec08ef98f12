"""Joining Ray: the configured or running cluster, else a new local one that listens on loopback only.

Ray 2.60 turns a requested node IP of 127.0.0.1 into the machine's external address, so its
GCS, raylet and worker gRPC servers would listen on every interface. Its own switch for
single-machine clusters (what it does on macOS and Windows) keeps every service on loopback;
`start_local_ray` sets it for this process and the processes Ray starts.

Joining a loopback cluster needs the same switch: without it, `ray.init(address="auto")`
rewrites 127.0.0.1 to the external address, where nothing listens, and retries forever. And
`ray.init` retries an unreachable address forever too, so a join first checks that the GCS
port answers (`JOIN_TIMEOUT_S`) and fails with one line if it does not.

Ray 2.59+ starts local clusters with token authentication (the token in ~/.ray/auth_token, the
mode in the starting process's environment only). A process started on its own, say `ganray
generate` in a second terminal while `ganray train` runs, has the token file but not the mode,
so it connected without the token, was refused for ~20 s and died with a traceback. A join now
turns token auth on when a token is available, and a refusal is one line.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from typing import Any

from ganray.config import RayConfig
from ganray.console import install_console
from ganray.errors import GanrayError

# Read by ray._private.ray_constants at import time, in every Ray process.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
JOIN_TIMEOUT_S = 10.0


def ensure_ray(rc: RayConfig) -> None:
    """Join `ray.address` / $RAY_ADDRESS / a running cluster; otherwise start a local one."""
    import ray
    from ray._private.services import get_ray_address_from_environment

    if ray.is_initialized():
        quiet_console()  # the verbosity of this command, which may differ from the last one's
        return
    address = rc.address or os.environ.get("RAY_ADDRESS")
    if not address:
        try:  # the newest cluster started on this machine, from Ray's temp dir
            address = get_ray_address_from_environment("auto", None)
        except ConnectionError:
            address = None
    if address and address != "local":
        join_ray(address)
    else:
        start_local_ray()


def join_ray(address: str) -> None:
    """Connect to the cluster at `address` (host:port or ray://...), in bounded time."""
    import ray

    if address.startswith("ray://"):
        ray.init(address=address, log_to_driver=True, logging_level=_ray_level())
        quiet_console()
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not host:
        raise GanrayError(f"Ray address {address!r} is not host:port; fix ray.address or $RAY_ADDRESS")
    try:
        socket.create_connection((host, int(port)), timeout=JOIN_TIMEOUT_S).close()
    except OSError as e:
        raise GanrayError(
            f"no Ray cluster answers at {address} ({e.strerror or e}); start it (ray start --head) "
            "or unset ray.address / $RAY_ADDRESS to let ganray start its own"
        ) from None
    if is_loopback(host):
        loopback_only()
    use_token_if_available()
    try:
        ray.init(address=f"{host}:{port}", log_to_driver=True, logging_level=_ray_level())
    except ConnectionError as e:
        raise GanrayError(
            f"the Ray cluster at {address} refused this process ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "if it uses token authentication, give its token (RAY_AUTH_TOKEN or ~/.ray/auth_token), "
            "or set ray.address=local to start a private local Ray"
        ) from None
    quiet_console()


def use_token_if_available() -> None:
    """Turn Ray's token authentication on for this process when a token is available and
    RAY_AUTH_MODE is unset: local clusters of Ray 2.59+ require it, and a token sent to a
    cluster without authentication is ignored."""
    from ray._private.authentication import authentication_token_setup as setup

    ray_log = logging.getLogger(setup.__name__)  # its "token authentication is enabled" warning: debug only
    level = ray_log.level
    if not _verbose():
        ray_log.setLevel(logging.ERROR)
    try:
        setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        ray_log.setLevel(level)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def keep_credentials_out_of_tune() -> None:
    """Stop Ray Tune from copying AWS_* credentials into each trial's runtime env.

    Ray's runtime-env agent writes every runtime env it creates to its log in plain text (mode
    644 under Ray's temp dir). Trials then get credentials the way train workers and shard
    writers do: from their node's environment, profile or instance role (a local cluster's
    nodes inherit the environment of the process that started them).
    """
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = {v for v in class_cache.ENV_VARS_TO_PROPAGATE if not v.startswith("AWS_")}


def loopback_only() -> None:
    """Make Ray started from this process bind 127.0.0.1 (call before `ray.init` starts a cluster)."""
    import ray._private.ray_constants as ray_constants

    os.environ[LOOPBACK_ENV] = "0"  # Ray's own processes read it when they start
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process has read it already


def start_local_ray(**kwargs: Any) -> None:
    """A single-machine Ray on loopback, dashboard included (Ray Train's controller queries its state API)."""
    import ray

    loopback_only()
    local_train_settings()
    defaults = {"include_dashboard": True, "dashboard_host": "127.0.0.1", "log_to_driver": True, "logging_level": _ray_level()}
    ray.init(**{**defaults, **kwargs})
    quiet_console()


# Ray Train's controller reads these from the driver's environment. On one machine there is no
# cloud node to be preempted, so its preemption watcher is one more actor process started for
# nothing on every run; and the controller's 2 s poll of the workers delays every run's end (and
# a dead worker's detection) by up to 2 s. Together they cost about 4 s of a 20 s short run.
LOCAL_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


def local_train_settings() -> None:
    """Ray Train settings for a single-machine Ray; a user's own values win."""
    for key, value in LOCAL_TRAIN_ENV.items():
        os.environ.setdefault(key, value)


def _verbose() -> bool:
    return logging.getLogger("ganray").getEffectiveLevel() <= logging.DEBUG


def _ray_level() -> int:
    """Ray's driver-side log level: its start-up INFO and token-auth WARNING only at debug."""
    return logging.INFO if _verbose() else logging.ERROR


def disconnect_ray() -> None:
    """Leave Ray if this process joined it, so no worker line forwarded late lands after the
    command's last line (Ray's log thread prints asynchronously). A no-op without Ray."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - best effort on the way out; the exit status says what happened
            pass


def quiet_console() -> None:
    """Workers' output on this console: ganray's lines only, or all of Ray's at --log-level debug."""
    install_console(verbose=_verbose())
