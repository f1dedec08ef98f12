"""Data-parallel scaling: 2 DDP workers x 1 thread against 1 worker x 2 threads, both under Ray Train.

Same model, global batch, data and total cores; the ratio of steady-state global img/s says
what gloo's gradient all-reduce and the per-worker overheads cost against intra-op threads.
On a multi-core or multi-GPU node pass --layouts to compare other splits. Usage:

    .venv/bin/python bench/ddp_scaling.py [--steps 160] [--repeats 2] [--layouts 2x1,1x2] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ganray.config import load_config  # noqa: E402
from ganray.log import setup_logging  # noqa: E402
from ganray.ray_session import start_local_ray  # noqa: E402
from ganray.training.ray_train import train_with_ray  # noqa: E402
from results import Check, record  # noqa: E402
from train_overhead import steady_img_per_s  # noqa: E402

TARGET = 0.90


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--repeats", type=int, default=2, help="alternate the layouts this many times")
    p.add_argument("--layouts", default="2x1,1x2", help="WORKERSxTHREADS,...; the first is compared to the second")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    setup_logging("WARNING")
    layouts = [tuple(int(x) for x in s.split("x")) for s in args.layouts.split(",")]
    root = Path(tempfile.mkdtemp(prefix="ganray-bench-ddp-"))
    start_local_ray(num_cpus=max(w * t for w, t in layouts), logging_level="WARNING", log_to_driver=False)
    rates: dict[tuple[int, int], list[float]] = {lt: [] for lt in layouts}
    for i in range(args.repeats):
        for workers, threads in layouts:
            name = f"w{workers}t{threads}-{i}"
            cfg = load_config(None, [
                f"train.steps={args.steps}", "train.log_every=20", f"train.sample_every={args.steps}",
                f"train.checkpoint_every={args.steps}", f"ray.num_workers={workers}", f"ray.cpus_per_worker={threads}",
                f"train.threads_per_worker={threads}", f"storage.runs_dir={root}", f"storage.run_name={name}",
                "eval.every=0", *args.overrides,
            ])
            train_with_ray(cfg)
            rates[(workers, threads)].append(steady_img_per_s(root / name))
    rows = [{"workers": w, "threads": t, "img_per_s": r} for (w, t), r in rates.items()]
    first, second = layouts[0], layouts[1]
    ratio = statistics.median(rates[first]) / statistics.median(rates[second])
    print(f"{'workers x threads':>17}  {'global img/s':>12}")
    for (w, t), r in rates.items():
        print(f"{f'{w} x {t}':>17}  {statistics.median(r):>12.1f}")
    print(f"{first[0]}x{first[1]} / {second[0]}x{second[1]} = {ratio:.3f}  (target >= {TARGET})")
    record("ddp_scaling", rows, [Check(f"{first[0]} DDP workers x {first[1]} thread / {second[0]} worker x {second[1]} threads",
                                       ratio, TARGET)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
