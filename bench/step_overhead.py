"""ganray's training step against a minimal GAN step of the same networks: what the host pays.

At a tiny width and batch (width 1/16, batch 8 by default) the convolutions cost next to nothing
and a step's time is the host's: Python, dispatch, optimizer loops, syncs. Side by side in one
process, alternated over repeats:

    ganray    `train_gan` with the shipped options (EMA, DiffAugment, spectral norm, conditional
              BatchNorm, loss averages and a metrics line every `train.log_every` steps; no
              checkpoints or sample grids), timed between its metrics lines, without the first
              interval (warm-up) and the last (the final step's sample grid)
    minimal   a hand-written D step + G step (one D forward over real and fake, hinge loss, Adam)
              of the same G and D, no EMA, no augmentation, no logging

It prints microseconds per step, ganray's overhead in microseconds, and the rate ratio
ganray / minimal (target >= 0.8). `--profile` adds torch.profiler's table of where ganray's
host time goes. Usage:

    .venv/bin/python bench/step_overhead.py [--steps 400] [--repeats 3] [--profile] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from ganray.config import Config, load_config  # noqa: E402
from ganray.data import ImageDataset, load_splits  # noqa: E402
from ganray.data.base import to_unit  # noqa: E402
from ganray.log import setup_logging  # noqa: E402
from ganray.training.loop import NullHooks, train_gan  # noqa: E402
from ganray.training.losses import hinge_d, hinge_g  # noqa: E402
from ganray.training.state import build_state  # noqa: E402
from results import Check, record  # noqa: E402

TARGET = 0.8


class _Clock(NullHooks):
    """Timestamps of the loop's metrics lines."""

    def __init__(self) -> None:
        self.times: list[tuple[int, float]] = []

    def log(self, step: int, metrics: dict) -> None:
        self.times.append((step, time.perf_counter()))


def ganray_step_s(cfg: Config, data: ImageDataset) -> float:
    """Seconds per step of `train_gan`, from its first metrics line to its last but one (the last
    comes after the final step's sample grid and BatchNorm recalibration, which are not steps)."""
    clock = _Clock()
    train_gan(cfg, data, clock)
    (s0, t0), (s1, t1) = clock.times[0], clock.times[-2]
    return (t1 - t0) / (s1 - s0)


def minimal_step_s(cfg: Config, data: ImageDataset, steps: int, warmup: int) -> float:
    """Seconds per step of the least a conditional GAN step can do with the same networks."""
    st = build_state(cfg, data.shape, data.num_classes, torch.device("cpu"))
    G, D, opt_g, opt_d = st.G, st.D, st.opt_g, st.opt_d
    bs, gen = cfg.train.batch_size, torch.Generator().manual_seed(0)
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            t0 = time.perf_counter()
        idx = torch.randint(len(data.images), (bs,), generator=gen)
        real, y = to_unit(data.images[idx]), data.labels[idx]
        fake = G(torch.randn(bs, cfg.model.z_dim), y)
        logits = D(torch.cat([real, fake.detach()]), torch.cat([y, y]))
        loss_d = hinge_d(logits[:bs], logits[bs:])
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        D.requires_grad_(False)
        loss_g = hinge_g(D(fake, y))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
    return (time.perf_counter() - t0) / steps


def profile(cfg: Config, data: ImageDataset, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        train_gan(cfg, data, NullHooks())
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400, help="timed steps per run (plus one log interval of warm-up)")
    p.add_argument("--repeats", type=int, default=3, help="alternate the two steps this many times; medians reported")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's top host ops of ganray's step")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    setup_logging("WARNING")
    torch.set_num_threads(args.threads)
    base = ["model.width=0.0625", "train.batch_size=8", "eval.every=0", *args.overrides]
    probe = load_config(None, base)
    every = probe.train.log_every
    total = every * (2 + -(-args.steps // every))  # an interval of warm-up, >= --steps timed, the final one
    cfg = load_config(None, [*base, f"train.steps={total}", f"train.sample_every={10 * total}",
                             f"train.checkpoint_every={10 * total}"])
    data = load_splits(cfg.data).train
    times: dict[str, list[float]] = {"ganray": [], "minimal": []}
    for _ in range(args.repeats):
        times["ganray"].append(ganray_step_s(cfg, data))
        times["minimal"].append(minimal_step_s(cfg, data, total - 2 * every, every))
    g, m = statistics.median(times["ganray"]), statistics.median(times["minimal"])
    ratio = m / g
    print(f"width {cfg.model.width}, batch {cfg.train.batch_size}, {args.threads} thread(s), {total - 2 * every} timed steps x {args.repeats}")
    print(f"  minimal step  {1e6 * m:9.0f} us   ganray step  {1e6 * g:9.0f} us   overhead  {1e6 * (g - m):7.0f} us/step")
    print(f"  rate ganray / minimal  {ratio:.3f}  (target >= {TARGET}: {'holds' if ratio >= TARGET else 'MISSED'})")
    if args.profile:
        print(profile(cfg, data, 25))
    row = {"width": cfg.model.width, "batch_size": cfg.train.batch_size, "threads": args.threads, "steps": total - 2 * every,
           "ganray_us": [1e6 * t for t in times["ganray"]], "minimal_us": [1e6 * t for t in times["minimal"]],
           "overhead_us": 1e6 * (g - m), "ratio": ratio}
    record("step_overhead", [row], [Check("ganray step / minimal step rate, tiny model", ratio, TARGET)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
