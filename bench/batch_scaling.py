"""Raising the per-GPU batch: what it does to quality, at the learning rate ganray recommends.

A GPU trains the shipped model far faster at batch 1,024 than at 64 (issue 19), so users raise the
batch. This bench says what that costs in quality, on the same data and the same number of images
seen: per batch B, `train.steps = --steps x 64 / B` (so every run sees the same images; on a GPU
that is the same epochs in less wall time), both learning rates scaled from the defaults by
`--rule` (sqrt: x sqrt(B/64), linear: x B/64, none), and the mode-seeking warm-up kept at half the
run. Each GAN is trained in one process; then per training seed it reports

    tstr   train-on-synthetic / real (5,000 samples, classifier seeds 0, 1, 2, test split)
    fid    fid_domain at eval.num_samples (the domain extractor, as `ganray evaluate` measures it)

Usage (digits; about 5 minutes per GAN on 2 cores):

    .venv/bin/python bench/batch_scaling.py --batches 64,256,1024 --seeds 0,1,2 [--rule sqrt] [--set ...]
"""

from __future__ import annotations

import argparse
import math
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
from ganray.metrics.evaluator import evaluate_source  # noqa: E402
from ganray.metrics.utility import tstr  # noqa: E402
from quality import trained_generator  # noqa: E402
from results import mean_std, record  # noqa: E402

BASE_BATCH = 64  # train.batch_size's default: the learning rates' reference point
RULES = {"sqrt": lambda r: math.sqrt(r), "linear": lambda r: r, "none": lambda r: 1.0}


def overrides(batch: int, base_steps: int, rule: str, lr_g: float, lr_d: float) -> list[str]:
    """The config at batch `batch`: the same images seen as `base_steps` at batch 64, scaled learning rates."""
    ratio = batch / BASE_BATCH
    steps = max(1, round(base_steps / ratio))
    scale = RULES[rule](ratio)
    return [f"train.batch_size={batch}", f"train.steps={steps}", f"loss.mode_seeking_warmup={steps // 2}",
            f"train.lr_g={lr_g * scale:.6g}", f"train.lr_d={lr_d * scale:.6g}"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="64,256,1024")
    p.add_argument("--seeds", default="0,1,2", help="GAN training seeds")
    p.add_argument("--rule", choices=sorted(RULES), default="sqrt", help="learning-rate scaling with the batch")
    p.add_argument("--steps", type=int, default=0, help="steps at batch 64 (default: train.steps)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    setup_logging("WARNING")
    torch.set_num_threads(args.threads)
    base = load_config(None, args.overrides)
    splits = load_splits(base.data)
    root = Path(tempfile.mkdtemp(prefix="ganray-bench-batch-"))
    rows, summary = [], []
    for batch in [int(b) for b in args.batches.split(",") if b]:
        sets = overrides(batch, args.steps or base.train.steps, args.rule, base.train.lr_g, base.train.lr_d)
        per_seed = []
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            over = [*args.overrides, *sets, f"train.seed={seed}"]
            start = time.perf_counter()
            G = trained_generator(over, 1, root, f"b{batch}-seed{seed}")
            train_s = time.perf_counter() - start
            cfg = load_config(None, over)
            r = tstr(G, splits.train, splits.test, 5000, [0, 1, 2], cfg.eval.classifier_steps)
            fid = evaluate_source(cfg, splits, "bench", G=G)["metrics"]["fid_domain"]
            row = {"batch": batch, "seed": seed, "sets": sets, "tstr": r["ratio"], "fid": fid, "train_s": round(train_s)}
            rows.append(row)
            per_seed.append(row)
            print(f"batch {batch} seed {seed} ({' '.join(sets)}): tstr {r['ratio']:.4f}x fid_domain {fid:.2f} "
                  f"({train_s:.0f} s)", flush=True)

        (t, t_sd), (f, f_sd) = (mean_std([r[key] for r in per_seed]) for key in ("tstr", "fid"))
        summary.append({"batch": batch, "rule": args.rule, "seeds": len(per_seed), "tstr": t, "tstr_std": t_sd, "fid": f, "fid_std": f_sd})
        print(f"batch {batch} over {len(per_seed)} seed(s): tstr {t:.4f} ± {t_sd:.4f}x, fid_domain {f:.2f} ± {f_sd:.2f}", flush=True)
    record("batch_scaling", summary + rows, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
