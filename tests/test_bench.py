"""The GPU benchmark script runs end to end on CPU at toy sizes, so it works when a GPU session comes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import CACHE_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_bench_runs_on_cpu_and_records_every_part(tmp_path):
    results = tmp_path / "results.json"
    env = {**os.environ, "GANRAY_BENCH_RESULTS": str(results), "RAY_ADDRESS": ""}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--quick", "--only", "train,generate,evaluate",
         "--set", f"storage.cache_dir={CACHE_DIR}", "--set", "eval.classifier_steps=150",
         "--set", "eval.cas_samples=200", "--set", "eval.cas_steps=20"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    entry = json.loads(results.read_text())["gpu_on_cpu"]
    rows = entry["rows"]
    train = [r for r in rows if r["part"] == "train"]
    assert {(r["model"], r["channels_last"]) for r in train} == {
        (m, cl) for m in ("article dcgan", "cdcgan (shipped)") for cl in (False, True)
    }
    assert all(r["img_per_s"] > 0 for r in train)
    gen = [r for r in rows if r["part"] == "generate"]
    png = {r["what"]: r for r in gen if r["what"].startswith("PNG")}
    assert png["PNG level 0, one CPU"]["bytes_per_image"] > png["PNG level 6, one CPU"]["bytes_per_image"]
    e2e = [r for r in gen if r["what"].startswith("end to end")]
    shared = 2 if (os.cpu_count() or 1) > 2 else 0  # one-CPU actors sharing the device need 2 spare CPUs
    assert len(e2e) == 2 + shared and all(0 < r["of_slower_part"] < 2 for r in e2e)  # PNG levels 0 and 6
    ev = [r for r in rows if r["part"] == "evaluate"]
    assert ev and ev[0]["samples"] == 1000 and "fid_domain" in ev[0]["metrics"] and ev[0]["seconds"] > 0
    measures = {c["measure"] for c in entry["checks"]}
    assert any(m.startswith("1 actor(s) end-to-end") for m in measures)
    assert any(m.startswith("evaluation of 1000") for m in measures)
    assert entry["machine"]["cpus"] == os.cpu_count()
