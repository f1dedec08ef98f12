"""Cross-replica BatchNorm: two gloo workers compute exactly what one process does on the whole batch."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from ganray.training.sync_bn import CrossReplicaBatchNorm2d, cross_replica_batchnorm


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 5, 5, generator=g) * 2 + 1, torch.randn(8, 3, 5, 5, generator=g)


def _bn() -> nn.BatchNorm2d:
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(3, momentum=0.1)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -0.5, 0.5)
    return bn


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    x, w = _inputs()
    bn = cross_replica_batchnorm(_bn())
    xr = x[4 * rank : 4 * rank + 4].clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = bn(xr)
    (y * w[4 * rank : 4 * rank + 4]).sum().backward()
    torch.save({"y": y.detach(), "gx": xr.grad, "gw": bn.weight.grad, "gb": bn.bias.grad,
                "rm": bn.running_mean, "rv": bn.running_var}, f"{out}/{rank}.pt")
    dist.destroy_process_group()


def test_two_workers_match_one_process_on_the_whole_batch(tmp_path):
    port = 29500 + os.getpid() % 1000
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=2)
    x, w = _inputs()
    bn = _bn()
    xf = x.clone().requires_grad_(True)
    y = bn(xf)
    (y * w).sum().backward()
    parts = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1)]
    torch.testing.assert_close(torch.cat([p["y"] for p in parts]), y.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([p["gx"] for p in parts]), xf.grad, rtol=1e-4, atol=1e-5)
    # DDP sums (then averages) parameter gradients across workers: the sum is the whole batch's.
    torch.testing.assert_close(parts[0]["gw"] + parts[1]["gw"], bn.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts[0]["gb"] + parts[1]["gb"], bn.bias.grad, rtol=1e-4, atol=1e-5)
    for p in parts:
        torch.testing.assert_close(p["rm"], bn.running_mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(p["rv"], bn.running_var, rtol=1e-4, atol=1e-6)


def test_swap_keeps_parameters_and_plain_behaviour_outside_ddp():
    bn = _bn()
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    model = cross_replica_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), bn))
    assert type(model[1]) is CrossReplicaBatchNorm2d
    assert set(model[1].state_dict()) == set(before)
    x = _inputs()[0]
    torch.testing.assert_close(model[1](x), _bn()(x))  # no process group: ordinary BatchNorm
