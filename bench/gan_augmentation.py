"""Augmentation in GAN training at low data: what it does to the samples alone and under the report's prior.

Per variant (config overrides, e.g. `loss.diffaugment=` for none) and GAN training seed: a GAN
trained in one process on `--fraction` of the real train split (validation carved out of it),
then 10x the real data in class-balanced samples (at most 5,000), and

    tstr         test accuracy of a classifier trained on the samples only (`eval.classifier_steps`,
                 classifier seeds 0, 1, 2; one draw, noise seed 777 + GAN seed)
    mix-50-ens   the change in validation and test accuracy against real only of the report's prior:
                 half of every batch real, the samples labelled by the mean probabilities of the
                 real-only classifiers (`eval.recipe_steps`, seeds 0, 1, 2), each classifier seed
                 drawing its own samples (noise seed 50,000 + classifier seed); the report's own
                 `fit_recipe`, so the figures are the report's
    judge        the share of samples a classifier trained on the same real images assigns to their label

`gan_variants.py` asks the same of the older `mix-50` recipe (hard labels, shard-path draws).
Usage (about 10 minutes per GAN on one core; MNIST-like folder data: `--fraction 0.34 --set
data.source=folder --set data.path=DIR`):

    .venv/bin/python bench/gan_augmentation.py --fraction 0.1 --seeds 0,1,2 \\
        --variant default: --variant none:loss.diffaugment= \\
        --variant "ada:loss.diffaugment=color,translation,cutout;loss.ada_target=0.6"

A variant's overrides are separated by `;` (a DiffAugment policy is itself a comma list).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ganray.metrics.classifier import accuracy, predict, train_classifier  # noqa: E402
from ganray.metrics.recipes import REAL, RECIPES, Budget, fit_recipe  # noqa: E402
from ganray.models.sampling import sample_balanced  # noqa: E402
from lowdata import CLASSIFIER_SEEDS, arguments, parse_variant, start, summarize_variant  # noqa: E402
from quality import trained_generator  # noqa: E402
from results import record  # noqa: E402


def main() -> int:
    p = arguments(__doc__)
    p.add_argument("--variant", action="append", default=[], help="NAME:key=value;key=value (NAME: alone = the defaults)")
    args = p.parse_args()
    root, over, seeds, data, _ = start(args, "augmentation")
    train, val, test, k, e = data.train, data.val, data.test, data.k, data.cfg.eval
    # The report's own fits: real only (the teachers) and its prior, at its budget and sample draws.
    budget = Budget.of(e, seeds=list(CLASSIFIER_SEEDS))
    teachers = [fit_recipe(RECIPES[REAL], None, train, cs, budget) for cs in CLASSIFIER_SEEDS]
    real_v = statistics.mean(accuracy(m, val.images, val.labels) for m in teachers)
    real_t = statistics.mean(accuracy(m, test.images, test.labels) for m in teachers)
    print(f"real only at {e.recipe_steps} steps: val {real_v:.4f} test {real_t:.4f}", flush=True)

    summary = []
    for name, sets in [parse_variant(v, ";") for v in args.variant or ["default:"]]:
        rows = []
        for seed in seeds:
            G = trained_generator([*over, *sets, f"train.seed={seed}"], 1, root, f"{name}-seed{seed}")
            x, y = sample_balanced(G, data.n, 777 + seed)
            tstr = statistics.mean(accuracy(train_classifier(x, y, k, data.classifier(cs)), test.images, test.labels)
                                   for cs in CLASSIFIER_SEEDS)
            agree = float((predict(data.judge, x).argmax(1) == y).float().mean())
            v, t = [], []
            for cs in CLASSIFIER_SEEDS:
                m = fit_recipe(RECIPES["mix-50-ens"], G, train, cs, budget, teachers=teachers)
                v.append(accuracy(m, val.images, val.labels))
                t.append(accuracy(m, test.images, test.labels))
            row = {"seed": seed, "val_change": statistics.mean(v) - real_v, "test_change": statistics.mean(t) - real_t,
                   "tstr": tstr, "judge": agree}
            rows.append(row)
            print(f"{name} seed {seed}: tstr {tstr:.4f} ({tstr / real_t:.3f}x); mix-50-ens val {100 * row['val_change']:+.2f} "
                  f"test {100 * row['test_change']:+.2f} points; judge {agree:.3f}", flush=True)
        summary.append(summarize_variant(name, "mix-50-ens", rows, real_t, sets=sets))
    record("gan_augmentation", summary, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
