"""Where benchmarks record their rows and checks: one JSON file, one key per benchmark (gitignored).

A `Check` is one line of the harness table (`bench/run_all.py`): a ratio measured side by side
in one run, its target, and whether it holds.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(os.environ.get("GANRAY_BENCH_RESULTS") or Path(__file__).with_name("results.json"))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over seeds (std 0 for one seed: say how many seeds stand behind a figure)."""
    import statistics

    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class Check:
    measure: str  # what was compared, e.g. "Ray Train / plain loop, 1 thread"
    value: float
    target: float
    at_least: bool = True  # value >= target holds; False: value <= target holds

    @property
    def holds(self) -> bool:
        return self.value >= self.target if self.at_least else self.value <= self.target

    def as_dict(self) -> dict:
        return {**asdict(self), "holds": self.holds}


def machine() -> dict:
    """Where the figures come from: say which card or CPU gave each number."""
    import torch

    info = {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count())
    return info


def record(name: str, rows: list[dict], checks: list[Check] = ()) -> Path:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[name] = {"rows": rows, "checks": [c.as_dict() for c in checks], "machine": machine(),
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    RESULTS.write_text(json.dumps(results, indent=2))
    return RESULTS


def format_checks(checks: list[dict]) -> str:
    lines = []
    for c in checks:
        op = ">=" if c["at_least"] else "<="
        lines.append(f"  {c['measure']:<58} {c['value']:>8.3f}  {op} {c['target']:<6g} {'holds' if c['holds'] else 'MISSED'}")
    return "\n".join(lines)
