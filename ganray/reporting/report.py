"""`ganray report`: will this synthetic data help? Written as report.md, report.json and PNGs.

The run's own config.yaml decides the data and model; the eval section of the caller's config
decides how much to measure. GANs for the low-data study are ordinary runs (`<run>-frac<f>`)
trained with Ray Train, so an interrupted report resumes them instead of starting over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ganray.config import Config
from ganray.data import load_splits
from ganray.data.base import ImageDataset, Splits
from ganray.data.registry import train_subset
from ganray.errors import GanrayError
from ganray.metrics.evaluator import build_evaluator, prepare_domain
from ganray.metrics.utility import augmentation_gain, coverage, tstr
from ganray.reporting.figures import accuracy_bars, fid_curve
from ganray.training.export import load_run_generator
from ganray.storage import is_s3, open_store, upload_dir
from ganray.training.run_dir import RunDir, read_config, read_metrics
from ganray.training.sampling import fixed_inputs, generate, grid_png

log = logging.getLogger(__name__)


def run_config(run: RunDir, cfg: Config) -> Config:
    """The run's own config with the caller's eval and storage settings (but the run's runs_dir and name)."""
    own = read_config(run)
    if own is None:
        raise GanrayError(f"{run.uri!r} is not a run directory (no config.yaml); pass --run with a trained run")
    storage = cfg.storage.model_copy(update={"runs_dir": own.storage.runs_dir, "run_name": own.storage.run_name})
    return own.model_copy(update={"eval": cfg.eval, "storage": storage})


def _fraction(full: Splits, fraction: float, seed: int) -> ImageDataset:
    """The same class-stratified subset `load_splits` makes for `data.train_fraction`."""
    if fraction >= 1.0:
        return full.train
    return full.train.subset(train_subset(full.train.labels.numpy(), fraction, seed))


def _fraction_generator(cfg: Config, run: RunDir, fraction: float):
    """The GAN trained on `fraction` of the real train split: the run itself, or a sibling run."""
    if abs(fraction - cfg.data.train_fraction) < 1e-9:
        return load_run_generator(run).G
    from ganray.training.ray_train import train_with_ray  # Ray only when a sibling GAN must be trained

    sibling = run.sibling(f"{run.name}-frac{fraction:g}")
    sibling_cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"train_fraction": fraction}),
            "eval": cfg.eval.model_copy(update={"every": 0}),
            "storage": cfg.storage.model_copy(update={"runs_dir": sibling.parent, "run_name": sibling.name}),
        }
    )
    log.info("low-data study: training a GAN on %g of the real train split (%s)", fraction, sibling.uri)
    out = train_with_ray(sibling_cfg)
    return load_run_generator(out.run).G


@dataclass(frozen=True)
class ReportOutput:
    uri: str  # the report directory: a path or an s3:// prefix
    report: dict
    markdown: str


def build_report(cfg: Config, run: "RunDir | str | Path", out_dir: str | None = None) -> ReportOutput:
    """Write the report into `out_dir` (default <run>/report), local or S3; staged locally for S3."""
    run = RunDir.at(run, cfg.storage)
    rcfg = run_config(run, cfg)
    uri = str(out_dir) if out_dir is not None else run.join("report")
    with _staged(uri, cfg) as out:
        report = _build(rcfg, run, out)
        markdown = render_markdown(report)
        (out / "report.md").write_text(markdown)
        (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    return ReportOutput(uri, report, markdown)


@contextlib.contextmanager
def _staged(uri: str, cfg: Config) -> Iterator[Path]:
    """A local directory to write the report into; on S3 uploaded afterwards, report.json last."""
    if not is_s3(uri):
        out = Path(uri).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    store = open_store(uri, cfg.storage)
    store.check_writable()
    with tempfile.TemporaryDirectory(prefix="ganray-report-") as tmp:
        yield Path(tmp)
        upload_dir(store, Path(tmp), last="report.json")


def _build(rcfg: Config, run: RunDir, out: Path) -> dict:
    e = rcfg.eval
    start = time.perf_counter()
    # Load the data once; the run's split and each low-data fraction are subsets of the full train split.
    full = load_splits(rcfg.data.model_copy(update={"train_fraction": 1.0}), rcfg.storage)
    splits = Splits(_fraction(full, rcfg.data.train_fraction, rcfg.data.split_seed), full.test)
    loaded = load_run_generator(run)
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
        G_f = _fraction_generator(rcfg, run, f)
        log.info("report: augmentation gain with %g of the real data (%d images)", f, len(subset))
        low_data[f"{f:g}"] = augmentation_gain(G_f, subset, full.test, e.report_samples, e.report_seeds, e.classifier_steps)

    figures = {}
    z, y = fixed_inputs(G, rcfg.train.seed)
    (out / "samples_per_class.png").write_bytes(grid_png(generate(G, z, y), ncol=10))
    figures["samples"] = "samples_per_class.png"
    if fid_curve(read_metrics(run), out / "fid_over_steps.png"):
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
        "run": run.uri,
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
    return report


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
