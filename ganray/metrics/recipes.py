"""Downstream recipes: how a classifier should use synthetic data, chosen on validation.

Concatenating thousands of synthetic images to a hundred real ones makes nearly every batch
synthetic, and the classifier learns the generator's flaws. A recipe says instead how much
synthetic data to draw (relative to the real data), what share of every batch stays real,
whether the synthetic labels are soft class probabilities (distillation: the judge's, or the
mean of the comparison's own real-only classifiers), and whether to pre-train on synthetic data
and fine-tune on real, which samples to draw (some picked where the teacher is least sure), and
how many classifier steps to take. `real` is always a candidate,
so "train on real only" is a possible answer.

The choice is made on the validation split only (`select_recipe` never sees test); the test
split then scores the chosen recipe against `real`, once (`score_choice`), with the same
classifiers validation scored: each recipe's classifiers are trained once (`Fits`).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ganray.config import EvalConfig
from ganray.data.base import ImageDataset
from ganray.errors import GanrayError
from ganray.metrics.classifier import ClassifierConfig, Mix, SmallCNN, accuracy, images_ahead, predict, train_mixed
from ganray.metrics.utility import Repeated, coverage
from ganray.models.sampling import balanced_labels, sample_balanced

REAL = "real"
JUDGE = "judge"  # a recipe taught by the judge: the report's domain classifier, trained on the real images


@dataclass(frozen=True)
class Recipe:
    name: str
    real_share: float = 1.0  # share of every batch drawn from real images
    synthetic_ratio: float = 0.0  # synthetic images drawn per real image
    soft: bool = False  # synthetic labels = class probabilities of the teacher
    teacher: str = "judge"  # soft labels' teacher: "judge", or a recipe whose classifiers' mean teaches ("real":
    # the real-only ones; a synthetic recipe: noisy student's next round, taught by the students of the last)
    pretrain: bool = False  # classifier steps on synthetic only, then the same steps on real only
    min_synthetic: int = 1000  # a floor on the synthetic draw, so a 100-image dataset still gets variety
    uncertain_share: float = 0.0  # share of the draw picked per class as the teacher's least certain samples
    steps_factor: int = 1  # classifier steps = eval.recipe_steps x this
    draw_offset: int = 0  # added to the noise seed of the draw, so a later round of students sees other samples

    def synthetic_count(self, n_real: int, cap: int) -> int:
        """Synthetic images to draw for `n_real` real ones, at most `cap` (`eval.report_samples`)."""
        if self.name == REAL:
            return 0
        return min(cap, max(self.min_synthetic, round(self.synthetic_ratio * n_real)))


def _check_teachers(recipes: dict[str, Recipe]) -> dict[str, Recipe]:
    """The registry's teachers are the judge or earlier recipes, so a chain of students always ends."""
    for i, r in enumerate(recipes.values()):
        if r.teacher != JUDGE and r.teacher not in list(recipes)[:i]:
            raise AssertionError(f"recipe {r.name!r}: teacher {r.teacher!r} is neither the judge nor an earlier recipe")
    return recipes


RECIPES: dict[str, Recipe] = _check_teachers({
    r.name: r
    for r in (
        Recipe(REAL),
        Recipe("mix-50", real_share=0.5, synthetic_ratio=10),
        Recipe("mix-75", real_share=0.75, synthetic_ratio=10),
        Recipe("mix-50-soft", real_share=0.5, synthetic_ratio=10, soft=True),
        Recipe("mix-50-ens", real_share=0.5, synthetic_ratio=10, soft=True, teacher=REAL),
        Recipe("mix-50-ens-hard", real_share=0.5, synthetic_ratio=10, soft=True, teacher=REAL, uncertain_share=0.5, steps_factor=2),
        Recipe("mix-50-ns", real_share=0.5, synthetic_ratio=10, soft=True, teacher="mix-50-ens-hard", uncertain_share=0.5,
               steps_factor=2, draw_offset=10_000),
        Recipe("pretrain", synthetic_ratio=10, pretrain=True),
    )
})


def teacher_in_use(teacher: str, soft: bool, uncertain_share: float) -> str | None:
    """Who labels or picks the samples: `teacher` when soft labels or an uncertain pick need one, else
    nobody. One rule for the report's recipes, their `generate_command` and `ganray generate`."""
    return teacher if soft or uncertain_share > 0 else None


def teacher_recipe(name: str) -> str:
    """Validate a teacher name (`generate.teacher`): the judge or a recipe; one line that lists them if not."""
    if name != JUDGE and name not in RECIPES:
        raise GanrayError(f"unknown teacher {name!r} in generate.teacher; use judge or a recipe: {', '.join(RECIPES)}")
    return name


def check_recipes(names: list[str], prior: str | None = None) -> list[str]:
    """Validate recipe names (config time): the recipes compared, `real` always first, and the prior among them."""
    bad = [n for n in names if n not in RECIPES]
    if bad:
        raise GanrayError(f"unknown recipe {bad[0]!r} in eval.recipes; use names from {', '.join(RECIPES)}")
    if prior is not None and prior not in RECIPES:
        raise GanrayError(f"unknown recipe {prior!r} in eval.recipe_prior; use a name from {', '.join(RECIPES)}, or null")
    return [REAL, *[n for n in dict.fromkeys([*names, *([prior] if prior else [])]) if n != REAL]]


@dataclass(frozen=True)
class Budget:
    """What every recipe's classifier gets: the same steps, seeds and synthetic cap."""

    seeds: list[int]
    steps: int = 500
    max_synthetic: int = 5000
    augment: str = "shift"  # every classifier's classic augmentation (`AUGMENTATIONS`), real only's included

    @classmethod
    def of(cls, e: EvalConfig, seeds: list[int] | None = None) -> "Budget":
        """The budget the config sets for the report's recipes (`eval.report_seeds`, `recipe_*`); a bench
        that fixes its own classifier seeds passes `seeds`."""
        return cls(list(e.report_seeds if seeds is None else seeds), e.recipe_steps, e.report_samples, e.recipe_augment)


def fit_recipe(
    recipe: Recipe, G: nn.Module | None, real: ImageDataset, seed: int, budget: Budget,
    judge: nn.Module | None = None, draw: int = 50_000, teachers: list[nn.Module] | None = None,
) -> SmallCNN:
    """Train the classifier one recipe prescribes, on `real` and samples of `G` drawn from
    `draw + recipe.draw_offset + seed`.

    `teachers` are the classifiers of the recipe `recipe.teacher` names, whose mean probabilities
    label (and pick) the samples: for `teacher="real"` an ensemble of the baselines the comparison
    trains anyway, so its distillation costs no extra classifier.
    """
    cfg = ClassifierConfig.classic(budget.augment, steps=budget.steps * recipe.steps_factor, seed=seed)
    if recipe.name == REAL:
        return train_mixed(real.images, real.labels, real.num_classes, None, cfg)
    if G is None:
        raise GanrayError(f"recipe {recipe.name!r} needs a generator")
    images, labels = draw_synthetic(recipe, G, recipe.synthetic_count(len(real), budget.max_synthetic), draw + recipe.draw_offset + seed, judge, teachers)
    targets = synthetic_targets(recipe, images, labels, judge, teachers)
    if recipe.pretrain:
        model = train_mixed(images, targets, real.num_classes, None, cfg)
        return train_mixed(real.images, real.labels, real.num_classes, None, cfg, init=model)
    return train_mixed(real.images, real.labels, real.num_classes, Mix(images, targets, recipe.real_share), cfg)


POOL_FACTOR = 4  # an uncertain pick chooses among this many times the draw's size
POOL_SEED_OFFSET = 20_000  # the pool's noise seed, apart from the draw's own


def draw_synthetic(
    recipe: Recipe, G: nn.Module, n: int, seed: int, judge: nn.Module | None = None, teachers: list[nn.Module] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` class-balanced samples of `G` and their labels, from `seed` only.

    With `recipe.uncertain_share` > 0, that share of them is picked, class by class, from a pool
    `POOL_FACTOR` times the draw: the samples the recipe's teacher is least sure of (highest
    entropy). Those lie near the class boundaries, where the teacher's soft labels say the most a
    random draw rarely says; the rest is drawn at random, so the mix still covers each class.
    """
    n_uncertain = round(n * recipe.uncertain_share)
    images, labels = sample_balanced(G, n - n_uncertain, seed)
    if labels is None:
        raise GanrayError("downstream recipes need a class-conditional generator (model.arch=cdcgan)")
    if n_uncertain == 0:
        return images, labels
    pool, pool_labels = sample_balanced(G, POOL_FACTOR * n, seed + POOL_SEED_OFFSET)
    picked = most_uncertain(teacher_probabilities(recipe, judge, teachers)(pool), pool_labels, n_uncertain)
    return torch.cat([images, pool[picked]]), torch.cat([labels, pool_labels[picked]])


def most_uncertain(probs: torch.Tensor, labels: torch.Tensor, n: int | Sequence[int]) -> torch.Tensor:
    """Indices of `n` samples, as class-balanced as `balanced_labels` (by `labels`), or of `n[c]`
    of each class c, each class's being its samples of highest entropy under `probs`, in class order."""
    entropy = -(probs * probs.clamp_min(1e-8).log()).sum(1)
    k = probs.shape[1]
    per_class = torch.bincount(balanced_labels(n, k), minlength=k).tolist() if isinstance(n, int) else list(n)
    chosen = []
    for c, count in enumerate(per_class):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < count:
            raise GanrayError(f"an uncertain pick needs {count} samples of class {c} and the pool has {len(members)}")
        chosen.append(members[entropy[members].argsort(descending=True)[:count]])
    return torch.cat(chosen)


def teacher_probabilities(
    recipe: Recipe, judge: nn.Module | None, teachers: list[nn.Module] | None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The recipe's teacher as a function of images: the judge's class probabilities, or the mean
    over the classifiers of the recipe `recipe.teacher` names (`teachers`)."""
    chosen = ([judge] if judge is not None else []) if recipe.teacher == JUDGE else list(teachers or [])
    if not chosen:
        who = {JUDGE: "a judge classifier", REAL: "the real-only classifiers"}.get(
            recipe.teacher, f"the classifiers of recipe {recipe.teacher!r}")
        raise GanrayError(f"recipe {recipe.name!r} needs {who} for its soft labels")
    return lambda images: torch.stack([predict(t, images) for t in chosen]).mean(0)


def synthetic_targets(
    recipe: Recipe, images: torch.Tensor, labels: torch.Tensor, judge: nn.Module | None, teachers: list[nn.Module] | None,
) -> torch.Tensor:
    """The samples' training targets: the generator's labels, or the teacher's class probabilities."""
    return teacher_probabilities(recipe, judge, teachers)(images) if recipe.soft else labels


class Fits:
    """Each recipe's classifiers, one per seed, trained on first use and kept: validation chooses
    with them and test scores the same ones, so no classifier is trained twice."""

    def __init__(self, G: nn.Module | None, train: ImageDataset, budget: Budget, judge: nn.Module | None = None) -> None:
        self.G, self.train, self.budget, self.judge = G, train, budget, judge
        self._models: dict[str, list[SmallCNN]] = {}

    def models(self, name: str) -> list[SmallCNN]:
        if name not in self._models:
            recipe = RECIPES[name]
            taught = teacher_in_use(recipe.teacher, recipe.soft, recipe.uncertain_share) not in (None, JUDGE)
            teachers = self.models(recipe.teacher) if taught else None
            self._models[name] = [
                fit_recipe(recipe, self.G, self.train, s, self.budget, self.judge, teachers=teachers) for s in self.budget.seeds
            ]
        return self._models[name]

    def scores(self, name: str, split: ImageDataset) -> list[float]:
        return [accuracy(m, split.images, split.labels) for m in self.models(name)]


@dataclass(frozen=True)
class Prior:
    """The recipe to use when validation cannot tell the recipes apart, and the gate it must pass.

    `recipe` is one measured to help on other data (`eval.recipe_prior`; None = real only on a tie).
    It is used only if it scores within one validation image of real and the real-trained judge
    gives at least `min_agreement` of the generator's samples their own label: samples that
    validation cannot vouch for must at least be labelled right. It is considered only for
    training sets of at most `max_per_class` images per class (None: any size), the sizes where
    it was measured to help; with more real images the samples add less than they cost.
    """

    recipe: str | None = None
    min_agreement: float = 0.9
    samples: int = 1000
    max_per_class: float | None = None

    @classmethod
    def of(cls, e: EvalConfig) -> "Prior":
        """The prior the config sets (`eval.recipe_prior*`)."""
        return cls(e.recipe_prior, e.recipe_min_agreement, max_per_class=e.recipe_prior_max_per_class)

    def applies(self, train: ImageDataset) -> str | None:
        """The prior's recipe for this training set, or None when it has too many images per class."""
        if self.max_per_class is not None and train.images_per_class > self.max_per_class:
            return None
        return self.recipe


@dataclass(frozen=True)
class Choice:
    recipe: Recipe
    val: dict[str, dict]  # recipe name -> {"mean", "values"} accuracy on validation
    fits: Fits = field(repr=False, compare=False)  # the classifiers validation scored; test scores the same ones
    basis: str = "val"  # "val": it beat the others on validation; "prior": validation tied and the prior passed its
    # gates; "size": real, with the prior off for a training set this large (validation chose no other recipe)
    agreement: float | None = None  # the judge's agreement with the generator's labels, when the prior was considered


# How each `Choice.basis` came about, in words for a person (the demo's summary).
CHOSEN_ON: dict[str, str] = {
    "val": "chosen on validation",
    "prior": "the prior, on a validation tie",
    "size": "real: no recipe ahead on validation, and no prior above its size gate",
}


def select_recipe(
    G: nn.Module | None, train: ImageDataset, val: ImageDataset, names: list[str], budget: Budget,
    judge: nn.Module | None = None, progress: Callable[[str], None] = lambda _: None, prior: Prior = Prior(),
) -> Choice:
    """Choose a recipe on validation; reads no test data.

    The recipe with the best mean validation accuracy wins if it beats `real` by at least one
    validation image (mean over the seeds). Otherwise validation cannot tell them apart (at 10%
    digits all 30 validation images are right under every recipe), and `prior.recipe` is chosen
    if it passes `Prior`'s gates (training-set size, then the judge; a prior gated out by size is
    not even trained); failing that, `real` (`by_validation`). The margin keeps
    validation noise from choosing synthetic data: on a real 10-class set, mixes up to +0.3
    points ahead of real on validation lost 0.3 on test.
    """
    table, fits, prior_recipe = {}, Fits(G, train, budget, judge), prior.applies(train)
    for name in check_recipes(names, prior_recipe):
        progress(name)
        values = fits.scores(name, val)
        table[name] = {"mean": statistics.fmean(values), "values": values}
    name, basis = by_validation({n: v["mean"] for n, v in table.items()}, len(val), prior_recipe)
    if basis != "prior":
        gated = name == REAL and prior.recipe not in (None, REAL) and prior_recipe is None
        return Choice(RECIPES[name], table, fits, "size" if gated else basis)
    if judge is None:
        raise GanrayError("a recipe prior needs a judge classifier to check the generator's labels")
    # The report's per-class coverage, overall: the share of samples the judge gives their own label.
    agreement = coverage(judge, G, prior.samples, budget.seeds[0], train.class_names)["overall"]
    chosen = name if agreement >= prior.min_agreement else REAL
    return Choice(RECIPES[chosen], table, fits, "prior" if chosen != REAL else "val", agreement)


def by_validation(means: dict[str, float], n_val: int, prior: str | None) -> tuple[str, str]:
    """What validation alone decides, from each recipe's mean accuracy on `n_val` images:
    (recipe, "val") when it beats real by at least one image (real wins ties), (prior, "prior")
    when nothing does and the prior is less than one image behind real (its judge gate still to
    pass), else (real, "val"). Counted in images (`images_ahead`), not accuracy differences."""
    best = max(means, key=lambda n: (means[n], n == REAL))
    if best != REAL and images_ahead(means[best], means[REAL], n_val) >= 1:
        return best, "val"
    if prior in (None, REAL) or images_ahead(means[prior], means[REAL], n_val) <= -1:
        return REAL, "val"
    return prior, "prior"


def score_choice(choice: Choice, test: ImageDataset) -> dict:
    """Test accuracy of real-only and of the chosen recipe over seeds (the classifiers validation
    scored), and their paired gain."""
    fits = choice.fits
    real = fits.scores(REAL, test)
    chosen = real if choice.recipe.name == REAL else fits.scores(choice.recipe.name, test)
    gains = [c - r for c, r in zip(chosen, real)]
    return {
        "recipe": asdict(choice.recipe),
        "chosen_on": choice.basis,
        "label_agreement": choice.agreement,
        "val": choice.val,
        "real_only": Repeated(tuple(real)).as_dict(),
        "recipe_test": Repeated(tuple(chosen)).as_dict(),
        "gain": Repeated(tuple(gains)).as_dict(),
        "classifier_steps": fits.budget.steps,
        "classifier_augment": fits.budget.augment,
        "n_real": len(fits.train),
        "n_synthetic": choice.recipe.synthetic_count(len(fits.train), fits.budget.max_synthetic),
    }


def helps(scored: dict) -> bool:
    """A chosen synthetic recipe whose test gain is above twice its standard error over the seeds."""
    g = scored["gain"]
    return scored["recipe"]["name"] != REAL and g["mean"] > 0 and g["mean"] >= 2 * g["std"] / len(g["values"]) ** 0.5


def verdict(scored: dict) -> str:
    """One plain sentence: does synthetic data help here, by how much, with which recipe.

    "Helps" needs a test gain above twice its standard error over the classifier seeds: a +0.1 ± 0.4
    point gain is noise, and saying "helps" would send a team to generate data for nothing.
    """
    g, name = scored["gain"], scored["recipe"]["name"]
    how = {"prior": "validation tied, so the prior chose", "size": "no prior above its size gate; validation chose"}.get(
        scored.get("chosen_on", "val"), "validation chose")
    points = f"{100 * g['mean']:+.1f} ± {100 * g['std']:.1f} points"
    if name == REAL or g["mean"] <= 0:
        return f"it does not help on this data; train on real only ({how} {name!r}, test gain {points})"
    if not helps(scored):
        return f"no measurable gain on this data; train on real only ({how} {name!r}: {points}, within the seeds' noise)"
    return f"synthetic data helps here: {points} with recipe {name!r} ({how} it)"


def recommend(
    G: nn.Module | None, train: ImageDataset, val: ImageDataset, test: ImageDataset, names: list[str], budget: Budget,
    judge: nn.Module | None, prior: Prior = Prior(), progress: Callable[[str], None] = lambda _: None,
) -> dict:
    """The report's answer for one real training set: a recipe chosen on validation (or the prior on a
    tie), its test score against real only, and the verdict."""
    choice = select_recipe(G, train, val, names, budget, judge, progress, prior)
    scored = score_choice(choice, test)
    scored["verdict"] = verdict(scored)
    return scored
