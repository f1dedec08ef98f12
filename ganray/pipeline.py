"""The README's main job: the pipeline stages run in order on one config, with a short summary."""

from __future__ import annotations

import time

from ganray.config import Config
from ganray.data import load_splits
from ganray.metrics.utility import tstr
from ganray.metrics.names import headline
from ganray.training.export import load_generator
from ganray.training.ray_train import train_with_ray
from ganray.training.run_dir import read_metrics


def run_demo(cfg: Config) -> str:
    """Train (Ray Train, DDP, evaluated as it goes), then ask whether the samples help a classifier."""
    start = time.perf_counter()
    out = train_with_ray(cfg)
    metrics = read_metrics(out.run_dir)
    last = metrics[-1] if metrics else {}
    scores = headline(last)
    splits = load_splits(cfg.data)
    G = load_generator(out.generator).G if out.generator is not None else None
    utility = None
    if G is not None and G.num_classes:
        utility = tstr(G, splits.train, splits.test, cfg.eval.report_samples, cfg.eval.report_seeds[:1], cfg.eval.classifier_steps)
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
        f"  exported generator {out.generator}",
    ]
    if scores:
        lines.append(f"  sample quality    ({cfg.eval.num_samples} samples, {cfg.eval.extractor} features; lower FID/KID is better)")
        lines.extend(f"    {k:<17} {v:.4g}" for k, v in sorted(scores.items()))
    if utility is not None:
        lines += [
            f"  train on synthetic, test on real ({utility['n_synthetic']} synthetic vs {utility['n_real']} real images, seed {cfg.eval.report_seeds[0]}):",
            f"    real-data accuracy      {utility['real']['mean']:.4f}",
            f"    synthetic-data accuracy {utility['synthetic']['mean']:.4f}   ({utility['ratio']:.3f}x of real)",
        ]
    lines.append(f"  full utility report: ganray report --config <same config>   (or --run {out.run_dir})")
    return "\n".join(lines)
