"""Every benchmark in one run, then one table of ratios with their targets (bench/results.json).

Each benchmark runs in its own process (its own Ray), one after another, so none competes with
another for the cores; each measures its two sides alternately in that process. Usage:

    .venv/bin/python bench/run_all.py [--quick] [--only train_overhead,eval_cost] [--gpu]

--quick shortens every benchmark (minutes instead of tens of minutes; noisier ratios).
--gpu runs training, generation and tuning on the GPU and adds bench/gpu.py (a GPU machine; see bench/gpu.sh).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import RESULTS, format_checks  # noqa: E402

HERE = Path(__file__).resolve().parent
GPU = ["--set", "ray.use_gpu=true"]

# name: (full arguments, --quick arguments, extra arguments with --gpu)
BENCHMARKS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "train_overhead": ([], ["--steps", "100", "--repeats", "1"], GPU),
    "step_overhead": ([], ["--steps", "150", "--repeats", "1"], []),
    "ddp_scaling": ([], ["--steps", "100", "--repeats", "1"], []),
    "eval_cost": ([], ["--train-steps", "60", "--repeats", "2"], []),
    "generate_throughput": ([], ["--samples", "40000"], []),  # fewer amortize actor start-up too little
    "tune_asha": ([], ["--trials", "8", "--set", "train.steps=300", "--set", "eval.every=50"],
                  [*GPU, "--set", "tune.gpus_per_trial=0.125"]),
    "gpu": ([], ["--quick"], []),  # GPU-only figures (bench/gpu.py); in the default list with --gpu only
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--only", help="comma list of benchmarks (default: all; gpu only with --gpu)")
    args = p.parse_args()
    default = [n for n in BENCHMARKS if n != "gpu" or args.gpu]
    names = [n for n in (args.only.split(",") if args.only else default) if n]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    RESULTS.unlink(missing_ok=True)  # one table, one run
    failed = []
    for name in names:
        full, quick, gpu = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / f"{name}.py"), *(quick if args.quick else full), *(gpu if args.gpu else [])]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"== {name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    print(f"\nbenchmark results ({RESULTS}):")
    for name in names:
        entry = results.get(name)
        if entry is None:
            print(f"{name}: no result (failed)")
            continue
        m = entry["machine"]
        where = m.get("gpu") or f"{m['cpus']} CPUs"
        print(f"{name} ({where}):\n{format_checks(entry['checks'])}")
    checks = [c for n in names if n in results for c in results[n]["checks"]]
    held = sum(c["holds"] for c in checks)
    print(f"\n{held} of {len(checks)} targets hold" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
