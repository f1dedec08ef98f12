"""Property-based fuzzing of the config loader: any YAML file and any `--set` give a Config or a GanrayError.

The CLI must turn every bad config into one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganray.cli import main
from ganray.config import Config, load_config
from ganray.errors import GanrayError
from conftest import set_args

SECTIONS = ["data", "model", "loss", "train", "eval", "storage", "ray", "tune", "generate"]
KEYS = sorted({k for s in SECTIONS for k in Config.model_fields[s].annotation.model_fields} | {"nope", "x"})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["digits", "cdcgan", "1e-4", "s3://b/p", "http://h:1", "..", "/"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
sections = st.dictionaries(st.sampled_from(KEYS), values, max_size=5)
trees = st.one_of(values, st.dictionaries(st.sampled_from(SECTIONS + ["bogus"]), st.one_of(sections, values), max_size=4))
override_keys = st.one_of(
    st.builds(lambda s, k: f"{s}.{k}", st.sampled_from(SECTIONS + ["zz"]), st.sampled_from(KEYS)),
    st.text(max_size=30),
)
override_values = st.one_of(st.text(max_size=30), values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()))
overrides = st.lists(st.builds(lambda k, v, eq: f"{k}={v}" if eq else k, override_keys, override_values, st.booleans()), max_size=3)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _loads_or_refuses(path, sets) -> None:
    try:
        cfg = load_config(path, sets)
    except GanrayError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "Traceback" not in msg, msg
        return
    assert isinstance(cfg, Config)


@FAST
@given(tree=trees)
def test_any_yaml_tree_loads_or_is_a_one_line_error(tmp_path, tree):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tree))
    _loads_or_refuses(path, [])


@FAST
@given(text=st.text(max_size=200))
def test_any_file_text_loads_or_is_a_one_line_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    _loads_or_refuses(path, [])


@FAST
@given(sets=overrides)
def test_any_overrides_load_or_are_a_one_line_error(sets):
    _loads_or_refuses(None, sets)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sets=overrides.filter(bool))
def test_the_cli_exits_2_with_one_line_for_bad_overrides(capsys, sets):
    """`ganray evaluate` validates the config before doing any work, so only config errors reach here."""
    args = set_args(*sets)
    try:
        load_config(None, sets)
    except GanrayError:
        code = main(["evaluate", *args, "--generator", "/nonexistent"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("ganray evaluate: error: ") and "\n" not in err, err
