"""`ganray report`: will this synthetic data help? Written as report.md, report.json and PNGs.

The run's own config.yaml decides the data and model; the eval section of the caller's config
decides how much to measure. GANs for the low-data study are ordinary runs (`<run>-frac<f>`)
trained with Ray Train, so an interrupted report resumes them instead of starting over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch.nn as nn

from ganray.config import Config, DataConfig, EvalConfig
from ganray.data import load_splits
from ganray.data.base import ImageDataset, Splits
from ganray.data.registry import carve_train
from ganray.errors import GanrayError
from ganray.fileio import check_cache_dir
from ganray.metrics.classifier import describe_augment
from ganray.metrics.evaluator import build_evaluator, prepare_domain
from ganray.metrics.domain import domain_classifier
from ganray.metrics.recipes import JUDGE, REAL, Budget, Prior, check_recipes, helps, recommend, teacher_in_use
from ganray.metrics.utility import coverage, tstr
from ganray.reporting.figures import accuracy_bars, fid_curve
from ganray.runs.export import load_run_generator
from ganray.storage import is_s3, open_store, upload_dir
from ganray.runs.run_dir import RunDir, read_config, read_metrics
from ganray.models.sampling import fixed_inputs, generate, grid_png

log = logging.getLogger(__name__)


def run_config(run: RunDir, cfg: Config) -> Config:
    """The run's own config with the caller's eval and storage settings (but the run's runs_dir and name)."""
    own = read_config(run)
    if own is None:
        raise GanrayError(f"{run.uri!r} is not a run directory (no config.yaml); pass --run with a trained run")
    storage = cfg.storage.model_copy(update={"runs_dir": own.storage.runs_dir, "run_name": own.storage.run_name})
    return own.model_copy(update={"eval": cfg.eval, "storage": storage})


def _fraction(full_train: ImageDataset, data: DataConfig, fraction: float) -> tuple[ImageDataset, ImageDataset | None]:
    """(train, val) exactly as a run with `data.train_fraction=fraction` trains and validates on."""
    return carve_train(full_train, data.model_copy(update={"train_fraction": fraction}))


def fraction_steps(steps: int, fraction: float, own_fraction: float, mode: str) -> int:
    """GAN steps for `fraction` of the data when the run trained `steps` on `own_fraction`.

    `scaled`: a smaller dataset gets fewer steps, by the square root of the ratio, and never more
    than the run's own; the study costs less. Not the default: at 10% of digits, 800 steps instead
    of 2,400 cut train-on-synthetic from 0.976x to 0.945x of real (README, Low-data measurements).
    """
    if mode == "same" or fraction >= own_fraction:
        return steps
    return max(1, round(steps * math.sqrt(fraction / own_fraction)))


def _fraction_generator(cfg: Config, run: RunDir, fraction: float, own: nn.Module) -> nn.Module:
    """The GAN trained on `fraction` of the real train split: the run's own (`own`), or a sibling run's."""
    if abs(fraction - cfg.data.train_fraction) < 1e-9:
        return own
    from ganray.training.ray_train import train_with_ray  # Ray only when a sibling GAN must be trained

    sibling = run.sibling(f"{run.name}-frac{fraction:g}")
    steps = fraction_steps(cfg.train.steps, fraction, cfg.data.train_fraction, cfg.eval.report_steps)
    sibling_cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"train_fraction": fraction}),
            "train": cfg.train.model_copy(update={"steps": steps}),
            "eval": cfg.eval.model_copy(update={"every": 0}),
            "storage": cfg.storage.model_copy(update={"runs_dir": sibling.parent, "run_name": sibling.name}),
        }
    )
    log.info("low-data study: training a GAN on %g of the real train split for %d steps (%s)", fraction, steps, sibling.uri)
    out = train_with_ray(sibling_cfg)
    return load_run_generator(out.run).G


@dataclass(frozen=True)
class ReportOutput:
    uri: str  # the report directory: a path or an s3:// prefix
    report: dict
    markdown: str


def build_report(cfg: Config, run: "RunDir | str | Path", out_dir: str | None = None) -> ReportOutput:
    """Write the report into `out_dir` (default <run>/report), local or S3; staged locally for S3."""
    check_recipes(cfg.eval.recipes, cfg.eval.recipe_prior)  # before any work: a typo fails in one line, not after the first GAN
    check_cache_dir(cfg.storage.cache_dir)
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
    store = open_store(uri, cfg.storage)
    store.check_writable()  # before any work: an unwritable --out is one line, not a traceback at the end
    if not is_s3(uri):
        yield Path(uri).expanduser()
        return
    with tempfile.TemporaryDirectory(prefix="ganray-report-") as tmp:
        yield Path(tmp)
        upload_dir(store, Path(tmp), last="report.json")


def _build(rcfg: Config, run: RunDir, out: Path) -> dict:
    e = rcfg.eval
    start = time.perf_counter()
    # Load the data once; the run's split and each low-data fraction are carved from the full train split.
    full = load_splits(rcfg.data.model_copy(update={"train_fraction": 1.0, "val_fraction": 0.0}), rcfg.storage)
    own_train, own_val = _fraction(full.train, rcfg.data, rcfg.data.train_fraction)
    splits = Splits(own_train, full.test, own_val)
    loaded = load_run_generator(run)
    G = loaded.G
    if not G.num_classes:
        raise GanrayError("the report needs a class-conditional generator (model.arch=cdcgan): dcgan samples carry no labels")
    if G.num_classes != splits.train.num_classes:
        raise GanrayError(f"the generator has {G.num_classes} classes but the dataset has {splits.train.num_classes}")

    log.info("report: fidelity metrics on %d samples", e.num_samples)
    domain = prepare_domain(rcfg, splits)
    evaluator = build_evaluator(rcfg, splits, domain=domain)
    fidelity = evaluator.evaluate_generator(G, recalibrate=False)
    log.info("report: train-on-synthetic vs train-on-real over seeds %s", e.report_seeds)
    cas = tstr(G, splits.train, splits.test, e.report_samples, e.report_seeds, e.classifier_steps, e.recipe_augment)
    cover = coverage(domain.model, G, e.report_samples, e.report_seeds[0], splits.train.class_names)
    low_data = {}
    budget = Budget.of(e)
    for f in e.report_fractions:
        train_f, val_f = _fraction(full.train, rcfg.data, f)
        if val_f is None:
            raise GanrayError("the report chooses its downstream recipe on validation data; set data.val_fraction above 0")
        G_f = _fraction_generator(rcfg, run, f, G)
        # The judge for soft labels: the domain classifier of the very real images the recipes get (cached by content).
        judge = domain_classifier(train_f, rcfg.storage.cache_dir, e.classifier_steps).model
        log.info("report: choosing a downstream recipe on validation for %s of the real data (%d train, %d val images)",
                 f"{f:.0%}", len(train_f), len(val_f))
        scored = recommend(G_f, train_f, val_f, full.test, e.recipes, budget, judge, Prior.of(e),
                           progress=lambda name: log.debug("report: recipe %s", name))
        log.info("report: %s of the real data: %s", f"{f:.0%}", scored["verdict"])
        low_data[f"{f:g}"] = scored

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
            f"recipe {g['recipe']['name']}": (g["recipe_test"]["mean"], g["recipe_test"]["std"]),
        }
    accuracy_bars(bars, out / "accuracy.png", "classifier accuracy on the real test split")
    figures["accuracy"] = "accuracy.png"

    own = low_data.get(f"{rcfg.data.train_fraction:g}")
    report = {
        "run": run.uri,
        "generator": {k: loaded.info[k] for k in ("arch", "step", "data_fingerprint")},
        "fidelity": {"extractor": e.extractor, "extractor_id": evaluator.extractor.cache_id, "num_samples": e.num_samples,
                     "real_split": e.real_split, "metrics": fidelity},
        "domain_classifier_test_accuracy": domain.test_accuracy,
        "train_on_synthetic": cas,
        "coverage": cover,
        "low_data": low_data,
        "splits": {"train": len(splits.train), "val": len(splits.val) if splits.val is not None else 0, "test": len(splits.test),
                   "decisions": "val", "final_numbers": "test"},
        "seeds": {"classifier": e.report_seeds, "eval": e.seed, "train": rcfg.train.seed, "split": rcfg.data.split_seed},
        "config": rcfg.model_dump(),
        "figures": figures,
        "seconds": time.perf_counter() - start,
    }
    if own is not None:
        report["recipe"] = own["recipe"]
        report["verdict"] = own["verdict"]
        if helps(own):  # no synthetic data to make when real only wins or the gain is noise
            report["generate_command"] = generate_command(run, own, e)
    return report


def generate_command(run: RunDir, scored: dict, e: EvalConfig) -> str:
    """The `ganray generate` call that writes the synthetic data the chosen recipe uses: its
    samples, its teacher's soft labels and its uncertain pick (per shard, from 4x candidates)."""
    recipe = scored["recipe"]
    n = max(scored["n_synthetic"], 1000)
    command = f"ganray generate --run {run.uri} --out <dir or s3://bucket/prefix> --set generate.num_samples={n}"
    teacher = teacher_in_use(recipe["teacher"], recipe["soft"], recipe.get("uncertain_share", 0.0))
    if recipe["soft"]:
        command += " --set generate.soft_labels=true"
    if teacher not in (None, JUDGE):  # generate trains the teacher recipe's classifiers as the report did
        command += f" --set generate.teacher={teacher}"
        default = EvalConfig()
        if e.report_seeds != default.report_seeds:
            command += f" --set eval.report_seeds=[{','.join(map(str, e.report_seeds))}]"
        if e.recipe_steps != default.recipe_steps:
            command += f" --set eval.recipe_steps={e.recipe_steps}"
        if e.recipe_augment != default.recipe_augment:
            command += f" --set eval.recipe_augment={e.recipe_augment}"
        if teacher != REAL and e.report_samples != default.report_samples:  # a student teacher's synthetic cap
            command += f" --set eval.report_samples={e.report_samples}"
    if recipe.get("uncertain_share", 0.0):
        command += f" --set generate.uncertain_share={recipe['uncertain_share']:g}"
    return command


def _size_gate(max_per_class: float | None) -> str:
    return "" if max_per_class is None else f"the fraction has at most {max_per_class:g} images per class (mean), "


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
        f"{cas['n_real']} real training images (with {describe_augment(cas.get('classifier_augment', 'shift'))} "
        "augmentation, eval.recipe_augment), each tested on the real test split (mean ± std over seeds).",
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
        "## Does synthetic data help? Downstream recipes chosen on validation",
        "",
        f"**Verdict: {r['verdict']}.**" if "verdict" in r else "",
        "",
        f"Reproduce the data: `{r['generate_command']}`" if "generate_command" in r else "",
        "",
        f"Splits: {r['splits']['train']} train, {r['splits']['val']} validation, {r['splits']['test']} test images. "
        "Every choice below is made on validation; test is read once, for the final numbers. For each fraction "
        "of the real train split, a GAN is trained on that fraction only, each recipe trains the same classifier "
        f"(with {describe_augment(r['config']['eval'].get('recipe_augment', 'shift'))} augmentation, {r['config']['eval']['recipe_steps']} steps times the recipe's steps_factor, real "
        "only at 1x) on that "
        "fraction plus the GAN's samples. A recipe that beats real on validation by one image is chosen; when none "
        f"does, validation cannot tell them apart and the prior ({r['config']['eval']['recipe_prior'] or 'none: real only'}) "
        f"is chosen if {_size_gate(r['config']['eval'].get('recipe_prior_max_per_class'))}it "
        "is within one image of real and the real-trained judge agrees with at least "
        f"{r['config']['eval']['recipe_min_agreement']:.0%} of the generator's labels (else real only). The choice "
        "is scored against real only on test (mean ± std over seeds); the verdict says \"helps\" only for a gain "
        "above twice its standard error.",
        "",
        "| real fraction | real images | chosen recipe | val accuracy by recipe | real only (test) | recipe (test) | gain (test) |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {float(f):.0%} | {g['n_real']} | {g['recipe']['name']} ({g['chosen_on']}) | "
            + ", ".join(f"{k} {v['mean']:.4f}" for k, v in g["val"].items())
            + f" | {_pm(g['real_only'])} | {_pm(g['recipe_test'])} | {_pm(g['gain'])} |"
            for f, g in r["low_data"].items()
        ],
        "",
        "## Figures",
        "",
        *[f"![{k}]({v})" for k, v in r["figures"].items()],
        "",
    ]
    return "\n".join(lines)
