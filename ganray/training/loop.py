"""The GAN training loop: plain PyTorch, readable top to bottom, runs with or without Ray.

Distributed: when torch.distributed is initialized, G and D are wrapped in DDP and each rank
takes its slice of the global batch. Every random draw at step s comes from seeds derived from
(seed, s, rank) and the batch from (seed, s), so a run resumed from a checkpoint at step s
continues exactly as the uninterrupted run would have: the checkpoint's step *is* the RNG state.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from ganray.config import Config, LossConfig
from ganray.data.base import ImageDataset, to_unit
from ganray.errors import GanrayError
from ganray.training.diffaugment import LOW_DATA_POLICY, diff_augment, policy_for
from ganray.training.losses import LOSSES
from ganray.models import class_weight
from ganray.models.sampling import fixed_inputs, generate, grid_png, recalibrate_batchnorm
from ganray.training.sync_bn import cross_replica_batchnorm
from ganray.training.state import GANState, build_state, update_ema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Worker:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class Hooks(Protocol):
    """Where the loop's outputs go. Called on every rank; implementations write on rank 0 only."""

    def log(self, step: int, metrics: dict) -> None: ...

    def samples(self, step: int, png: bytes) -> None: ...

    def checkpoint(self, step: int, state: GANState, metrics: dict) -> None: ...

    def close(self) -> None:
        """After the last step, or after an error: release writers (the loop's host calls it)."""


class NullHooks:
    """Hooks that keep nothing: for callers that only want the trained state (benchmarks, experiments)."""

    def log(self, step: int, metrics: dict) -> None: ...

    def samples(self, step: int, png: bytes) -> None: ...

    def checkpoint(self, step: int, state: GANState, metrics: dict) -> None: ...

    def close(self) -> None: ...


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


def seed_device(device: torch.device, seed: int) -> None:
    """Seed the generator this step draws from (z, DiffAugment): the same numbers `torch.manual_seed`
    gives, without its visit to every device backend (~0.1 ms of host time per step)."""
    if device.type == "cuda":
        torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()].manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def batch_indices(n: int, global_batch: int, step: int, seed: int, rank: int, world: int) -> torch.Tensor:
    """This rank's slice of the global batch for `step`: epochs of shuffled, disjoint batches."""
    per_epoch = max(1, n // global_batch)
    epoch, offset = divmod(step, per_epoch)
    reps = math.ceil(global_batch / n)
    perm = _epoch_order(n, seed, epoch, reps)
    batch = perm[offset * global_batch : (offset + 1) * global_batch] if reps == 1 else perm[:global_batch]
    local = global_batch // world
    return batch[rank * local : (rank + 1) * local]


@functools.lru_cache(maxsize=2)
def _epoch_order(n: int, seed: int, epoch: int, reps: int) -> torch.Tensor:
    """The epoch's shuffled order, drawn once per epoch, not per step (a randperm of n each step
    costs the host ~0.5 ms on a 60,000-image set)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])


def _module(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, DDP) else m


class _Averages:
    """Running sums of the logged losses, kept as tensors so no step waits on a .item()."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.sums, self.count = device, {}, 0

    def add(self, **values: torch.Tensor) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0) + v.detach().float()
        self.count += 1

    def pop(self, world: int) -> dict[str, float]:
        keys = sorted(self.sums)
        vec = torch.stack([self.sums[k] for k in keys]).to(self.device) / max(self.count, 1)
        if world > 1:
            dist.all_reduce(vec)
            vec /= world
        self.sums, self.count = {}, 0
        return {k: float(v) for k, v in zip(keys, vec.cpu())}


def _resume(state: GANState, resume: dict, cfg: Config) -> None:
    t = cfg.train
    try:
        state.load_state_dict(resume)
    except (RuntimeError, KeyError, ValueError) as e:
        raise GanrayError(
            f"checkpoint does not fit model {cfg.model.arch!r} (width {cfg.model.width}): "
            f"{str(e).splitlines()[0][:160]}; use the run's own config or a new storage.run_name"
        ) from None
    # The config, not the checkpoint, sets optimizer hyperparameters: users resume to change them.
    for opt, lr in ((state.opt_g, t.lr_g), (state.opt_d, t.lr_d)):
        for group in opt.param_groups:
            group.update(lr=lr, betas=(t.beta1, t.beta2), eps=t.adam_eps)
    log.info("resuming at step %d of %d", state.step, t.steps)


def _distributed(state: GANState, cfg: Config, worker: Worker) -> tuple[nn.Module, nn.Module]:
    """G and D as the step uses them: DDP-wrapped when torch.distributed runs, else the plain modules."""
    if not (worker.world > 1 and dist.is_initialized()):
        return state.G, state.D
    if cfg.train.sync_batchnorm:  # so N workers train the generator one worker would
        cross_replica_batchnorm(state.G)
    ids = [worker.device.index] if worker.device.type == "cuda" else None
    # D runs once per step on the concatenated real+fake batch; its buffers are its own.
    return DDP(state.G, device_ids=ids), DDP(state.D, device_ids=ids, forward_sync_buffers=False)


def mode_seeking_weight(loss: LossConfig, step: int) -> float:
    """loss.mode_seeking, ramped linearly over the first loss.mode_seeking_warmup steps: early on G's
    images are alike, so the regularizer would pull toward variety before G has the classes."""
    if not loss.mode_seeking_warmup:
        return loss.mode_seeking
    return loss.mode_seeking * min(1.0, step / loss.mode_seeking_warmup)


def gan_step(
    cfg: Config, state: GANState, G: nn.Module, D: nn.Module, real: torch.Tensor, y: torch.Tensor | None,
    z: torch.Tensor, amp: bool,
) -> dict[str, torch.Tensor]:
    """One D update and one G update on this rank's batch; returns the values to log (tensors, no sync)."""
    d_loss_fn, g_loss_fn = LOSSES[cfg.loss.kind]
    # train_gan resolves loss.diffaugment for its data; a caller of one step (tests, benchmarks) gets the low-data policy
    policy = LOW_DATA_POLICY if cfg.loss.diffaugment is None else cfg.loss.diffaugment
    cls_weight, n = class_weight(cfg.model, cfg.loss), len(real)
    device_type = real.device.type
    reg = state.regularizer
    p_aug = reg.p.clone() if reg is not None and reg.adaptive else None
    out: dict[str, torch.Tensor] = {}
    half = n // 2
    mode_seeking = mode_seeking_weight(cfg.loss, state.step) if half else 0.0  # one image has no pair to compare
    # Mode seeking pairs the two halves of the fake batch: same labels, different noise.
    y_fake = torch.cat([y[:half], y[:half], y[2 * half:]]) if mode_seeking and y is not None else y
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        fake = G(z, y_fake)
        # D step: one forward over real and fake together.
        both = diff_augment(torch.cat([real, fake.detach()]), policy, p_aug)
        if cls_weight:  # D's classifier head learns the real images' classes
            logits, classes = D(both, torch.cat([y, y_fake]), classes=True)
            logits, out["cls_d"] = logits.float(), F.cross_entropy(classes[:n].float(), y)
        else:
            logits = D(both, None if y is None else torch.cat([y, y_fake])).float()
        loss_d = d_loss_fn(logits[:n], logits[n:])
        if cls_weight:
            loss_d = loss_d + cls_weight * out["cls_d"]
        if reg is not None:
            loss_d = loss_d + reg.penalty(logits[:n], logits[n:])
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    state.opt_d.step()
    if reg is not None:
        reg.update(logits[:n].detach(), logits[n:].detach())

    # G step through the updated D; D's parameters are frozen, so its DDP hooks stay idle.
    d_plain = _module(D)
    d_plain.requires_grad_(False)
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        if cls_weight:  # G is pushed toward samples D's classifier reads as their label
            fake_logits, fake_classes = d_plain(diff_augment(fake, policy, p_aug), y_fake, classes=True)
            out["cls_g"] = F.cross_entropy(fake_classes.float(), y_fake)
            loss_g = g_loss_fn(fake_logits.float()) + cls_weight * out["cls_g"]
        else:
            loss_g = g_loss_fn(d_plain(diff_augment(fake, policy, p_aug), y_fake).float())
        if mode_seeking:  # MSGAN: two noises for one label should give two different images
            ratio = (fake[:half] - fake[half:2 * half]).abs().mean() / (z[:half] - z[half:2 * half]).abs().mean()
            out["ms_ratio"] = ratio.detach()
            loss_g = loss_g + mode_seeking / (ratio.float() + 1e-5)
    state.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.opt_g.step()
    d_plain.requires_grad_(True)
    if p_aug is not None:
        out["ada_p"] = reg.p
    return {"loss_d": loss_d, "loss_g": loss_g, "d_real": logits[:n].mean(), "d_fake": logits[n:].mean(), **out}


def with_augmentation(cfg: Config, data: ImageDataset, announce: bool = False) -> Config:
    """`cfg` with loss.diffaugment resolved for this training set (`policy_for`); logged when it was unset."""
    per_class = data.images_per_class
    policy = policy_for(cfg.loss.diffaugment, per_class, cfg.eval.recipe_prior_max_per_class)
    if announce and cfg.loss.diffaugment is None:
        log.info(
            "DiffAugment: %s (%.0f training images per class, %s eval.recipe_prior_max_per_class=%s; set loss.diffaugment to choose)",
            policy or "none", per_class, "at most" if policy else "above", cfg.eval.recipe_prior_max_per_class,
        )
    return cfg.model_copy(update={"loss": cfg.loss.model_copy(update={"diffaugment": policy})})


def train_gan(
    cfg: Config,
    data: ImageDataset,
    hooks: Hooks,
    worker: Worker = Worker(),
    resume: dict | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
) -> GANState:
    """Train until cfg.train.steps; `resume` is a state dict from a checkpoint.

    `evaluate` (rank 0 only) maps the recalibrated sampling generator to metrics; it runs every
    `eval.every` steps and at the end, and its results join that step's metrics line.
    """
    t = cfg.train
    device = worker.device
    cfg = with_augmentation(cfg, data, worker.rank == 0)
    if t.batch_size % worker.world:
        raise GanrayError(f"train.batch_size={t.batch_size} must be divisible by the {worker.world} workers")
    state = build_state(cfg, data.shape, data.num_classes, device, worker.world)
    if resume is not None:
        _resume(state, resume, cfg)
    if t.compile != "none":  # in place, so state dicts, EMA and DDP see the same modules
        for m in (state.G, state.D):
            m.compile(mode=t.compile)
    G, D = _distributed(state, cfg, worker)
    # uint8 in memory, converted per batch. On a GPU the whole set moves there once (a few MB to a
    # few hundred for these image sizes), so no step waits on a host-to-device copy.
    images, labels = (data.images.to(device), data.labels.to(device)) if device.type == "cuda" else (data.images, data.labels)
    conditional = _module(G).num_classes > 0
    amp = t.amp == "bf16" and device.type == "cuda"
    fixed_z, fixed_y = fixed_inputs(_module(G), t.seed)
    avg = _Averages(device)
    last_time, last_step = time.perf_counter(), state.step
    local_bs = t.batch_size // worker.world
    eval_every = cfg.eval.every

    while state.step < t.steps:
        s = state.step
        seed_device(device, step_seed(t.seed, s, worker.rank))
        idx = batch_indices(len(images), t.batch_size, s, t.seed, worker.rank, worker.world)
        idx = idx.to(images.device)
        real = to_unit(images[idx])
        if t.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        y = labels[idx] if conditional else None
        z = torch.randn(local_bs, cfg.model.z_dim, device=device)
        avg.add(**gan_step(cfg, state, G, D, real, y, z, amp))
        if state.G_ema is not None:
            update_ema(state.G_ema, _module(G), t.ema_decay, s)
        state.step = step = s + 1

        final = step == t.steps
        evaluating = evaluate is not None and worker.rank == 0 and eval_every > 0 and (step % eval_every == 0 or final)
        sampling = worker.rank == 0 and (step % t.sample_every == 0 or final)
        metrics: dict = {}
        if step % t.log_every == 0 or final or step % t.checkpoint_every == 0 or (eval_every and step % eval_every == 0):
            metrics = avg.pop(worker.world)
            now = time.perf_counter()
            metrics["img_per_s"] = (step - last_step) * t.batch_size / max(now - last_time, 1e-9)
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            if bad:
                raise GanrayError(
                    f"non-finite {bad[0]} at step {step}: training diverged; the last good checkpoint is kept, "
                    "lower train.lr_g/lr_d or enable loss.diffaugment"
                )
        if sampling or evaluating:
            sampler = state.sampler()
            recalibrate_batchnorm(sampler, seed=t.seed)
            if sampling:
                grid = generate(sampler, fixed_z, fixed_y)
                hooks.samples(step, grid_png(grid, ncol=10 if conditional else 8))
            if evaluating:
                metrics.update(evaluate(sampler))
        if metrics:
            hooks.log(step, metrics)
            # Sampling and evaluation time is not training throughput.
            last_time, last_step = time.perf_counter(), step
        if step % t.checkpoint_every == 0 or final:
            hooks.checkpoint(step, state, metrics)
    return state
