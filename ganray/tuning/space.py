"""The sweep's search space: YAML `tune.space` -> validated distributions -> Ray Tune domains.

Validated before Ray starts: a key must be a tunable config key, a range must be non-empty,
and every value the distribution can produce (its endpoints, each choice) must make a valid
config, so a bad space fails in one line instead of in the middle of a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ganray.config import Config, apply_override, validate_config
from ganray.errors import GanrayError

# Sections a trial may change; storage, ray and tune belong to the sweep itself.
TUNABLE_SECTIONS = ("data", "model", "loss", "train", "eval")
KINDS = ("loguniform", "uniform", "randint", "choice")


@dataclass(frozen=True)
class Dist:
    kind: str
    args: tuple[Any, ...]

    def probes(self) -> list[Any]:
        """Values that must all make valid configs: the endpoints or every choice."""
        if self.kind == "randint":
            return [self.args[0], self.args[1] - 1]
        return list(self.args)


def _dist(key: str, spec: dict[str, list[Any]]) -> Dist:
    where = f"tune.space.{key}"
    if len(spec) != 1:
        raise GanrayError(f"{where} must have exactly one of {', '.join(KINDS)}, e.g. {{loguniform: [1e-5, 1e-3]}}")
    (kind, args), = spec.items()
    if kind not in KINDS:
        raise GanrayError(f"{where}: unknown distribution {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "choice":
        if not args:
            raise GanrayError(f"{where}: choice needs at least one value")
        return Dist(kind, tuple(args))
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise GanrayError(f"{where}: {kind} needs [low, high] numbers, got {args!r}")
    low, high = args
    if not low < high:
        raise GanrayError(f"{where}: empty range [{low}, {high}]; low must be below high")
    if kind == "loguniform" and low <= 0:
        raise GanrayError(f"{where}: loguniform needs low > 0, got {low}")
    if kind == "randint" and not (float(low).is_integer() and float(high).is_integer()):
        raise GanrayError(f"{where}: randint needs integer bounds, got {args!r}")
    if kind == "randint":
        return Dist(kind, (int(low), int(high)))
    return Dist(kind, (float(low), float(high)))


def apply_params(cfg: Config, params: dict[str, Any]) -> Config:
    """The trial's config: the base config with each dotted key set to its sampled value."""
    tree = cfg.model_dump()
    for key, value in params.items():
        apply_override(tree, key.split("."), value)
    return validate_config(tree)


def parse_space(cfg: Config) -> dict[str, Dist]:
    """Validated distributions, keyed by dotted config key."""
    space = cfg.tune.space
    if not space:
        raise GanrayError("tune.space is empty; give at least one parameter, e.g. train.lr_g: {loguniform: [1e-5, 1e-3]}")
    dists = {}
    for key, spec in space.items():
        section = key.split(".")[0]
        if section not in TUNABLE_SECTIONS or key.count(".") != 1:
            raise GanrayError(
                f"tune.space key {key!r} is not tunable; use section.key in {', '.join(TUNABLE_SECTIONS)}"
            )
        if key.split(".")[1] not in type(getattr(cfg, section)).model_fields:
            raise GanrayError(f"tune.space key {key!r} is not a config key; see README, Configuration")
        dist = _dist(key, spec)
        for value in dist.probes():
            try:
                apply_params(cfg, {key: value})
            except GanrayError as e:
                raise GanrayError(f"tune.space.{key}: value {value!r} is invalid ({e})") from None
        dists[key] = dist
    return dists


def to_ray(dists: dict[str, Dist]) -> dict[str, Any]:
    """Ray Tune domains for `Tuner(param_space=...)`."""
    from ray import tune

    make = {
        "loguniform": lambda a: tune.loguniform(*a),
        "uniform": lambda a: tune.uniform(*a),
        "randint": lambda a: tune.randint(*a),
        "choice": lambda a: tune.choice(list(a)),
    }
    return {key: make[d.kind](d.args) for key, d in dists.items()}

