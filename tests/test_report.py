"""Synthetic-data utility: train-on-synthetic, coverage, low-data gains, and the report/evaluate commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image

from conftest import tiny_config
from ganray.cli import main
from ganray.data.base import to_unit
from ganray.metrics.recipes import helps
from ganray.metrics.utility import coverage, tstr

STEPS = 60  # classifier steps: enough to separate good data from noise, quick on 2 CPUs


class ReplayGenerator(nn.Module):
    """A perfect 'generator': returns real images of the requested class."""

    def __init__(self, data) -> None:
        super().__init__()
        self.z_dim, self.num_classes = 4, data.num_classes
        self.by_class = [data.images[data.labels == c] for c in range(data.num_classes)]
        self.anchor = nn.Parameter(torch.zeros(1))  # `generate` asks for a device

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        idx = (z[:, 0].abs() * 1e4).long()
        return torch.stack([to_unit(self.by_class[c][i % len(self.by_class[c])]) for c, i in zip(y.tolist(), idx.tolist())])


class NoiseGenerator(ReplayGenerator):
    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.rand(len(z), 1, 28, 28) * 2 - 1


def test_train_on_synthetic_separates_real_looking_data_from_noise(digits):
    good = tstr(ReplayGenerator(digits.train), digits.train, digits.test, 600, [0], STEPS)
    bad = tstr(NoiseGenerator(digits.train), digits.train, digits.test, 600, [0], STEPS)
    assert good["real"] == bad["real"]  # same classifier, same seed, same real data
    assert good["real"]["mean"] > 0.9
    assert good["ratio"] > 0.9 and bad["ratio"] < 0.35
    assert good["ratio"] == pytest.approx(good["synthetic"]["mean"] / good["real"]["mean"])


def test_train_on_synthetic_trains_both_arms_with_the_named_augmentation(digits):
    """tstr's two arms are the classifier `ClassifierConfig.classic(augment)` trains: real data and the
    draw of seed 10,000 + s; shift (the default) is the classifier train-on-synthetic always had."""
    from ganray.metrics.classifier import ClassifierConfig, accuracy, train_classifier
    from ganray.metrics.utility import synthetic_dataset

    G, test = ReplayGenerator(digits.train), digits.test
    fake = synthetic_dataset(G, 300, 10_000, digits.train.class_names)
    for augment, cfg in (("shift", ClassifierConfig(steps=30, seed=0)), ("affine", ClassifierConfig.classic("affine", steps=30, seed=0))):
        r = tstr(G, digits.train, test, 300, [0], 30, augment)
        real = accuracy(train_classifier(digits.train.images, digits.train.labels, 10, cfg), test.images, test.labels)
        synthetic = accuracy(train_classifier(fake.images, fake.labels, 10, cfg), test.images, test.labels)
        assert (r["real"]["values"], r["synthetic"]["values"], r["classifier_augment"]) == ([real], [synthetic], augment)


def test_coverage_per_class(digits):
    from ganray.metrics.domain import domain_classifier
    from conftest import CACHE_DIR

    judge = domain_classifier(digits.train, CACHE_DIR, steps=150).model
    good = coverage(judge, ReplayGenerator(digits.train), 500, 0, digits.train.class_names)
    bad = coverage(judge, NoiseGenerator(digits.train), 500, 0, digits.train.class_names)
    assert set(good["per_class"]) == set(digits.train.class_names)
    assert min(good["per_class"].values()) > 0.9 and good["overall"] > 0.95
    assert bad["overall"] < 0.3


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from ganray.training.local import train_local

    tmp = tmp_path_factory.mktemp("report")
    cfg = tiny_config(tmp, "train.steps=40", "train.checkpoint_every=20", "train.log_every=20", "eval.every=20")
    train_local(cfg, tmp / "run")
    return tmp, cfg


def test_report_writes_markdown_json_and_figures(ray_local, small_run, caplog):
    from ganray.reporting.report import build_report

    tmp, _ = small_run
    cfg = tiny_config(
        tmp, "eval.report_fractions=[0.5, 1.0]", "eval.report_seeds=[0, 1]", "eval.report_samples=200",
        "eval.classifier_steps=30", "eval.recipe_steps=40", "eval.num_samples=100", "eval.recipes=[mix-50-ens-hard]",
        "eval.report_steps=scaled",
    )
    with caplog.at_level("INFO", logger="ganray"):
        built = build_report(cfg, tmp / "run")
    # Fractions read as percentages ("with 1 of the real data" was the old line).
    assert "report: 50% of the real data: " in caplog.text and "report: 100% of the real data: " in caplog.text
    out = Path(built.uri)
    assert out == tmp / "run" / "report"
    report = json.loads((out / "report.json").read_text())
    assert report == built.report
    cas = report["train_on_synthetic"]
    assert len(cas["real"]["values"]) == 2 and cas["n_synthetic"] == 200
    assert cas["classifier_augment"] == "affine"  # eval.recipe_augment's default: every report classifier
    assert cas["ratio"] == pytest.approx(cas["synthetic"]["mean"] / cas["real"]["mean"])
    assert set(report["low_data"]) == {"0.5", "1"}
    assert report["low_data"]["0.5"]["n_real"] < report["low_data"]["1"]["n_real"] == 1151  # 1,438 less validation
    assert report["splits"] == {"train": 1151, "val": 287, "test": 359, "decisions": "val", "final_numbers": "test"}
    prior = report["config"]["eval"]["recipe_prior"]
    assert prior == "mix-50-ns"  # the default: noisy student, taught by the named recipe's classifiers
    for g in report["low_data"].values():
        # A recipe must beat real by one validation image to be chosen over it; on a tie the prior
        # is, if the fraction has at most eval.recipe_prior_max_per_class images per class (57.5 at
        # 50%: yes; 115 at 100%: no; above the gate it is not even trained), it is within one image
        # of real and its labels pass the judge.
        small = g["n_real"] / 10 <= report["config"]["eval"]["recipe_prior_max_per_class"]
        assert small == (g is report["low_data"]["0.5"])
        assert set(g["val"]) == {"real", "mix-50-ens-hard", *([prior] if small else [])}  # real is always compared
        assert g["classifier_steps"] == 40  # every recipe at eval.recipe_steps (x its steps_factor), real only at 1x
        val, margin = {n: v["mean"] for n, v in g["val"].items()}, 1 / report["splits"]["val"]
        best = max(val, key=lambda n: (val[n], n == "real"))
        if val[best] - val["real"] >= margin:
            assert (g["recipe"]["name"], g["chosen_on"], g["label_agreement"]) == (best, "val", None)
        elif not small:
            assert (g["recipe"]["name"], g["chosen_on"], g["label_agreement"]) == ("real", "size", None)
        elif val[prior] > val["real"] - margin and g["label_agreement"] >= 0.9:
            assert (g["recipe"]["name"], g["chosen_on"]) == (prior, "prior")
        else:
            assert (g["recipe"]["name"], g["chosen_on"]) == ("real", "val")
        assert g["gain"]["mean"] == pytest.approx(g["recipe_test"]["mean"] - g["real_only"]["mean"])
    assert report["recipe"] == report["low_data"]["1"]["recipe"] and report["verdict"] == report["low_data"]["1"]["verdict"]
    if not helps(report["low_data"]["1"]):  # nothing to generate when real only wins or the gain is noise
        assert "generate_command" not in report
    else:
        assert report["generate_command"].startswith(f"ganray generate --run {tmp / 'run'}")
        # The command writes the recipe's data: its teacher's soft labels (generate trains the real-only
        # teacher with the report's seeds and steps) and its uncertain pick.
        recipe, command = report["recipe"], report["generate_command"]
        assert ("generate.soft_labels=true" in command) == recipe["soft"]
        taught = recipe["teacher"] != "judge" and (recipe["soft"] or recipe["uncertain_share"] > 0)
        assert (f"generate.teacher={recipe['teacher']}" in command) == taught
        if taught:
            assert "eval.report_seeds=[0,1]" in command
        assert (f"generate.uncertain_share={recipe['uncertain_share']:g}" in command) == (recipe["uncertain_share"] > 0)
    assert 0 <= report["coverage"]["overall"] <= 1
    assert report["fidelity"]["metrics"]["fid_domain"] > 0
    assert report["seeds"]["classifier"] == [0, 1] and report["config"]["eval"]["report_samples"] == 200
    # The 50% GAN is a sibling run trained with Ray Train (so a rerun would resume it), for
    # sqrt(0.5) of the run's 40 steps.
    assert json.loads((tmp / "run-frac0.5" / "generator" / "generator.json").read_text())["step"] == 28
    for name in report["figures"].values():
        with Image.open(out / name) as im:
            assert im.size[0] > 100
    assert set(report["figures"]) == {"samples", "fid_curve", "accuracy"}
    md = (out / "report.md").read_text()
    assert "Train on synthetic, test on real" in md and "| 50% |" in md and f"{cas['ratio']:.3f}x" in md
    assert f"**Verdict: {report['verdict']}.**" in md and "40 steps times the recipe's steps_factor" in md
    assert "(with random shift (2 px), rotation (±10°) and zoom (±10%) augmentation," in md  # eval.recipe_augment's default, said
    assert all(g["classifier_augment"] == "affine" for g in report["low_data"].values())
    assert "real training images (with random shift (2 px), rotation (±10°) and zoom (±10%) augmentation, eval.recipe_augment)" in md


@pytest.mark.parametrize("name, e, flags, absent", [
    ("mix-50-ens-hard", {}, ["generate.num_samples=1150", "generate.soft_labels=true", "generate.teacher=real",
                               "generate.uncertain_share=0.5"], ["eval."]),
    ("mix-50-ens-hard", {"recipe_steps": 300}, ["generate.teacher=real", "eval.recipe_steps=300"], ["recipe_augment"]),
    ("mix-50-ens-hard", {"recipe_augment": "shift"}, ["generate.teacher=real", "eval.recipe_augment=shift"], ["recipe_steps"]),
    ("mix-50-ns", {}, ["generate.soft_labels=true", "generate.teacher=mix-50-ens-hard", "generate.uncertain_share=0.5"], ["eval."]),
    ("mix-50-soft", {}, ["generate.soft_labels=true"], ["generate.teacher", "uncertain"]),
    ("mix-50", {"recipe_augment": "shift"}, ["generate.num_samples=1150"], ["soft_labels", "generate.teacher", "uncertain", "eval."]),
])
def test_the_generate_command_writes_the_recipes_data(name, e, flags, absent):
    # Everything the recipe trains on comes from the one command: samples, teacher (trained with the report's
    # steps and augmentation), uncertain pick; a hard-label mix trains no teacher, so it names neither.
    from dataclasses import asdict

    from ganray.config import EvalConfig
    from ganray.metrics.recipes import RECIPES
    from ganray.reporting.report import generate_command
    from ganray.runs.run_dir import RunDir

    scored = {"recipe": asdict(RECIPES[name]), "n_synthetic": 1150}  # as report.json holds it
    command = generate_command(RunDir.at("runs/x"), scored, EvalConfig(**e))
    assert command.startswith("ganray generate --run ") and "#" not in command
    assert all(f in command for f in flags) and not any(a in command for a in absent)


def test_evaluate_command_on_a_run_and_an_exported_generator(capsys, small_run, tmp_path):
    tmp, _ = small_run
    common = ["--set", f"storage.cache_dir={tiny_config(tmp).storage.cache_dir}", "--set", "eval.num_samples=100",
              "--set", "eval.cas_samples=200", "--set", "eval.cas_steps=20"]
    assert main(["evaluate", "--run", str(tmp / "run"), *common]) == 0
    result = json.loads((tmp / "run" / "evaluation.json").read_text())
    from ganray.runs.run_dir import read_metrics
    from ganray.runs.selection import best_step

    # `--run` means the run's selected generator: the evaluated step with the best cas_val.
    selected = best_step(read_metrics(tmp / "run"), "cas_val")
    assert result["source"].startswith("run:") and result["generator_step"] == selected[0]
    assert result["metrics"]["fid_domain"] > 0 and result["num_samples"] == 100
    out = tmp_path / "e.json"
    assert main(["evaluate", "--generator", str(tmp / "run" / "generator"), "--out", str(out), *common]) == 0
    again = json.loads(out.read_text())
    # Same weights (the export is the last checkpoint's EMA G), same seed: same numbers.
    assert again["metrics"]["fid_domain"] == pytest.approx(result["metrics"]["fid_domain"], rel=1e-6)
    assert "fid_domain" in capsys.readouterr().out
    # Another domain classifier is another feature space: the result says so, whatever the metric names.
    other = tmp_path / "other.json"
    assert main(["evaluate", "--generator", str(tmp / "run" / "generator"), "--out", str(other), *common,
                 "--set", "eval.classifier_steps=20"]) == 0
    ids = {result["extractor_id"], again["extractor_id"], json.loads(other.read_text())["extractor_id"]}
    assert len(ids) == 2 and result["extractor_id"] == again["extractor_id"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--generator", "/nonexistent"], "has no generator.json"),
        (["evaluate"], "no run given; pass --run DIR or set storage.run_name"),
        (["report", "--run", "/nonexistent"], "is not a run directory"),
        (["evaluate", "--set", "eval.extractor=inception", "--set", "eval.inception_weights=/no/such.pth", "--run", "x"], "does not exist; give a local copy"),
        (["evaluate", "--set", "eval.metrics=[fid, lpips]"], "unknown metric 'lpips'"),
    ],
)
def test_evaluate_and_report_bad_input(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "command, out, message",
    [
        ("evaluate", "{tmp}", "is a directory; give a file path"),
        ("evaluate", "{tmp}/afile/e.json", "cannot write to local directory"),
        ("evaluate", "/proc/x/e.json", "cannot write to local directory '/proc/x'"),
        ("report", "{tmp}/afile/report", "cannot write to local directory"),
        ("evaluate", "cache:{tmp}/afile/cache", "cannot write to storage.cache_dir"),
        ("report", "cache:{tmp}/afile/cache", "cannot write to storage.cache_dir"),
    ],
)
def test_an_unwritable_output_fails_before_the_work(capsys, caplog, small_run, tmp_path, command, out, message):
    """One line, before any classifier trains or metric runs, and nothing written."""
    tmp, _ = small_run
    (tmp_path / "afile").write_text("a file, not a directory")
    out = out.format(tmp=tmp_path)
    cache = out.removeprefix("cache:") if out.startswith("cache:") else str(tmp_path / "cache")
    target = [] if out.startswith("cache:") else ["--out", out]
    before = sorted(p.name for p in (tmp / "run").iterdir())
    with caplog.at_level("INFO"):
        code = main([command, "--run", str(tmp / "run"), *target, "--set", f"storage.cache_dir={cache}",
                     "--set", "eval.num_samples=100", "--set", "eval.report_fractions=[1.0]", "--set", "eval.report_seeds=[0]"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert "training the domain classifier" not in caplog.text and "fid" not in caplog.text.lower()
    assert sorted(p.name for p in (tmp / "run").iterdir()) == before
    assert {p.name for p in tmp_path.iterdir()} - {"cache"} == {"afile"}  # the (empty) cache dir may exist


def _write_shards(root, data, per_shard: int = 150) -> None:
    import io
    import tarfile

    root.mkdir(parents=True, exist_ok=True)
    for s, start in enumerate(range(0, len(data), per_shard)):
        with tarfile.open(root / f"shard-{s:06d}.tar", "w") as tar:
            for i in range(start, min(start + per_shard, len(data))):
                key = f"{s:06d}_{i:06d}"
                buf = io.BytesIO()
                Image.fromarray(data.images[i, 0].numpy(), mode="L").save(buf, format="PNG")
                label = int(data.labels[i])
                members = {"png": buf.getvalue(), "cls": str(label).encode(), "json": json.dumps({"class_name": data.class_names[label]}).encode()}
                for ext, payload in members.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))


def test_evaluate_command_on_shards(capsys, digits, tmp_path):
    from ganray.data.wds import load_shards

    _write_shards(tmp_path / "shards", digits.test)
    back = load_shards(tmp_path / "shards")
    assert torch.equal(back.images, digits.test.images) and torch.equal(back.labels, digits.test.labels)
    assert back.class_names == digits.test.class_names
    cache = tiny_config(tmp_path).storage.cache_dir
    out = tmp_path / "e.json"
    assert main(["evaluate", "--shards", str(tmp_path / "shards"), "--out", str(out), "--set", f"storage.cache_dir={cache}"]) == 0
    result = json.loads(out.read_text())
    assert result["num_samples"] == len(digits.test) and result["source"].startswith("shards:")
    assert 0 < result["metrics"]["fid_domain"] < 50  # real test digits against real train digits
    (tmp_path / "shards" / "shard-000001.tar").write_bytes(b"not a tar")
    capsys.readouterr()
    assert main(["evaluate", "--shards", str(tmp_path / "shards"), "--set", f"storage.cache_dir={cache}"]) == 2
    assert "shard-000001.tar' is not a readable tar" in capsys.readouterr().err


def test_report_fractions_are_the_splits_training_uses(digits):
    from ganray.config import DataConfig
    from ganray.data import load_splits
    from ganray.reporting.report import _fraction

    full = load_splits(DataConfig(val_fraction=0.0))
    for f in (0.1, 0.5, 1.0):
        run_splits = load_splits(DataConfig(train_fraction=f))
        train, val = _fraction(full.train, DataConfig(), f)
        assert torch.equal(train.images, run_splits.train.images) and torch.equal(val.images, run_splits.val.images)


def test_low_data_gans_train_fewer_steps_on_fewer_images():
    from ganray.reporting.report import fraction_steps

    assert fraction_steps(2400, 0.1, 1.0, "scaled") == 759  # sqrt(0.1) of the run's steps
    assert fraction_steps(2400, 0.25, 1.0, "scaled") == 1200
    assert fraction_steps(2400, 1.0, 1.0, "scaled") == 2400
    assert fraction_steps(2400, 1.0, 0.25, "scaled") == 2400  # never longer than the run itself
    assert fraction_steps(2400, 0.1, 1.0, "same") == 2400
