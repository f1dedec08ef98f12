"""`ganray report`: will this synthetic data help? Written as report.md, report.json and PNGs.

The run's own config.yaml decides the data and model; the eval section of the caller's config
decides how much to measure. GANs for the low-data study are ordinary runs (`<run>-frac<f>`)
trained with Ray Train, so an interrupted report resumes them instead of starting over.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ganray.config import Config, load_config
from ganray.data import load_splits
from ganray.data.base import ImageDataset, Splits
from ganray.data.registry import train_subset
from ganray.errors import GanrayError
from ganray.metrics.evaluator import build_evaluator, prepare_domain
from ganray.metrics.utility import augmentation_gain, coverage, tstr
from ganray.reporting.figures import accuracy_bars, fid_curve
from ganray.training.export import load_run_generator
from ganray.training.run_dir import read_metrics
from ganray.training.sampling import fixed_inputs, generate, grid_png

log = logging.getLogger(__name__)


def run_config(run_dir: Path, cfg: Config) -> Config:
    """The run's own config with the caller's eval and storage.cache_dir settings."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise GanrayError(f"{str(run_dir)!r} is not a run directory (no config.yaml); pass --run with a trained run")
    own = load_config(path)
    return own.model_copy(update={"eval": cfg.eval, "storage": own.storage.model_copy(update={"cache_dir": cfg.storage.cache_dir})})


def _fraction(full: Splits, fraction: float, seed: int) -> ImageDataset:
    """The same class-stratified subset `load_splits` makes for `data.train_fraction`."""
    if fraction >= 1.0:
        return full.train
    return full.train.subset(train_subset(full.train.labels.numpy(), fraction, seed))


def _fraction_generator(cfg: Config, run_dir: Path, fraction: float):
    """The GAN trained on `fraction` of the real train split: the run itself, or a sibling run."""
    if abs(fraction - cfg.data.train_fraction) < 1e-9:
        return load_run_generator(run_dir).G
    from ganray.training.ray_train import train_with_ray  # Ray only when a sibling GAN must be trained

    sibling = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"train_fraction": fraction}),
            "eval": cfg.eval.model_copy(update={"every": 0}),
            "storage": cfg.storage.model_copy(
                update={"runs_dir": str(run_dir.parent), "run_name": f"{run_dir.name}-frac{fraction:g}"}
            ),
        }
    )
    log.info("low-data study: training a GAN on %g of the real train split (%s)", fraction, sibling.storage.run_name)
    out = train_with_ray(sibling)
    return load_run_generator(out.run_dir).G


def build_report(cfg: Config, run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    run_dir = Path(run_dir).resolve()
    rcfg = run_config(run_dir, cfg)
    e = rcfg.eval
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # Load the data once; the run's split and each low-data fraction are subsets of the full train split.
    full = load_splits(rcfg.data.model_copy(update={"train_fraction": 1.0}), rcfg.storage)
    splits = Splits(_fraction(full, rcfg.data.train_fraction, rcfg.data.split_seed), full.test)
    loaded = load_run_generator(run_dir)
    G = loaded.G
    if not G.num_classes:
        raise GanrayError("the report needs a class-conditional generator (model.arch=cdcgan): dcgan samples carry no labels")
    if G.num_classes != splits.train.num_classes:
        raise GanrayError(f"the generator has {G.num_classes} classes but the dataset has {splits.train.num_classes}")

    log.info("report: fidelity metrics on %d samples", e.num_samples)
    domain = prepare_domain(rcfg, splits)
    fidelity = build_evaluator(rcfg, splits, domain=domain).evaluate_generator(G, recalibrate=False)
    log.info("report: train-on-synthetic vs train-on-real over seeds %s", e.report_seeds)
    cas = tstr(G, splits.train, splits.test, e.report_samples, e.report_seeds, e.classifier_steps)
    cover = coverage(domain.model, G, e.report_samples, e.report_seeds[0], splits.train.class_names)
    low_data = {}
    for f in e.report_fractions:
        subset = _fraction(full, f, rcfg.data.split_seed)
        G_f = _fraction_generator(rcfg, run_dir, f)
        log.info("report: augmentation gain with %g of the real data (%d images)", f, len(subset))
        low_data[f"{f:g}"] = augmentation_gain(G_f, subset, full.test, e.report_samples, e.report_seeds, e.classifier_steps)

    figures = {}
    z, y = fixed_inputs(G, rcfg.train.seed)
    (out / "samples_per_class.png").write_bytes(grid_png(generate(G, z, y), ncol=10))
    figures["samples"] = "samples_per_class.png"
    if fid_curve(read_metrics(run_dir), out / "fid_over_steps.png"):
        figures["fid_curve"] = "fid_over_steps.png"
    bars = {"all real data": {"real only": (cas["real"]["mean"], cas["real"]["std"]), "synthetic only": (cas["synthetic"]["mean"], cas["synthetic"]["std"])}}
    for f, g in low_data.items():
        bars[f"{float(f):.0%} real"] = {
            "real only": (g["real_only"]["mean"], g["real_only"]["std"]),
            "real + synthetic": (g["real_plus_synthetic"]["mean"], g["real_plus_synthetic"]["std"]),
        }
    accuracy_bars(bars, out / "accuracy.png", "classifier accuracy on the real test split")
    figures["accuracy"] = "accuracy.png"

    report = {
        "run": str(run_dir),
        "generator": {k: loaded.info[k] for k in ("arch", "step", "data_fingerprint")},
        "fidelity": {"extractor": e.extractor, "num_samples": e.num_samples, "real_split": e.real_split, "metrics": fidelity},
        "domain_classifier_test_accuracy": domain.test_accuracy,
        "train_on_synthetic": cas,
        "coverage": cover,
        "low_data": low_data,
        "seeds": {"classifier": e.report_seeds, "eval": e.seed, "train": rcfg.train.seed, "split": rcfg.data.split_seed},
        "config": rcfg.model_dump(),
        "figures": figures,
        "seconds": time.perf_counter() - start,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    (out / "report.md").write_text(render_markdown(report))
    return out


def _pm(d: dict) -> str:
    return f"{d['mean']:.4f} ± {d['std']:.4f}"


def render_markdown(r: dict) -> str:
    fid = r["fidelity"]
    tag = fid["extractor"]
    cas = r["train_on_synthetic"]
    lines = [
        f"# ganray report: {r['generator']['arch']} at step {r['generator']['step']}",
        "",
        f"Run `{r['run']}`. Seeds: classifier {r['seeds']['classifier']}, evaluation {r['seeds']['eval']}, "
        f"training {r['seeds']['train']}, split {r['seeds']['split']}. The full configuration is in report.json.",
        "",
        f"## Sample quality ({tag} features, {fid['num_samples']} samples vs the real {fid['real_split']} split)",
        "",
        f"Metrics carry the extractor in their name: `_{tag}` values are not comparable to Inception-based ones.",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.4g} |" for k, v in sorted(fid["metrics"].items()) if k != "eval_seconds"],
        "",
        "## Train on synthetic, test on real",
        "",
        f"The same classifier trained on {cas['n_synthetic']} class-balanced synthetic samples only, and on the "
        f"{cas['n_real']} real training images, each tested on the real test split (mean ± std over seeds).",
        "",
        "| trained on | test accuracy |",
        "|---|---|",
        f"| real train split | {_pm(cas['real'])} |",
        f"| synthetic only | {_pm(cas['synthetic'])} |",
        f"| **ratio** | **{cas['ratio']:.3f}x** |",
        "",
        "## Per-class coverage",
        "",
        f"Share of samples generated for each class that a classifier trained on real data assigns to that class "
        f"(overall {r['coverage']['overall']:.4f}).",
        "",
        "| class | " + " | ".join(r["coverage"]["per_class"]) + " |",
        "|---|" + "---|" * len(r["coverage"]["per_class"]),
        "| coverage | " + " | ".join(f"{v:.3f}" for v in r["coverage"]["per_class"].values()) + " |",
        "",
        "## Low-data regime: real only vs real + synthetic",
        "",
        "For each fraction of the real train split, a GAN is trained on that fraction only; the classifier "
        "trains on the real fraction (with random-shift augmentation) alone, and with the GAN's samples added.",
        "",
        "| real fraction | real images | real only | real + synthetic | gain |",
        "|---|---|---|---|---|",
        *[
            f"| {float(f):.0%} | {g['n_real']} | {_pm(g['real_only'])} | {_pm(g['real_plus_synthetic'])} | {g['gain']:+.4f} |"
            for f, g in r["low_data"].items()
        ],
        "",
        "## Figures",
        "",
        *[f"![{k}]({v})" for k, v in r["figures"].items()],
        "",
    ]
    return "\n".join(lines)
