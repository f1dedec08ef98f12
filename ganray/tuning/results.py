"""A finished sweep's outputs: results table (md/csv/json), best config YAML, FID curves, best generator.

Everything is derived from Tune's ResultGrid (each trial's reported metrics and kept
checkpoints), so rerunning a restored sweep rewrites the same files from the same records.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ganray.config import Config, dump_config
from ganray.errors import GanrayError
from ganray.reporting.figures import fid_curves
from ganray.storage.local import atomic_write
from ganray.runs.export import GENERATOR_DIR, export_checkpoint
from ganray.tuning.space import apply_params
from ganray.tuning.trial import Objective, TIME_ATTR, objective


@dataclass
class TrialRow:
    trial: str
    status: str  # completed | stopped early | error
    score: float | None  # the best objective value the trial reported (tune.metric)
    score_step: int | None  # the step it was reported at
    steps: int  # last step the trial reached
    seconds: float  # the trial's wall time
    params: dict[str, Any]
    error: str | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class SweepResults:
    metric: str
    rows: list[TrialRow]  # best score first; errored and unscored trials last
    reference: dict[str, float]  # real held-out data scored like a trial
    best_config: Path
    generator: Path
    files: dict[str, Path]
    markdown: str  # results.md's text

    @property
    def best(self) -> TrialRow:
        return self.rows[0]


def _write(path: Path, text: str) -> Path:
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def trial_row(result: Any, goal: Objective, total_steps: int) -> TrialRow:
    metric = goal.name
    df = result.metrics_dataframe
    curve: list[tuple[int, float]] = []
    if df is not None and metric in df and TIME_ATTR in df:
        # A trial stopped between logging a result and registering its checkpoint repeats that
        # step after a restore; training is deterministic per step, so the repeat is the same point.
        points = {int(s): float(v) for s, v in zip(df[TIME_ATTR], df[metric]) if not math.isnan(float(v))}
        curve = sorted(points.items())
    last = result.metrics or {}
    steps = max([s for s, _ in curve] + [int(last.get(TIME_ATTR, 0) or 0)])
    best = min(curve, key=lambda sv: (goal.sort_value(sv[1]), sv[0])) if curve else None
    error = None
    if result.error is not None:
        lines = [line for line in str(result.error).strip().splitlines() if line.strip()]
        error = lines[-1][:300] if lines else type(result.error).__name__
    status = "error" if error else ("completed" if steps >= total_steps else "stopped early")
    return TrialRow(
        trial=str(last.get("trial_id") or Path(result.path).name),
        status=status,
        score=best[1] if best else None,
        score_step=best[0] if best else None,
        steps=steps,
        seconds=float(last.get("time_total_s", 0.0) or 0.0),
        params=dict(result.config or {}),
        error=error,
        curve=curve,
    )


def _sort_key(row: TrialRow, goal: Objective) -> tuple:
    unscored = row.score is None or row.status == "error"
    return (unscored, goal.sort_value(row.score) if row.score is not None else math.inf, row.trial)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def table_markdown(rows: list[TrialRow], metric: str) -> str:
    keys = sorted({k for r in rows for k in r.params})
    head = ["rank", "trial", metric, "at step", "steps", "status", *keys, "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows, 1):
        cells = [i, r.trial, r.score, r.score_step, r.steps, r.status + (f": {r.error}" if r.error else ""),
                 *(r.params.get(k) for k in keys), round(r.seconds, 1)]
        lines.append("| " + " | ".join(_fmt(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(rows: list[TrialRow], metric: str) -> str:
    keys = sorted({k for r in rows for k in r.params})
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["rank", "trial", metric, "at_step", "steps", "status", *keys, "seconds", "error"])
    for i, r in enumerate(rows, 1):
        w.writerow([i, r.trial, r.score, r.score_step, r.steps, r.status, *(r.params.get(k) for k in keys), r.seconds, r.error or ""])
    return out.getvalue()


def best_config(base: Config, params: dict[str, Any]) -> Config:
    """The best trial's config, ready for `ganray train --config`: it trains into a new run dir."""
    cfg = apply_params(base, params)
    return cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"run_name": None})})


TOP_DIR = "top"  # <sweep>/top/<rank>/: the top trials' exported generators (tune.export_top_k)


def _best_checkpoint(result: Any, goal: Objective) -> tuple[Any, dict]:
    """A trial's checkpoint with the best score, and its metrics (its last one when none is scored)."""
    scored = [(c, m) for c, m in result.best_checkpoints if goal.name in m]
    return min(scored, key=lambda cm: goal.sort_value(cm[1][goal.name])) if scored else (result.checkpoint, result.metrics)


def summarize(cfg: Config, grid: Any, sweep_dir: Path, reference: dict[str, float]) -> SweepResults:
    goal = objective(cfg)
    metric = goal.name
    pairs = sorted(((trial_row(r, goal, cfg.train.steps), r) for r in grid), key=lambda p: _sort_key(p[0], goal))
    rows = [row for row, _ in pairs]
    best, result = pairs[0]
    if best.score is None or best.status == "error":
        first = next((r.error for r in rows if r.error), f"no trial reported {metric}")
        raise GanrayError(f"every trial of the sweep failed ({first}); see {sweep_dir / 'tune'}")
    checkpoint, scores = _best_checkpoint(result, goal)
    files: dict[str, Path] = {}
    with checkpoint.as_directory() as d:
        generator = export_checkpoint(d, sweep_dir / GENERATOR_DIR, scores)
        if (Path(d) / "samples.png").is_file():
            shutil.copyfile(Path(d) / "samples.png", sweep_dir / "best_samples.png")
            files["samples"] = sweep_dir / "best_samples.png"
    top = [(row, r) for row, r in pairs if row.score is not None and row.status != "error"][: cfg.tune.export_top_k]
    if cfg.tune.export_top_k > 1:
        for rank, (_, r) in enumerate(top, 1):
            ckpt, sc = _best_checkpoint(r, goal)
            with ckpt.as_directory() as d:
                export_checkpoint(d, sweep_dir / TOP_DIR / str(rank), sc)
    conf = _write(sweep_dir / "best_config.yaml", dump_config(best_config(cfg, best.params)))
    ref = reference.get(metric)
    header = [
        f"# Sweep: {len(rows)} trials, {cfg.tune.scheduler} scheduler, {cfg.tune.search} search, {'minimizing' if goal.mode == 'min' else 'maximizing'} {metric}",
        "",
        f"- best: trial {best.trial}, {metric} {best.score:.4g} at step {best.score_step} ({', '.join(f'{k}={_fmt(v)}' for k, v in sorted(best.params.items()))})",
        f"- real held-out data scores {metric} {ref:.4g} (the floor a generator can approach)" if ref is not None else None,
        f"- compute: {sum(r.steps for r in rows)} trial-steps of {len(rows) * cfg.train.steps} for full budgets, "
        f"{sum(r.seconds for r in rows):.0f} trial-seconds",
        f"- best config: {conf.name}; exported generator: {GENERATOR_DIR}/",
        f"- top {len(top)} trials' generators, for an ensemble: "
        + " ".join(f"--generator {TOP_DIR}/{i}" for i in range(1, len(top) + 1)) if cfg.tune.export_top_k > 1 else None,
        "",
    ]
    markdown = "\n".join(l for l in header if l is not None) + "\n" + table_markdown(rows, metric)
    files["markdown"] = _write(sweep_dir / "results.md", markdown)
    files["csv"] = _write(sweep_dir / "results.csv", table_csv(rows, metric))
    files["json"] = _write(
        sweep_dir / "results.json",
        json.dumps({"metric": metric, "reference": reference, "rows": [asdict(r) for r in rows]}, indent=2, sort_keys=True),
    )
    curves = {r.trial: r.curve for r in rows if r.curve}
    plot = fid_curves(curves, sweep_dir / "fid_vs_steps.png", metric, reference=ref)
    if plot is not None:
        files["plot"] = plot
    return SweepResults(metric, rows, reference, conf, generator, files, markdown)
