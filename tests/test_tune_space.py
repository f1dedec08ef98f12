"""The sweep's search space: YAML to validated distributions to Ray Tune domains."""

from __future__ import annotations

import pytest

from conftest import tiny_config
from ganray.errors import GanrayError
from ganray.tuning.space import apply_params, parse_space, to_ray


def space_config(tmp_path, space: str):
    return tiny_config(tmp_path, f"tune.space={space}")


def test_a_valid_space_samples_inside_its_ranges(tmp_path):
    cfg = space_config(
        tmp_path,
        "{train.lr_g: {loguniform: [1e-5, 1e-3]}, model.width: {choice: [0.25, 0.5]}, "
        "train.batch_size: {randint: [16, 33]}, train.beta2: {uniform: [0.9, 0.99]}, model.arch: {choice: [dcgan, cdcgan]}}",
    )
    dists = parse_space(cfg)
    assert dists["train.lr_g"].args == (1e-5, 1e-3) and dists["model.width"].kind == "choice"
    domains = to_ray(dists)
    for _ in range(50):
        lr = domains["train.lr_g"].sample()
        assert 1e-5 <= lr <= 1e-3
        assert domains["model.width"].sample() in (0.25, 0.5)
        assert 16 <= domains["train.batch_size"].sample() < 33
    trial = apply_params(cfg, {"train.lr_g": 3e-4, "model.width": 0.25, "model.arch": "dcgan"})
    assert trial.train.lr_g == 3e-4 and trial.model.arch == "dcgan" and trial.model.width == 0.25
    assert trial.train.steps == cfg.train.steps  # everything else is the base config


@pytest.mark.parametrize(
    "space, message",
    [
        ("{train.lr_gg: {loguniform: [1e-5, 1e-3]}}", "'train.lr_gg' is not a config key"),
        ("{ray.num_workers: {choice: [1, 2]}}", "'ray.num_workers' is not tunable"),
        ("{train.lr_g: {loguniform: [1e-3, 1e-5]}}", "empty range [0.001, 1e-05]"),
        ("{train.lr_g: {loguniform: [0, 1e-3]}}", "loguniform needs low > 0"),
        ("{train.lr_g: {normal: [0, 1]}}", "unknown distribution 'normal'"),
        ("{model.width: {choice: []}}", "choice needs at least one value"),
        ("{model.width: {choice: [0.5, 20]}}", "tune.space.model.width: value 20 is invalid"),
        ("{train.lr_g: {uniform: [1e-4]}}", "uniform needs [low, high] numbers"),
        ("{}", "tune.space is empty"),
    ],
)
def test_a_bad_space_is_a_one_line_error(tmp_path, space, message):
    with pytest.raises(GanrayError) as err:
        parse_space(space_config(tmp_path, space))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("search", ["random", "optuna"])
def test_max_concurrent_reaches_the_search_algorithm(tmp_path, search):
    # Tune ignores max_concurrent_trials (with a warning) for the random search's generator.
    from ganray.tuning.sweep import _search

    alg = _search(tiny_config(tmp_path, f"tune.search={search}", "tune.max_concurrent=3"))
    assert alg.max_concurrent == 3
    unlimited = _search(tiny_config(tmp_path, f"tune.search={search}"))
    assert getattr(unlimited, "max_concurrent", 0) == 0
