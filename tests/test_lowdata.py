"""Low-data tools: the validation split, LeCam, adaptive augmentation, and downstream recipes chosen on validation."""

from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch

from conftest import tiny_config
from ganray.cli import main
from ganray.config import DataConfig
from ganray.data import load_splits
from ganray.data.base import ImageDataset
from ganray.data.registry import carve_validation
from ganray.errors import GanrayError
from ganray.metrics.classifier import images_ahead
from ganray.metrics.recipes import REAL, Budget, Prior, by_validation, check_recipes, helps, score_choice, select_recipe, verdict
from ganray.metrics.utility import Repeated
from ganray.training.diffaugment import diff_augment
from ganray.training.regularizers import LowDataRegularizer, lecam_penalty
from test_report import STEPS, NoiseGenerator, ReplayGenerator


def _indexed(n_per_class: int, classes: int = 3) -> ImageDataset:
    """Images whose first two pixels spell their index, so splits can be compared by content."""
    n = n_per_class * classes
    images = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = torch.arange(n) // 256, torch.arange(n) % 256
    return ImageDataset(images, torch.arange(n) % classes, tuple(f"c{i}" for i in range(classes)))


def _ids(ds: ImageDataset) -> set[int]:
    return set((ds.images[:, 0, 0, 0].long() * 256 + ds.images[:, 0, 0, 1].long()).tolist())


def test_validation_is_carved_from_train_stratified_and_never_overlaps_test(digits):
    data = _indexed(20)
    train, val = carve_validation(data, 0.25, seed=0)
    assert _ids(train).isdisjoint(_ids(val)) and _ids(train) | _ids(val) == _ids(data)
    assert torch.bincount(val.labels).tolist() == [5, 5, 5]
    assert _ids(carve_validation(data, 0.25, seed=0)[1]) == _ids(val) != _ids(carve_validation(data, 0.25, seed=1)[1])
    # The default digits splits: val comes out of the 1,438 train images; test is untouched.
    assert digits.val is not None and (len(digits.train), len(digits.val), len(digits.test)) == (1151, 287, 359)
    off = load_splits(DataConfig(val_fraction=0.0))
    assert off.val is None and len(off.train) == 1438 and torch.equal(off.test.images, digits.test.images)
    rows = {bytes(x.numpy()) for x in off.train.images}
    assert {bytes(x.numpy()) for x in digits.val.images} <= rows and {bytes(x.numpy()) for x in digits.train.images} <= rows


@pytest.mark.parametrize("fraction, side", [(0.01, "no validation image"), (0.99, "no training image")])
def test_a_val_fraction_that_empties_a_class_is_one_line(fraction, side):
    with pytest.raises(GanrayError, match=side) as e:
        carve_validation(_indexed(20), fraction, seed=0)
    assert "data.val_fraction" in str(e.value) and "\n" not in str(e.value)


def test_train_with_a_val_fraction_that_empties_a_class_fails_before_ray(capsys, tmp_path):
    assert main(["train", "--set", f"storage.runs_dir={tmp_path}", "--set", "data.val_fraction=0.001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "leaves class '0'" in err[0] and "no validation image" in err[0]
    assert not any(tmp_path.iterdir())  # nothing written


def test_lecam_penalty_on_known_logits():
    real, fake = torch.tensor([2.0, -3.0]), torch.tensor([-2.0, 4.0])
    # relu(real - anchor_fake)^2: (2+1)^2, 0 -> 4.5; relu(anchor_real - fake)^2: (1+2)^2, 0 -> 4.5
    assert float(lecam_penalty(real, fake, torch.tensor(1.0), torch.tensor(-1.0))) == pytest.approx(9.0)
    reg = LowDataRegularizer(torch.device("cpu"), lecam=0.5)
    reg.update(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -3.0]))  # first update copies: anchors (2, -2)
    assert reg.anchors.tolist() == [2.0, -2.0]
    reg.update(torch.tensor([4.0]), torch.tensor([-4.0]))
    assert reg.anchors.tolist() == pytest.approx([2.02, -2.02])
    assert float(reg.penalty(torch.tensor([0.0]), torch.tensor([0.0]))) == pytest.approx(0.5 * (2.02**2 + 2.02**2))


def test_adaptive_probability_rises_when_d_is_sure_of_every_real_image_and_falls_otherwise():
    reg = LowDataRegularizer(torch.device("cpu"), ada_target=0.6, ada_interval=4, ada_kimg=1.0, batch_size=64)
    assert reg.adaptive and float(reg.p) == 0.0
    for _ in range(8):  # two adjustments of 64*4/1000 each
        reg.update(torch.ones(64), -torch.ones(64))
    assert float(reg.p) == pytest.approx(0.512)
    for _ in range(4):  # r_t = 0 < 0.6: one step down
        reg.update(torch.tensor([1.0, -1.0]), -torch.ones(2))
    assert float(reg.p) == pytest.approx(0.256)
    again = LowDataRegularizer(torch.device("cpu"), ada_target=0.6, ada_interval=4, ada_kimg=1.0, batch_size=64)
    again.load_state_dict(reg.state_dict())
    assert float(again.p) == pytest.approx(0.256) and again.anchors.tolist() == reg.anchors.tolist()


def test_diffaugment_probability_gates_each_image():
    x = torch.randn(64, 1, 8, 8)
    torch.manual_seed(0)
    full = diff_augment(x, "translation")
    torch.manual_seed(0)
    assert torch.equal(diff_augment(x, "translation", torch.tensor(1.0)), full)
    assert torch.equal(diff_augment(x, "translation", torch.tensor(0.0)), x)
    half = diff_augment(x, "translation", torch.tensor(0.5))
    changed = (half != x).flatten(1).any(1).float().mean()
    assert 0.2 < float(changed) < 0.8


def test_unset_diffaugment_is_translation_up_to_the_priors_size_gate_and_none_above(tmp_path, monkeypatch):
    from ganray.training import loop
    from ganray.training.diffaugment import policy_for

    assert policy_for(None, 100, 100.0) == "translation" and policy_for(None, 100.1, 100.0) == ""
    assert policy_for(None, 10_000, None) == "translation"  # no size gate: always
    assert policy_for("", 5, 100.0) == "" and policy_for("cutout", 500, 100.0) == "cutout"  # a set value is kept
    cfg = tiny_config(tmp_path, "train.steps=2")
    train = load_splits(cfg.data).train  # 1,151 images: 115 per class
    seen: list[str] = []
    applied = loop.diff_augment
    monkeypatch.setattr(loop, "diff_augment", lambda x, policy, p=None: seen.append(policy) or applied(x, policy, p))
    loop.train_gan(cfg, train, loop.NullHooks())
    loop.train_gan(cfg, train.subset(torch.arange(0, len(train), 10)), loop.NullHooks())  # 11.5 per class
    assert seen == [""] * 4 + ["translation"] * 4  # what D saw: 2 steps x (D's update, G's update) per run
    wider = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"recipe_prior_max_per_class": 200.0})})
    assert loop.with_augmentation(wider, train).loss.diffaugment == "translation" and cfg.loss.diffaugment is None


def test_lecam_and_adaptive_state_resume_exactly(tmp_path):
    from ganray.training.loop import NullHooks, train_gan

    cfg = tiny_config(tmp_path, "train.steps=12", "loss.lecam=0.3", "loss.ada_target=0.6", "loss.ada_kimg=0.5")
    data = load_splits(cfg.data).train.subset(torch.arange(200))
    straight = train_gan(cfg, data, NullHooks())
    half = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 6})})
    first = train_gan(half, data, NullHooks())
    resumed = train_gan(cfg, data, NullHooks(), resume=first.state_dict())
    assert float(straight.regularizer.p) > 0
    assert torch.equal(straight.regularizer.p, resumed.regularizer.p)
    assert torch.equal(straight.regularizer.anchors, resumed.regularizer.anchors)
    for a, b in zip(straight.G.parameters(), resumed.G.parameters()):
        assert torch.equal(a, b)


@pytest.fixture(scope="module")
def low(digits):
    """A 5% real subset with the digits validation split: room for synthetic data to help."""
    return digits.train.subset(torch.arange(0, len(digits.train), 20)), digits.val


def test_verdict_helps_for_a_replaying_generator_and_says_real_only_for_noise(digits, low):
    small, val = low
    names, budget = ["real", "mix-50"], Budget([0, 1], STEPS, 600)
    good = select_recipe(ReplayGenerator(digits.train), small, val, names, budget)
    assert good.recipe.name == "mix-50" and good.val["mix-50"]["mean"] > good.val["real"]["mean"]
    scored = score_choice(good, digits.test)
    assert scored["gain"]["mean"] == pytest.approx(scored["recipe_test"]["mean"] - scored["real_only"]["mean"])
    assert scored["gain"]["mean"] > 0.02 and verdict(scored).startswith("synthetic data helps here: +")
    bad = select_recipe(NoiseGenerator(digits.train), small, val, names, budget)
    assert bad.recipe.name == REAL
    scored = score_choice(bad, digits.test)
    assert scored["gain"]["mean"] == 0.0 and "train on real only" in verdict(scored)


def test_selection_reads_no_test_label(digits, low):
    """Choosing on validation: permuting every test label changes test scores, never the choice."""
    small, val = low
    G = ReplayGenerator(digits.train)
    budget = Budget([0], STEPS, 600)
    choice = select_recipe(G, small, val, ["real", "mix-75"], budget)
    corrupted = ImageDataset(digits.test.images, digits.test.labels[torch.randperm(len(digits.test))], digits.test.class_names)
    honest = score_choice(choice, digits.test)
    lied = score_choice(choice, corrupted)
    assert honest["recipe"] == lied["recipe"] and honest["val"] == lied["val"]
    assert lied["real_only"]["mean"] < 0.3 < honest["real_only"]["mean"]


@pytest.mark.parametrize("n", [30, 72, 105, 210])
def test_one_validation_image_is_counted_exactly_whatever_the_float_error_of_the_means(n):
    """A recipe one image ahead of real (each seed's k/n, averaged) is chosen; the prior one image behind is not."""
    def mean(right: int) -> float:  # three seeds' accuracies, averaged as select_recipe does
        return statistics.fmean([right / n] * 3)

    assert 1.0 - mean(n - 1) < 1 / n  # the float error that used to make "one image ahead" miss
    assert images_ahead(mean(n), mean(n - 1), n) == 1.0 and images_ahead(mean(n - 1), mean(n), n) == -1.0
    assert images_ahead((n + n + n - 1) / (3 * n), mean(n), n) == round(-1 / 3, 9)
    ahead = {REAL: mean(n - 1), "mix-50": mean(n), "mix-50-ens": mean(n - 1)}
    assert by_validation(ahead, n, "mix-50-ens") == ("mix-50", "val")
    assert by_validation({REAL: mean(n), "mix-50-ens": mean(n - 1)}, n, "mix-50-ens") == (REAL, "val")  # one behind: not within
    assert by_validation({REAL: mean(n), "mix-50-ens": (3 * n - 2) / (3 * n)}, n, "mix-50-ens") == ("mix-50-ens", "prior")
    assert by_validation({REAL: mean(n), "mix-50": mean(n)}, n, None) == (REAL, "val")  # ties go to real


def test_each_recipes_classifiers_are_trained_once_and_the_ensemble_teacher_is_the_real_only_ones(digits, low, monkeypatch):
    """Validation and test score the same classifiers; mix-50-ens labels samples with the real-only classifiers' mean."""
    from ganray.metrics import recipes
    from ganray.metrics.classifier import predict
    from ganray.models.sampling import sample_balanced

    small, val = low
    fitted = []
    real_fit = recipes.fit_recipe
    monkeypatch.setattr(recipes, "fit_recipe", lambda recipe, *a, **k: fitted.append(recipe.name) or real_fit(recipe, *a, **k))
    G, budget = ReplayGenerator(digits.train), Budget([0, 1], 30, 300)
    choice = select_recipe(G, small, val, ["real", "mix-50-ens"], budget)
    scored = score_choice(choice, digits.test)
    assert sorted(fitted) == ["mix-50-ens"] * 2 + ["real"] * 2  # 2 recipes x 2 seeds, none trained again for test
    assert scored["real_only"]["values"] == [recipes.accuracy(m, digits.test.images, digits.test.labels) for m in choice.fits.models("real")]
    x, y = sample_balanced(G, 64, 0)
    teachers = choice.fits.models("real")
    soft = recipes.synthetic_targets(recipes.RECIPES["mix-50-ens"], x, y, None, teachers)
    assert torch.allclose(soft, (predict(teachers[0], x) + predict(teachers[1], x)) / 2)
    assert torch.allclose(soft.sum(1), torch.ones(64)) and not torch.allclose(soft, predict(teachers[0], x))
    assert torch.equal(recipes.synthetic_targets(recipes.RECIPES["mix-50"], x, y, None, None), y)
    with pytest.raises(GanrayError, match="'mix-50-ens' needs the real-only classifiers"):
        recipes.synthetic_targets(recipes.RECIPES["mix-50-ens"], x, y, None, None)
    # mix-50-ens-hard: half the draw at random (the plain draw's first half), half the teacher's
    # least certain samples of a 4x pool, class-balanced; trained for twice the steps.
    hard = recipes.RECIPES["mix-50-ens-hard"]
    xh, yh = recipes.draw_synthetic(hard, G, 100, 7, teachers=teachers)
    assert torch.equal(xh[:50], sample_balanced(G, 50, 7)[0]) and torch.bincount(yh).tolist() == [10] * 10
    pool, _ = sample_balanced(G, 400, 7 + recipes.POOL_SEED_OFFSET)
    entropy = lambda z: -(lambda p: (p * p.clamp_min(1e-8).log()).sum(1))(recipes.teacher_probabilities(hard, None, teachers)(z))
    assert entropy(xh[50:]).mean() > entropy(pool).mean() + 0.05
    xa, ya = recipes.draw_synthetic(dataclasses.replace(hard, uncertain_share=1.0), G, 100, 7, teachers=teachers)
    assert xa.shape == (100, *xh.shape[1:]) and torch.bincount(ya).tolist() == [10] * 10  # all picked, none at random
    assert entropy(pool).mean() + 0.05 < entropy(xa).mean() <= entropy(xh[50:]).mean() + 1e-6
    steps = []
    monkeypatch.setattr(recipes, "train_mixed", lambda *a: steps.append(a[4].steps))
    recipes.fit_recipe(hard, G, small, 0, Budget([0], 5, 100), teachers=teachers)
    assert steps == [10]
    with pytest.raises(GanrayError, match="'mix-50-ens-hard' needs the real-only classifiers"):
        recipes.draw_synthetic(hard, G, 100, 7)


def test_affine_augmentation_rotates_and_zooms_a_little_and_fills_with_background():
    from ganray.metrics.classifier import random_affine

    bar = -torch.ones(64, 1, 28, 28)
    bar[:, :, 4:24, 12:16] = 1.0  # a vertical stroke, 20 x 4 pixels
    out = random_affine(bar, 10.0, 0.1, torch.Generator().manual_seed(1))
    assert torch.equal(out, random_affine(bar, 10.0, 0.1, torch.Generator().manual_seed(1)))  # seeded
    assert (out - bar).abs().flatten(1).amax(1).min() > 0.05  # every image moved (a small angle moves the edges a little)
    ink = out > 0
    rows, cols = torch.arange(28.0)[:, None].expand(28, 28), torch.arange(28.0)[None].expand(28, 28)
    spread = lambda grid: torch.stack([grid[i[0]].std() for i in ink])
    assert (spread(rows) > 2 * spread(cols)).all()  # still upright: within +-10 degrees, not turned on its side
    area = ink.flatten(1).sum(1) / 80
    assert 0.7 < area.min() and area.max() < 1.35  # zoom within 0.9-1.1 scales the area by 0.81-1.21
    blank = -torch.ones(4, 1, 28, 28)  # the corners a rotation uncovers are background (-1), not grey (0)
    assert torch.allclose(random_affine(blank, 10.0, 0.1, torch.Generator().manual_seed(0)), blank, atol=1e-6)
    gen, untouched = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert random_affine(bar, 0.0, 0.0, gen) is bar and torch.equal(gen.get_state(), untouched.get_state())


def test_the_recipe_augmentation_trains_every_classifier_and_shift_keeps_the_old_stream(low):
    """eval.recipe_augment reaches real only's classifier too (a comparison on equal terms); "shift" is the
    classifier it always was, so figures measured before the option reproduce."""
    import typing

    from ganray.config import EvalConfig
    from ganray.metrics.classifier import AUGMENTATIONS, ClassifierConfig, train_mixed
    from ganray.metrics.recipes import RECIPES, fit_recipe

    assert set(AUGMENTATIONS) == set(typing.get_args(EvalConfig.model_fields["recipe_augment"].annotation))
    assert Budget.of(EvalConfig(recipe_augment="affine")).augment == "affine"
    assert ClassifierConfig.classic("shift", steps=5, seed=0) == ClassifierConfig(steps=5, seed=0)
    small, _ = low
    weights = lambda m: torch.cat([p.flatten() for p in m.parameters()])
    fit = {a: weights(fit_recipe(RECIPES[REAL], None, small, 0, Budget([0], 5, 100, a))) for a in AUGMENTATIONS}
    plain = weights(train_mixed(small.images, small.labels, small.num_classes, None, ClassifierConfig(steps=5, seed=0)))
    assert torch.equal(fit["shift"], plain) and not torch.allclose(fit["affine"], plain)


def test_the_uncertain_pick_takes_each_classs_highest_entropy_samples():
    from ganray.metrics.recipes import most_uncertain

    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55], [0.0, 1.0], [0.6, 0.4]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 0])
    assert most_uncertain(probs, labels, 4).tolist() == [1, 6, 4, 3]  # class 0's two most uncertain, then class 1's
    assert most_uncertain(probs, labels, 3).tolist() == [1, 6, 4]  # 3 over 2 classes: 2 + 1, as balanced_labels deals them
    with pytest.raises(GanrayError, match="needs 4 samples of class 1 and the pool has 3"):
        most_uncertain(probs, labels, 8)
    assert most_uncertain(probs, labels, [1, 2]).tolist() == [1, 4, 3]  # counts per class, as a shard of any mix asks


def test_on_a_validation_tie_the_prior_recipe_is_chosen_only_for_correctly_labelled_samples(digits, low):
    """Three validation images cannot tell recipes apart; then the prior decides, gated by the judge's agreement."""
    from conftest import CACHE_DIR
    from ganray.metrics.domain import domain_classifier

    small, val = low
    tiny_val = val.subset(torch.arange(3))
    judge = domain_classifier(small, CACHE_DIR, steps=150).model
    budget, prior = Budget([0], 30, 300), Prior("mix-50", min_agreement=0.9, samples=500)
    good = select_recipe(ReplayGenerator(digits.train), small, tiny_val, ["real"], budget, judge, prior=prior)
    assert set(good.val) == {"real", "mix-50"} and good.val["mix-50"]["mean"] == good.val["real"]["mean"]
    assert good.recipe.name == "mix-50" and good.basis == "prior" and good.agreement > 0.9
    noise = select_recipe(NoiseGenerator(digits.train), small, tiny_val, ["real"], budget, judge, prior=prior)
    assert noise.recipe.name == REAL and noise.basis == "val" and noise.agreement < 0.3
    # The same tie on a training set above the prior's size gate: real, and the prior is not even trained.
    per_class = len(small) / small.num_classes
    assert Prior("mix-50", max_per_class=per_class).applies(small) == "mix-50"
    big = select_recipe(ReplayGenerator(digits.train), small, tiny_val, ["real"], budget, judge,
                        prior=Prior("mix-50", min_agreement=0.9, samples=500, max_per_class=per_class - 1))
    assert big.recipe.name == REAL and big.basis == "size" and set(big.val) == {"real"} and big.agreement is None
    scored = score_choice(big, tiny_val)
    assert "no prior above its size gate; validation chose 'real'" in verdict(scored)


def _scored(name: str, gains: list[float]) -> dict:
    return {"recipe": {"name": name}, "chosen_on": "prior", "gain": Repeated(tuple(gains)).as_dict()}


def test_the_verdict_says_helps_only_above_twice_the_gains_standard_error():
    assert verdict(_scored("mix-50", [0.010, 0.012, 0.011])).startswith("synthetic data helps here: +1.1 ± 0.1 points")
    noisy = _scored("mix-50", [0.006, -0.004, 0.001])  # +0.1 ± 0.5: noise
    assert not helps(noisy) and verdict(noisy).startswith("no measurable gain on this data; train on real only")
    assert "validation tied, so the prior chose 'mix-50'" in verdict(noisy)
    assert verdict(_scored("mix-50", [-0.01, -0.02, 0.0])).startswith("it does not help on this data")


def test_recipe_names_are_checked():
    assert check_recipes(["mix-50", "real", "mix-50"]) == ["real", "mix-50"]
    with pytest.raises(GanrayError, match="unknown recipe 'bogus'"):
        check_recipes(["bogus"])
    assert check_recipes(["mix-50"], "mix-50-soft") == ["real", "mix-50", "mix-50-soft"]
    with pytest.raises(GanrayError, match="unknown recipe 'mixx' in eval.recipe_prior"):
        check_recipes(["mix-50"], "mixx")


def test_teachers_are_the_judge_or_an_earlier_recipe_and_a_bad_teacher_is_one_line(capsys):
    from ganray.metrics.recipes import RECIPES, Recipe, _check_teachers, teacher_recipe

    assert RECIPES["mix-50-ns"].teacher == "mix-50-ens-hard" and RECIPES["mix-50-ens-hard"].teacher == REAL
    with pytest.raises(AssertionError, match="'a': teacher 'b' is neither the judge nor an earlier recipe"):
        _check_teachers({"a": Recipe("a", teacher="b"), "b": Recipe("b")})  # a later teacher could close a cycle
    assert teacher_recipe("mix-50-ens-hard") == "mix-50-ens-hard" and teacher_recipe("judge") == "judge"
    with pytest.raises(GanrayError, match="unknown teacher 'bogus' in generate.teacher; use judge or a recipe: real, mix-50"):
        teacher_recipe("bogus")
    assert main(["generate", "--generator", "/nonexistent", "--set", "generate.teacher=bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown teacher 'bogus'" in err[0]


def test_a_student_recipe_is_taught_by_its_teacher_recipes_classifiers_on_another_draw(digits, low, monkeypatch):
    """Noisy student: mix-50-ns's samples are labelled and picked by mix-50-ens-hard's classifiers
    (each trained once, themselves taught by the real-only ones), drawn from other noise."""
    from ganray.metrics import recipes

    small, _ = low
    drawn = []
    real_draw = recipes.draw_synthetic
    monkeypatch.setattr(recipes, "draw_synthetic", lambda r, G, n, seed, judge=None, teachers=None:
                        drawn.append((r.name, seed, teachers)) or real_draw(r, G, n, seed, judge, teachers))
    fits = recipes.Fits(ReplayGenerator(small), small, Budget([0, 1], 5, 100))
    students = fits.models("mix-50-ns")
    hard, real = fits.models("mix-50-ens-hard"), fits.models(REAL)
    assert [(name, seed) for name, seed, _ in drawn] == [
        ("mix-50-ens-hard", 50_000), ("mix-50-ens-hard", 50_001), ("mix-50-ns", 60_000), ("mix-50-ns", 60_001)]
    assert all(t is real for _, _, t in drawn[:2]) and all(t is hard for _, _, t in drawn[2:])
    assert len(students) == 2 and not any(s is h for s in students for h in hard)


def test_report_with_an_unknown_recipe_is_one_line(capsys):
    assert main(["report", "--run", "/nonexistent", "--set", "eval.recipes=[real, bogus]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown recipe 'bogus'" in err[0]


def test_the_exported_generator_is_the_best_checkpoint_by_cas_val_and_pruning_keeps_it(tmp_path):
    import json

    from ganray.training.local import train_local
    from ganray.runs.run_dir import checkpoint_names, read_metrics
    from ganray.runs.selection import best_step

    cfg = tiny_config(tmp_path, "train.steps=30", "train.checkpoint_every=10", "train.log_every=10", "eval.every=10",
                      "train.keep_checkpoints=1", "eval.metrics=[fid]", "eval.num_samples=50")
    train_local(cfg, tmp_path / "run")
    lines = read_metrics(tmp_path / "run")
    scored = [m for m in lines if "cas_val" in m]
    assert [m["step"] for m in scored] == [10, 20, 30] and all(0.0 <= m["cas_val"] <= 1.0 for m in scored)
    step, metric, value = best_step(lines, "cas_val")
    assert metric == "cas_val" and value == max(m["cas_val"] for m in scored)
    assert step == min(m["step"] for m in scored if m["cas_val"] == value)  # ties go to the earlier step
    # keep_checkpoints=1 keeps the newest, and the selected one too.
    assert set(checkpoint_names(tmp_path / "run")) == {"step_0000030", f"step_{step:07d}"}
    info = json.loads((tmp_path / "run" / "generator" / "generator.json").read_text())
    assert info["step"] == step and info["selected_by"] == {"select": "cas_val", "metric": "cas_val", "value": value}
    assert best_step(lines, "last") is None
    fid_step = best_step(lines, "fid")[0]
    assert min(m["fid_domain"] for m in scored) == next(m["fid_domain"] for m in scored if m["step"] == fid_step)
