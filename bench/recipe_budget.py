"""Downstream recipes against the classifier's budget: is a mix's gain synthetic data, or steps?

Per GAN training seed: a default GAN trained in one process on `--fraction` of the real train
split (validation carved out of it, as `data.val_fraction` does), 10x the real data in
class-balanced samples (at most 5,000), then per variant (recipe x classifier steps) and
classifier seed 0, 1, 2: validation accuracy, the validation images' p(true class), and test
accuracy. Real only is trained at every budget too, so a mix is compared with real only at its
best budget, not just at `eval.classifier_steps`. Writes one JSON per GAN seed to `--out`.

Usage (digits at 10%; for MNIST-like folder data add --fraction 0.34 --set data.source=folder
--set data.path=DIR; about 12 minutes per GAN on one core):

    .venv/bin/python bench/recipe_budget.py --seeds 0,1,2 --out /tmp/recipes
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

# name -> (real share of every batch, or "soft" for mix-50 with the judge's soft labels; None = real only; steps)
VARIANTS: dict[str, tuple[float | str | None, int]] = {
    "real": (None, 500), "real@1000": (None, 1000), "real@2000": (None, 2000),
    "mix-50": (0.5, 500), "mix-75": (0.75, 500), "mix-50-soft": ("soft", 500),
    "mix-50@1000": (0.5, 1000), "mix-75@1000": (0.75, 1000), "mix-25@1000": (0.25, 1000),
}


def main() -> int:
    p = arguments(__doc__)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    root, over, seeds, data, _ = start(args, "recipe-budget")
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        G = trained_generator([*over, f"train.seed={seed}"], 1, root, f"seed{seed}")
        x, y = sample_balanced(G, data.n, 50_000 + seed)
        soft = predict(data.judge, x)
        rows = {}
        for name, (share, steps) in VARIANTS.items():
            mix = None if share is None else Mix(x, soft, 0.5) if share == "soft" else Mix(x, y, float(share))
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
