"""GAN training variants at low data: what each does to the samples as labelled training data.

Per variant (a set of config overrides) and GAN training seed: a GAN trained in one process on
`--fraction` of the real train split (validation carved out of it, as `data.val_fraction`
does); then 10x the real data in class-balanced samples (at most 5,000), drawn with
`draw_samples` (the function the shards are rendered with, `--filter` = its judge filter), and

    mix-50   the change in validation and test accuracy of real + synthetic (`mix-50` recipe)
             against real only, classifier seeds 0, 1, 2
    tstr     test accuracy of a classifier trained on the samples only, classifier seeds 0, 1, 2
    judge    the share of samples a classifier trained on the same real images assigns to their label

Usage (MNIST-like folder data, 82 images per class; about 10 minutes per GAN on one core):

    .venv/bin/python bench/gan_variants.py --fraction 0.34 --seeds 0,1,2 \\
        --set data.source=folder --set data.path=DIR \\
        --variant off:loss.mode_seeking=0,loss.class_weight=0 --variant default: [--filter 0.5]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ganray.metrics.classifier import accuracy, predict, train_classifier  # noqa: E402
from lowdata import CLASSIFIER_SEEDS, arguments, parse_variant, start, summarize_variant  # noqa: E402
from quality import trained_generator  # noqa: E402
from results import record  # noqa: E402


def main() -> int:
    p = arguments(__doc__)
    p.add_argument("--variant", action="append", default=[], help="NAME:key=value,key=value (NAME: alone = the defaults)")
    p.add_argument("--filter", type=float, default=0.0, help="judge filter: keep samples with p(label) >= this; 0 = off")
    args = p.parse_args()
    root, over, seeds, data, (real_v, real_t) = start(args, "variants")
    test, judge, k = data.test, data.judge, data.k
    summary = []
    for name, sets in [parse_variant(v) for v in args.variant or ["default:"]]:
        rows = []
        for seed in seeds:
            G = trained_generator([*over, *sets, f"train.seed={seed}"], 1, root, f"{name}-seed{seed}")
            x, y = data.draw([G], 1.0, args.filter, 77 + seed)
            v, t = data.mix50(x, y)
            tstr = statistics.mean(accuracy(train_classifier(x, y, k, data.classifier(cs)), test.images, test.labels)
                                   for cs in CLASSIFIER_SEEDS)
            agree = float((predict(judge, x).argmax(1) == y).float().mean())
            rows.append({"seed": seed, "val_change": v - real_v, "test_change": t - real_t, "tstr": tstr, "judge": agree})
            print(f"{name} seed {seed}: mix-50 val {100 * (v - real_v):+.2f} test {100 * (t - real_t):+.2f} points; "
                  f"tstr {tstr:.4f} ({tstr / real_t:.3f}x); judge {agree:.3f}", flush=True)

        summary.append(summarize_variant(name, "mix-50", rows, real_t, sets=sets, filter=args.filter))
    record("gan_variants", summary, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
