"""The README's main job: the pipeline stages run in order on one config, with a short summary."""

from __future__ import annotations

import time

from ganray.config import Config
from ganray.training.ray_train import train_with_ray
from ganray.training.run_dir import read_metrics


def run_demo(cfg: Config) -> str:
    """Train (Ray Train, DDP) and summarise; later stages join here as they are built."""
    start = time.perf_counter()
    out = train_with_ray(cfg)
    metrics = read_metrics(out.run_dir)
    last = metrics[-1] if metrics else {}
    samples = sorted((out.run_dir / "samples").glob("step_*.png"))
    lines = [
        "",
        f"ganray demo: {cfg.model.arch} on {cfg.data.source}, {cfg.ray.num_workers} Ray Train workers, "
        f"{last.get('step', 0)} steps in {time.perf_counter() - start:.0f} s"
        + (" (resumed)" if out.resumed else ""),
        f"  final losses      D {last.get('loss_d', float('nan')):.3f}   G {last.get('loss_g', float('nan')):.3f}"
        f"   throughput {last.get('img_per_s', 0):.0f} img/s",
        f"  run directory     {out.run_dir}",
        f"  latest checkpoint {out.checkpoint}",
        f"  sample grid       {samples[-1] if samples else '-'}   (one row per class)",
        f"  metrics           {out.run_dir / 'metrics.jsonl'}",
    ]
    return "\n".join(lines)
