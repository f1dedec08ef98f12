"""Cost of periodic evaluation: 10,000 generated samples vs the training between two evaluations.

Both are measured side by side in this process with the same torch thread count, so their
ratio is what one Ray Train worker sees: rank 0 trains its slice of the global batch
(`train.batch_size / ray.num_workers`) and, every `eval.every` steps, also samples and scores
`eval.num_samples` images while the other ranks wait. Real-data statistics are cached first
(that is what a run does after its first evaluation). Usage:

    .venv/bin/python bench/eval_cost.py [--threads 1,2] [--train-steps 120] [--set key=value ...]
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
from results import Check, record  # noqa: E402
from ganray.metrics.evaluator import build_evaluator  # noqa: E402
from ganray.training.loop import NullHooks, train_gan  # noqa: E402
from ganray.models.sampling import recalibrate_batchnorm  # noqa: E402

TARGET = 0.10


def measure(overrides: list[str], threads: int, train_steps: int, repeats: int, cache: str) -> dict:
    torch.set_num_threads(threads)
    cfg = load_config(None, [f"storage.cache_dir={cache}", *overrides])
    splits = load_splits(cfg.data)
    per_worker = cfg.train.batch_size // cfg.ray.num_workers
    # Training: rank 0's share of the default global batch, timed after a warm-up.
    tcfg = load_config(None, [
        f"storage.cache_dir={cache}", *overrides, f"train.batch_size={per_worker}", f"train.steps={train_steps}",
        f"train.log_every={train_steps}", f"train.sample_every={10**9}", f"train.checkpoint_every={10**9}",
        "eval.every=0", "ray.num_workers=1",
    ])
    warm = tcfg.model_copy(update={"train": tcfg.train.model_copy(update={"steps": 10})})
    train_gan(warm, splits.train, NullHooks())
    start = time.perf_counter()
    state = train_gan(tcfg, splits.train, NullHooks())
    step_s = (time.perf_counter() - start) / train_steps
    evaluator = build_evaluator(cfg, splits)
    G = state.sampler()
    recalibrate_batchnorm(G)
    evaluator.evaluate_generator(G, recalibrate=False)  # fills the real-statistics cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        metrics = evaluator.evaluate_generator(G, recalibrate=True)
        times.append(time.perf_counter() - t)
    eval_s = statistics.median(times)
    interval_s = step_s * cfg.eval.every
    return {
        "threads": threads, "num_samples": cfg.eval.num_samples, "eval_every": cfg.eval.every,
        "per_worker_batch": per_worker, "train_step_s": step_s, "train_interval_s": interval_s,
        "eval_s": times, "fraction": eval_s / interval_s, "target": TARGET, "holds": eval_s / interval_s <= TARGET,
        "metrics": sorted(metrics),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma list: one row per torch thread count")
    p.add_argument("--train-steps", type=int, default=120)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    setup_logging("WARNING")
    cache = tempfile.mkdtemp(prefix="ganray-bench-cache-")
    rows = [measure(args.overrides, int(t), args.train_steps, args.repeats, cache) for t in args.threads.split(",")]
    print(f"{'threads':>7}  {'eval 10k (s)':>12}  {'train interval (s)':>18}  {'fraction':>8}  target <= {TARGET:.0%}")
    for r in rows:
        print(f"{r['threads']:>7}  {statistics.median(r['eval_s']):>12.2f}  {r['train_interval_s']:>18.1f}  "
              f"{r['fraction']:>8.1%}  {'holds' if r['holds'] else 'MISSED'}")
    record("eval_cost", rows, [Check(f"evaluation / training between evaluations, {r['threads']} thread(s)", r["fraction"],
                                     TARGET, at_least=False) for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
