"""Train-on-synthetic quality of a config over training seeds: the 0.95x target, measured.

For each training seed: train the GAN (one process with `--workers 1`, else Ray Train with
that many workers), then train the report's classifier on 5,000 class-balanced synthetic
samples and on the real train split (classifier seeds 0, 1, 2) and compare their accuracy on
the real test split. Prints one ratio per seed and the mean. Usage:

    .venv/bin/python bench/quality.py [--seeds 0,1,2] [--workers 1] [--set loss.diffaugment=translation ...]

The default config at 2,400 steps takes about 3 minutes per seed and worker layout on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from ganray.config import load_config  # noqa: E402
from ganray.data import load_splits  # noqa: E402
from ganray.log import setup_logging  # noqa: E402
from ganray.metrics.utility import tstr  # noqa: E402
from ganray.training.sampling import recalibrate_batchnorm  # noqa: E402
from results import Check, record  # noqa: E402

TARGET = 0.95


def trained_generator(overrides: list[str], workers: int, root: Path, name: str) -> torch.nn.Module:
    cfg = load_config(None, [
        "eval.every=0", f"ray.num_workers={workers}", f"storage.runs_dir={root}", f"storage.run_name={name}", *overrides,
    ])
    if workers == 1:
        from ganray.training.loop import NullHooks, train_gan

        state = train_gan(cfg.model_copy(update={"train": cfg.train.model_copy(update={
            "sample_every": 10**9, "checkpoint_every": 10**9})}), load_splits(cfg.data).train, NullHooks())
        G = state.sampler()
        recalibrate_batchnorm(G, seed=cfg.train.seed)
        return G
    from ganray.training.export import load_run_generator
    from ganray.training.ray_train import train_with_ray

    train_with_ray(cfg)
    return load_run_generator(root / name).G


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2", help="training seeds")
    p.add_argument("--workers", type=int, default=1, help="1: one process; more: Ray Train workers")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the one-process run and the classifiers")
    p.add_argument("--samples", type=int, default=5000, help="synthetic samples per classifier (the report's default)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    setup_logging("WARNING")
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="ganray-bench-quality-"))
    cfg = load_config(None, args.overrides)
    splits = load_splits(cfg.data)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        start = time.perf_counter()
        G = trained_generator([*args.overrides, f"train.seed={seed}"], args.workers, root, f"seed{seed}")
        train_s = time.perf_counter() - start
        r = tstr(G, splits.train, splits.test, args.samples, [0, 1, 2], cfg.eval.classifier_steps)
        rows.append({"seed": seed, "workers": args.workers, "ratio": r["ratio"], "synthetic": r["synthetic"]["mean"],
                     "real": r["real"]["mean"], "train_s": round(train_s)})
        print(f"seed {seed}: train-on-synthetic {r['synthetic']['mean']:.4f} / real {r['real']['mean']:.4f} "
              f"= {r['ratio']:.4f}x  ({train_s:.0f} s of training)", flush=True)
    mean = statistics.mean(r["ratio"] for r in rows)
    check = Check(f"train-on-synthetic / real, mean of {len(rows)} training seeds, {args.workers} worker(s)", mean, TARGET)
    record("quality", rows, [check])
    print(f"mean {mean:.4f}x (target >= {TARGET}): {'met' if check.holds else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
