"""Downstream recipes against the classifier's budget: is a mix's gain synthetic data, or steps?

Per GAN training seed: a default GAN trained in one process on `--fraction` of the real train
split (validation carved out of it, as `data.val_fraction` does), 10x the real data in
class-balanced samples (at most 5,000), then per variant (recipe x classifier steps) and
classifier seed 0, 1, 2: validation accuracy, the validation images' p(true class), and test
accuracy. Real only is trained at every budget too, so a mix is compared with real only at its
best budget, not just at `eval.classifier_steps`. Writes one JSON per GAN seed to `--out`.

Usage (digits at 10%; for MNIST-like folder data add --fraction 0.34 --set data.source=folder
--set data.path=DIR; about 12 minutes per GAN on one core):

    .venv/bin/python bench/recipe_budget.py --seeds 0,1,2 --out /tmp/recipes [--variants real@1000,mix-50-soft@1000]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from ganray.metrics.classifier import ClassifierConfig, Mix, accuracy, predict, train_mixed  # noqa: E402
from ganray.models.sampling import sample_balanced  # noqa: E402
from lowdata import CLASSIFIER_SEEDS, arguments, start  # noqa: E402
from quality import trained_generator  # noqa: E402

# name -> (real share of every batch, None = real only; synthetic labels; classifier steps). Labels:
# "hard" = the generator's, "soft" = the judge's class probabilities (as mix-50-soft), "ens" = the
# mean probabilities of 3 real-only classifiers at 1,000 steps (a stronger teacher, tried, not shipped).
VARIANTS: dict[str, tuple[float | None, str, int]] = {
    "real": (None, "hard", 500), "real@1000": (None, "hard", 1000), "real@2000": (None, "hard", 2000),
    "mix-50": (0.5, "hard", 500), "mix-75": (0.75, "hard", 500), "mix-50-soft": (0.5, "soft", 500),
    "mix-50@1000": (0.5, "hard", 1000), "mix-75@1000": (0.75, "hard", 1000), "mix-25@1000": (0.25, "hard", 1000),
    "mix-50-soft@1000": (0.5, "soft", 1000), "mix-50-ens@1000": (0.5, "ens", 1000), "mix-75-ens@1000": (0.75, "ens", 1000),
    "mix-50@2000": (0.5, "hard", 2000), "mix-50-soft@2000": (0.5, "soft", 2000), "mix-50-ens@2000": (0.5, "ens", 2000),
}


def main() -> int:
    p = arguments(__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names from VARIANTS")
    args = p.parse_args()
    root, over, seeds, data, _ = start(args, "recipe-budget")
    args.out.mkdir(parents=True, exist_ok=True)
    teachers = [train_mixed(data.train.images, data.train.labels, data.k, None, ClassifierConfig(steps=1000, seed=10 + i))
                for i in range(3)]
    for seed in seeds:
        G = trained_generator([*over, f"train.seed={seed}"], 1, root, f"seed{seed}")
        x, y = sample_balanced(G, data.n, 50_000 + seed)
        targets = {"hard": y, "soft": predict(data.judge, x), "ens": torch.stack([predict(t, x) for t in teachers]).mean(0)}
        rows = {}
        for name in args.variants.split(","):
            share, labels, steps = VARIANTS[name]
            mix = None if share is None else Mix(x, targets[labels], share)
            rows[name] = []
            for cs in CLASSIFIER_SEEDS:
                m = train_mixed(data.train.images, data.train.labels, data.k, mix, ClassifierConfig(steps=steps, seed=cs))
                pv = predict(m, data.val.images)  # both validation figures come from one pass
                rows[name].append({
                    "val_acc": float((pv.argmax(1) == data.val.labels).float().mean()),
                    "val_p_true": pv[torch.arange(len(pv)), data.val.labels].tolist(),
                    "test_acc": accuracy(m, data.test.images, data.test.labels),
                })
            print(f"seed {seed} {name}: val {statistics.mean(r['val_acc'] for r in rows[name]):.4f} "
                  f"test {statistics.mean(r['test_acc'] for r in rows[name]):.4f}", flush=True)
        (args.out / f"seed{seed}.json").write_text(json.dumps({
            "seed": seed, "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
            "n_synthetic": data.n, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
