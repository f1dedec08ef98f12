"""Where benchmarks record their rows: one JSON file, one key per benchmark (gitignored)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).with_name("results.json")


def record(name: str, rows: list[dict]) -> Path:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[name] = rows
    RESULTS.write_text(json.dumps(results, indent=2))
    return RESULTS
