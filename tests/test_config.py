import pytest

from ganray.config import Config, load_config
from ganray.errors import GanrayError


def test_defaults_are_valid_and_run_on_digits():
    cfg = load_config()
    assert cfg.data.source == "digits" and cfg.model.arch == "cdcgan"
    assert cfg.train.batch_size % cfg.ray.num_workers == 0


def test_yaml_and_overrides_compose(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  steps: 123\n  lr_g: 1e-3\nmodel:\n  width: 0.5\n")
    cfg = load_config(f, ["train.steps=7", "loss.diffaugment=translation, cutout", "ray.use_gpu=true"])
    assert cfg.train.steps == 7 and cfg.train.lr_g == 0.001 and cfg.model.width == 0.5
    assert cfg.loss.diffaugment == "translation,cutout"
    assert cfg.ray.use_gpu is True


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("train:\n  stepz: 3\n", "unknown config key 'train.stepz'"),
        ("trian:\n  steps: 3\n", "unknown config key 'trian'"),
        ("train:\n  steps: many\n", "'train.steps'"),
        ("train:\n  steps: 2.5\n", "'train.steps'"),
        ("train: 5\n", "'train' must be a mapping"),
        ("- a\n- b\n", "must hold a mapping"),
        ("train: [1, 2\n", "not valid YAML"),
        ("data:\n  image_size: 30\n", "multiple of 4"),
        ("loss:\n  diffaugment: blur\n", "unknown DiffAugment policy 'blur'"),
        ("train:\n  batch_size: 63\n", "divisible by ray.num_workers=2"),
        ("storage:\n  run_name: a/b\n", "plain directory name"),
        ("storage:\n  endpoint_url: http://key:secret@127.0.0.1:8333\n", "must not contain credentials"),
    ],
)
def test_bad_config_files_name_the_key(tmp_path, yaml_text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml_text)
    with pytest.raises(GanrayError, match=message) as e:
        load_config(f)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.nothing=1", "unknown config key 'train.nothing'"),
        ("nothing.steps=1", "unknown config key 'nothing'"),
        ("train.steps.deeper=1", "unknown config key 'train.steps.deeper'"),
        ("train.steps", "not key=value"),
        ("steps=3", "must be section.key"),
        ("train.steps=-1", "'train.steps'"),
        ("model.width=wide", "'model.width'"),
        ("generate.gpus_per_actor=1.5", "'generate.gpus_per_actor'"),
        ("generate.gpus_per_actor=0", "'generate.gpus_per_actor'"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(GanrayError, match=message):
        load_config(None, [override])


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(GanrayError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_fingerprint_tracks_sections():
    a, b = Config(), load_config(None, ["train.steps=5"])
    assert a.fingerprint("model") == b.fingerprint("model")
    assert a.fingerprint() != b.fingerprint()


def test_a_dumped_config_reloads_to_the_same_fingerprint(tmp_path):
    # A sweep or a resumed run compares the stored config's fingerprint with the live one; a
    # default of the wrong type (100 on a float field) used to dump as 100 and reload as 100.0.
    from ganray.config import dump_config

    cfg = load_config()
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    again = load_config(tmp_path / "c.yaml")
    assert again.model_dump() == cfg.model_dump()
    assert again.fingerprint() == cfg.fingerprint()
    assert isinstance(cfg.eval.recipe_prior_max_per_class, float)


def test_readme_documents_every_config_key():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for section, field in Config.model_fields.items():
        for key in field.annotation.model_fields:
            assert f"`{section}.{key}`" in readme, f"README's configuration table lacks {section}.{key}"
