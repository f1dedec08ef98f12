"""ASHA vs running every trial to its full budget: compute spent and best FID found, in one run.

Both sweeps sample the same trials (same search seed, same space), so the only difference is
the scheduler stopping trials early. Target: ASHA's best FID within 10% of the full sweep's at
no more than half its compute (trial-steps; trial-seconds printed beside). Usage:

    .venv/bin/python bench/tune_asha.py [--trials 16] [--set key=value ...]

The defaults are a CPU-sized sweep (narrow models, 600 steps); pass `--set ray.use_gpu=true
--set tune.gpus_per_trial=0.125 ...` on a GPU machine to run trials side by side on one GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ganray.config import load_config  # noqa: E402
from ganray.log import setup_logging  # noqa: E402
from ganray.tuning.sweep import run_sweep  # noqa: E402
from results import Check, record  # noqa: E402

CPU_DEFAULTS = [
    "train.steps=600",
    "train.batch_size=64",
    "eval.every=100",
    "eval.num_samples=1000",
    "eval.metrics=[fid]",
    "tune.space={train.lr_g: {loguniform: [0.00002, 0.002]}, train.lr_d: {loguniform: [0.00002, 0.002]}, model.width: {choice: [0.25, 0.5]}}",
    "ray.cpus_per_worker=1",
]


def sweep(root: Path, scheduler: str, trials: int, overrides: list[str]) -> dict:
    cfg = load_config(None, [
        *CPU_DEFAULTS, f"tune.num_samples={trials}", f"tune.scheduler={scheduler}",
        f"storage.runs_dir={root}", f"storage.run_name={scheduler}", *overrides,
    ])
    start = time.perf_counter()
    out = run_sweep(cfg)
    wall = time.perf_counter() - start
    rows = out.results.rows
    return {
        "scheduler": scheduler,
        "trials": len(rows),
        "stopped_early": sum(r.status == "stopped early" for r in rows),
        "trial_steps": sum(r.steps for r in rows),
        "trial_seconds": round(sum(r.seconds for r in rows), 1),
        "wall_s": round(wall, 1),
        "best_fid": out.results.best.score,
        "best_params": out.results.best.params,
        "best_trial": out.results.best.trial,
        "reference_fid": out.results.reference.get(out.results.metric),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--root", help="sweep directories (default: a temporary one)")
    args = p.parse_args()
    setup_logging("WARNING")
    root = Path(args.root or tempfile.mkdtemp(prefix="ganray-bench-tune-"))
    full = sweep(root, "fifo", args.trials, args.overrides)
    asha = sweep(root, "asha", args.trials, args.overrides)
    compute = asha["trial_steps"] / full["trial_steps"]
    seconds = asha["trial_seconds"] / full["trial_seconds"]
    quality = asha["best_fid"] / full["best_fid"]
    print(f"{'sweep':<6} {'trials':>6} {'stopped':>7} {'trial-steps':>11} {'trial-s':>8} {'wall s':>7} {'best FID':>9}")
    for r in (full, asha):
        print(f"{r['scheduler']:<6} {r['trials']:>6} {r['stopped_early']:>7} {r['trial_steps']:>11} "
              f"{r['trial_seconds']:>8.0f} {r['wall_s']:>7.0f} {r['best_fid']:>9.2f}")
    print(f"ASHA / full: compute {compute:.2f} (trial-steps), {seconds:.2f} (trial-seconds); best FID {quality:.3f}")
    print(f"target: compute <= 0.50 and best FID <= 1.10: {'met' if compute <= 0.5 and quality <= 1.1 else 'NOT met'}")
    print(f"best (full sweep): {full['best_params']}  real held-out FID {full['reference_fid']:.2f}")
    record("tune_asha", [full, asha, {"compute_ratio": compute, "seconds_ratio": seconds, "fid_ratio": quality}],
           [Check("ASHA / full budgets: compute (trial-steps)", compute, 0.5, at_least=False),
            Check("ASHA / full budgets: best FID", quality, 1.1, at_least=False)])


if __name__ == "__main__":
    main()
