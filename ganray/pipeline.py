"""The README's main job: the whole pipeline on one config, then a short summary of where things are.

train (Ray Train DDP, evaluated as it goes) -> report (final evaluation, train-on-synthetic,
coverage, low-data study) -> generate (labelled WebDataset shards + manifest). Every stage is
the same code the CLI subcommands run, and each resumes or skips what is already done.
"""

from __future__ import annotations

import time

from ganray.config import Config
from ganray.errors import GanrayError
from ganray.generation.jobs import generate, with_out
from ganray.metrics.recipes import CHOSEN_ON
from ganray.reporting.report import build_report
from ganray.runs.export import load_generator
from ganray.training.ray_train import train_with_ray
from ganray.runs.run_dir import read_metrics


def run_demo(cfg: Config) -> str:
    start = time.perf_counter()
    trained = train_with_ray(cfg)
    run = trained.run
    t_train = time.perf_counter() - start
    if trained.generator is None:
        raise GanrayError(f"training left no checkpoint in {run.uri}, so there is no generator to sample; see its logs")
    built = build_report(cfg, run)
    report = built.report
    t_report = time.perf_counter() - start - t_train
    cfg = with_out(cfg, cfg.generate.out or run.join("shards"))  # default: next to the run
    shards = generate(cfg, load_generator(trained.generator, cfg.storage))
    t_generate = time.perf_counter() - start - t_train - t_report
    last = (read_metrics(run) or [{}])[-1]
    fid, cas, m = report["fidelity"], report["train_on_synthetic"], shards.manifest
    low = report["low_data"]
    lines = [
        "",
        f"ganray demo: {cfg.model.arch} on {cfg.data.source}, {cfg.ray.num_workers} Ray Train workers, "
        f"{last.get('step', 0)} steps" + (" (resumed)" if trained.resumed else "")
        + f"; {time.perf_counter() - start:.0f} s (train {t_train:.0f}, report {t_report:.0f}, generate {t_generate:.0f})",
        f"  sample quality ({fid['num_samples']} samples, {fid['extractor']} features; lower FID/KID is better)",
        *[f"    {k:<18} {v:.4g}" for k, v in sorted(fid["metrics"].items()) if not k.endswith("_std") and k != "eval_seconds"],
        f"  train on synthetic, test on real ({cas['n_synthetic']} synthetic vs {cas['n_real']} real images, "
        f"seeds {report['seeds']['classifier']}):",
        f"    real-data accuracy      {cas['real']['mean']:.4f}",
        f"    synthetic-data accuracy {cas['synthetic']['mean']:.4f}   ({cas['ratio']:.3f}x of real)",
        *[f"    {float(f):.0%} of the real data: recipe {g['recipe']['name']} "
          f"({CHOSEN_ON[g['chosen_on']]}) "
          f"{g['recipe_test']['mean']:.4f} vs {g['real_only']['mean']:.4f} real only"
          for f, g in low.items()],
        f"  verdict                 {report.get('verdict', 'no recipe for the run fraction')}",
        f"  reproduce the data      {report.get('generate_command', 'nothing to make: train on real only' if 'verdict' in report else '-')}",
        f"  per-class coverage      {report['coverage']['overall']:.3f}",
        f"  synthetic dataset       {len(m['shardlist'])} shards, {m['num_samples']} labelled samples in {shards.uri}",
        "",
        f"  run directory      {run.uri}   (config.yaml, metrics.jsonl, checkpoints/)",
        f"  sample grids       {run.join('samples')}   (one row per class)",
        f"  exported generator {trained.generator}",
        f"  report             {built.uri.rstrip('/')}/report.md   (+ report.json, figures)",
        f"  shards + manifest  {shards.uri.rstrip('/')}/manifest.json",
    ]
    return "\n".join(lines)
