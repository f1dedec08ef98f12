"""cluster.yaml passes Ray's own autoscaler schema and says what the README promises."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_autoscaler_schema(cluster):
    validate_config(prepare_config(copy.deepcopy(cluster)))


def test_the_schema_check_can_fail(cluster):
    bad = copy.deepcopy(cluster)
    bad["available_node_types"]["gpu_worker"]["max_workerz"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))


def test_cpu_head_autoscaling_gpu_workers_s3_profiles_and_pinned_installs(cluster):
    assert cluster["provider"]["type"] == "aws"
    types = cluster["available_node_types"]
    head, worker = types[cluster["head_node_type"]], types["gpu_worker"]
    assert head["node_config"]["InstanceType"].startswith(("m5", "m6", "c5", "c6", "r5"))  # a CPU instance
    assert worker["node_config"]["InstanceType"].startswith(("g4", "g5", "g6", "p3", "p4", "p5"))  # a GPU instance
    assert worker["min_workers"] == 0 and worker["max_workers"] >= 1
    assert head["node_config"]["IamInstanceProfile"] and worker["node_config"]["IamInstanceProfile"]
    setup = "\n".join(cluster["setup_commands"])
    pyproject = (ROOT / "pyproject.toml").read_text()
    for pin in ("torch==2.14.1", "torchvision==0.29.1"):
        assert pin in setup and pin in pyproject
    assert "pip install -q -e ~/ganray" in setup and cluster["file_mounts"]["~/ganray"] == "."
    assert not re.search(r"(?i)aws_secret|secret_access_key|AKIA[0-9A-Z]{16}", (ROOT / "cluster.yaml").read_text())
