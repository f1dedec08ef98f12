"""Ray Train (1 worker) vs the plain PyTorch loop: same model, batch, data and thread count.

Both paths run `train_gan` and time steady-state steps (img/s between log points, the first
interval dropped as warm-up), so the ratio is the cost of Ray Train around the loop. The
end-to-end wall time, including Ray's start-up, is printed beside it. Usage:

    .venv/bin/python bench/train_overhead.py [--steps 160] [--threads 1,2] [--set key=value ...]

On a 2-core machine the 2-thread row also measures Ray's own daemons (raylet, GCS, dashboard,
Train controller) competing with the worker for the same two cores; the 1-thread row leaves
them a core and isolates the cost of Ray Train around the loop.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from ganray.config import load_config  # noqa: E402
from ganray.log import setup_logging  # noqa: E402
from results import Check, record  # noqa: E402
from ganray.training.local import train_local  # noqa: E402
from ganray.training.ray_train import train_with_ray  # noqa: E402
from ganray.runs.run_dir import read_metrics  # noqa: E402

TARGET = 0.95


def steady_img_per_s(run_dir: Path) -> float:
    rates = [m["img_per_s"] for m in read_metrics(run_dir)][1:]
    return statistics.median(rates)


def measure(root: Path, overrides: list[str], steps: int, threads: int, repeats: int) -> dict:
    """Alternate plain and Ray runs so drift in the machine's speed hits both alike."""
    common = [
        f"train.steps={steps}", "train.log_every=20", f"train.sample_every={steps}",
        f"train.checkpoint_every={steps}", "ray.num_workers=1", f"ray.cpus_per_worker={threads}",
        f"train.threads_per_worker={threads}", f"storage.runs_dir={root}", *overrides,
    ]
    torch.set_num_threads(threads)
    rates: dict[str, list[float]] = {"plain": [], "ray": []}
    walls: dict[str, list[float]] = {"plain": [], "ray": []}
    for i in range(repeats):
        for path in ("plain", "ray"):
            name = f"{path}-t{threads}-{i}"
            cfg = load_config(None, [*common, f"storage.run_name={name}"])
            t = time.perf_counter()
            (train_local(cfg, root / name) if path == "plain" else train_with_ray(cfg))
            walls[path].append(time.perf_counter() - t)
            rates[path].append(steady_img_per_s(root / name))
    ratio = statistics.median(rates["ray"]) / statistics.median(rates["plain"])
    cfg = load_config(None, common)
    return {
        "threads": threads, "steps": steps, "batch_size": cfg.train.batch_size, "model": cfg.model.model_dump(),
        "plain_img_per_s": rates["plain"], "ray_img_per_s": rates["ray"],
        "plain_wall_s": walls["plain"], "ray_wall_s": walls["ray"],
        "ratio": ratio, "target": TARGET, "holds": ratio >= TARGET,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--threads", default="1,2", help="comma list: one row per torch thread count")
    p.add_argument("--repeats", type=int, default=2, help="alternate plain/Ray runs this many times")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    setup_logging("WARNING")
    threads = [int(t) for t in args.threads.split(",")]
    root = Path(tempfile.mkdtemp(prefix="ganray-bench-"))
    from ganray.ray_session import start_local_ray

    start_local_ray(num_cpus=max(threads), logging_level="WARNING", log_to_driver=False)
    rows = [measure(root, args.overrides, args.steps, t, args.repeats) for t in threads]
    print(f"{'threads':>7}  {'plain img/s':>12}  {'Ray Train img/s':>16}  {'ratio':>6}  target >= {TARGET}")
    for r in rows:
        print(f"{r['threads']:>7}  {statistics.median(r['plain_img_per_s']):>12.1f}  "
              f"{statistics.median(r['ray_img_per_s']):>16.1f}  {r['ratio']:>6.3f}  {'holds' if r['holds'] else 'MISSED'}")
    record("train_overhead", rows, [Check(f"Ray Train (1 worker) / plain loop, {r['threads']} thread(s)", r["ratio"], TARGET)
                                    for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
