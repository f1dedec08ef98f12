"""Drawing images from a generator: fixed-noise grids for watching training, batches for use.

Generators with BatchNorm are sampled in eval mode after `recalibrate_batchnorm`: the running
statistics the live G accumulated belong to older weights than the EMA copy, and sampling in
train mode would make each image depend on the rest of its batch.
"""

from __future__ import annotations

import io
import math

import torch
import torch.nn as nn
from PIL import Image

from ganray.data.base import to_uint8


def label_grid(num_classes: int, per_class: int) -> torch.Tensor:
    """Labels for a grid with one row per class."""
    return torch.arange(num_classes).repeat_interleave(per_class)


def fixed_inputs(G: nn.Module, seed: int, per_class: int = 10, unconditional: int = 64) -> tuple[torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed + 7919)
    if G.num_classes:
        y = label_grid(G.num_classes, per_class)
        return torch.randn(len(y), G.z_dim, generator=gen), y
    return torch.randn(unconditional, G.z_dim, generator=gen), None


@torch.no_grad()
def recalibrate_batchnorm(G: nn.Module, batches: int = 8, batch_size: int = 256, seed: int = 0) -> None:
    """Recompute BatchNorm running statistics for G's current weights (exact averages)."""
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    device = next(G.parameters()).device
    saved = [(m.momentum, m.training) for m in bns]
    was_training = G.training
    gen = torch.Generator().manual_seed(seed + 104729)
    G.train()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    for _ in range(batches):
        z = torch.randn(batch_size, G.z_dim, generator=gen).to(device)
        y = torch.randint(0, G.num_classes, (batch_size,), generator=gen).to(device) if G.num_classes else None
        G(z, y)
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)
    G.train(was_training)


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, y: torch.Tensor | None, batch_size: int = 512) -> torch.Tensor:
    """uint8 images for the given inputs, in eval mode, in batches."""
    if len(z) == 0:  # an empty draw (all of a class picked as uncertain, say): no images, of the right shape
        return generate(G, torch.zeros(1, z.shape[1]), None if y is None else torch.zeros(1, dtype=torch.long))[:0]
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    out = []
    for i in range(0, len(z), batch_size):
        yi = y[i : i + batch_size].to(device) if y is not None else None
        out.append(to_uint8(G(z[i : i + batch_size].to(device), yi)).cpu())
    G.train(was_training)
    return torch.cat(out)


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """`n` labels cycling through the classes: every class gets n // k or n // k + 1."""
    return torch.arange(n) % num_classes


def sample_balanced(G: nn.Module, n: int, seed: int, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`n` uint8 images (class-balanced when G is conditional) and their labels, from `seed` only."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    y = balanced_labels(n, G.num_classes) if G.num_classes else None
    return generate(G, z, y, batch_size), y


def grid_png(images: torch.Tensor, ncol: int, pad: int = 2) -> bytes:
    """Tile uint8 NxCxHxW images into one PNG."""
    n, c, h, w = images.shape
    nrow = math.ceil(n / ncol)
    canvas = torch.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        canvas[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = images[i]
    arr = canvas.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
