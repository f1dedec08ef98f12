"""torch.distributed's rendezvous for Ray Train workers, kept on loopback when the cluster is.

Ray Train's own set-up (`env://`) makes rank 0 host torch's TCPStore on every interface
(`*:PORT`), and gloo listens on the machine's external address, even when the whole Ray
cluster listens on 127.0.0.1 only. On such a cluster ganray sets up the process group itself:
rank 0 binds the store's socket to 127.0.0.1 and hands it to `TCPStore` (`master_listen_fd`),
and gloo/NCCL use the loopback interface. On a real multi-node cluster Ray's set-up is kept.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import ray
import torch.distributed as dist
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _TorchBackend

LOOPBACK = "127.0.0.1"


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _join(backend: str, world_rank: int, world_size: int, port: int, timeout_s: int) -> None:
    """One worker's part: rank 0 serves the store on 127.0.0.1:port, every rank joins the group."""
    os.environ.update(MASTER_ADDR=LOOPBACK, MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo", NCCL_SOCKET_IFNAME="lo")
    timeout = timedelta(seconds=timeout_s)
    if world_rank == 0:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
        store = dist.TCPStore(LOOPBACK, port, world_size, True, timeout, master_listen_fd=sock.detach())
    else:
        store = dist.TCPStore(LOOPBACK, port, world_size, False, timeout)
    dist.init_process_group(backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout)


class _LoopbackBackend(_TorchBackend):
    def on_start(self, worker_group, backend_config: "LoopbackTorchConfig") -> None:
        port = worker_group.execute_single(0, _free_loopback_port)
        worker_group.execute(_set_torch_distributed_env_vars)
        n = len(worker_group)
        ray.get([
            worker_group.execute_single_async(
                i, _join, backend=backend_config.backend, world_rank=i, world_size=n, port=port,
                timeout_s=backend_config.timeout_s,
            )
            for i in range(n)
        ])


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """TorchConfig whose process group listens on 127.0.0.1 only (a single-machine cluster)."""

    @property
    def backend_cls(self):
        return _LoopbackBackend


def torch_config(use_gpu: bool) -> TorchConfig:
    """Loopback rendezvous when this node's Ray address is loopback; Ray's own otherwise."""
    backend = "nccl" if use_gpu else "gloo"
    if ray.util.get_node_ip_address() == LOOPBACK:
        return LoopbackTorchConfig(backend=backend)
    return TorchConfig(backend=backend)
