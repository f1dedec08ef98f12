"""Generation-recipe elements at low data: what each one does to a real + synthetic classifier.

Per training seed, a GAN trained on `--fraction` of the real train split (validation carved out
of it, as `data.val_fraction` does); then, for each element, 10x the real data in synthetic
samples drawn with `draw_samples` (the function the shards are rendered with), used with the
`mix-50` recipe, and the change in validation and test accuracy against real only (classifier
seeds 0, 1, 2). The last seed's row also has the ensemble of every seed's GAN. Elements:

    plain, scale0.8, scale1.25, filter0.5, filter0.9, soft, ensemble, auto

Usage (digits at 10%; about 25 minutes for 3 seeds on 2 cores):

    .venv/bin/python bench/generation_recipe.py --fraction 0.1 --seeds 0,1,2 [--set data.source=folder --set data.path=DIR]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ganray.errors import GanrayError  # noqa: E402
from ganray.generation.search import SearchBudget, search_generation  # noqa: E402
from ganray.metrics.classifier import predict  # noqa: E402
from lowdata import arguments, probabilities, start  # noqa: E402
from quality import trained_generator  # noqa: E402
from results import mean_std, record  # noqa: E402

ELEMENTS = {  # name -> (latent scale, min confidence, soft labels)
    "plain": (1.0, 0.0, False),
    "scale0.8": (0.8, 0.0, False),
    "scale1.25": (1.25, 0.0, False),
    "filter0.5": (1.0, 0.5, False),
    "filter0.9": (1.0, 0.9, False),
    "soft": (1.0, 0.0, True),
}


def main() -> int:
    args = arguments(__doc__).parse_args()
    root, over, seeds, data, (real_v, real_t) = start(args, "recipe")
    cfg, val, judge, scores, draw = data.cfg, data.val, data.judge, data.mix50, data.draw
    gans, changes = [], {}
    for seed in seeds:
        G = trained_generator([*over, f"train.seed={seed}"], 1, root, f"seed{seed}")
        gans.append(G)
        rows = {}
        for name, (scale, conf, soft) in ELEMENTS.items():
            try:
                x, y = draw([G], scale, conf, 77 + seed)
            except GanrayError:
                print(f"seed {seed} {name}: the filter starves", flush=True)
                continue
            rows[name] = scores(x, predict(judge, x) if soft else y)
        found = search_generation([G], val, "auto", "auto", SearchBudget(cfg.eval.cas_samples, cfg.eval.cas_steps),
                                  probabilities(judge))
        rows[f"auto ({found.latent_scale}/{found.min_confidence})"] = scores(
            *draw([G], found.latent_scale, found.min_confidence, 77 + seed))
        if len(gans) == len(seeds) and len(gans) > 1:
            rows["ensemble"] = scores(*draw(gans, 1.0, 0.0, 77 + seed))
        for name, (v, t) in rows.items():
            key = name.split(" (")[0]
            changes.setdefault(key, []).append((v - real_v, t - real_t))
            print(f"seed {seed} {name:24s} val {v:.4f} ({100 * (v - real_v):+.2f})  test {t:.4f} ({100 * (t - real_t):+.2f})", flush=True)
    summary = []
    for name, ch in changes.items():
        dv, dt = [c[0] for c in ch], [c[1] for c in ch]
        sd = mean_std(dt)[1]
        summary.append({"element": name, "seeds": len(ch), "val_change": statistics.mean(dv), "test_change": statistics.mean(dt), "test_std": sd})
        print(f"{name:10s} over {len(ch)} seed(s): val {100 * statistics.mean(dv):+.2f}  test {100 * statistics.mean(dt):+.2f} ± {100 * sd:.2f} points")
    record("generation_recipe", summary, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
