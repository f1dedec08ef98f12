"""Ray Train (1 worker) vs the plain PyTorch loop: same model, batch, data and thread count.

Both paths run `train_gan` and time steady-state steps (img/s between log points, the first
interval dropped as warm-up), so the ratio is the cost of Ray Train around the loop. The
end-to-end wall time, including Ray's start-up, is printed beside it. Usage:

    .venv/bin/python bench/train_overhead.py [--steps 240] [--threads 2] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from ganray.config import load_config  # noqa: E402
from ganray.log import setup_logging  # noqa: E402
from ganray.training.local import train_local  # noqa: E402
from ganray.training.ray_train import ensure_ray, train_with_ray  # noqa: E402
from ganray.training.run_dir import read_metrics  # noqa: E402

TARGET = 0.95


def steady_img_per_s(run_dir: Path) -> float:
    rates = [m["img_per_s"] for m in read_metrics(run_dir)][1:]
    return statistics.median(rates)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=240)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="alternate plain/Ray runs this many times")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    setup_logging("WARNING")
    root = Path(tempfile.mkdtemp(prefix="ganray-bench-"))
    common = [
        f"train.steps={args.steps}", "train.log_every=20", f"train.sample_every={args.steps}",
        f"train.checkpoint_every={args.steps}", "ray.num_workers=1", f"ray.cpus_per_worker={args.threads}",
        f"train.threads_per_worker={args.threads}", f"storage.runs_dir={root}", *args.overrides,
    ]
    torch.set_num_threads(args.threads)
    import ray

    ray.init(num_cpus=args.threads, _node_ip_address="127.0.0.1", include_dashboard=True,
             dashboard_host="127.0.0.1", logging_level="WARNING", log_to_driver=False)
    plain, viaray, walls = [], [], {"plain": [], "ray": []}
    for i in range(args.repeats):
        cfg = load_config(None, [*common, f"storage.run_name=plain{i}"])
        t = time.perf_counter()
        train_local(cfg, root / f"plain{i}")
        walls["plain"].append(time.perf_counter() - t)
        plain.append(steady_img_per_s(root / f"plain{i}"))
        cfg = load_config(None, [*common, f"storage.run_name=ray{i}"])
        ensure_ray(cfg.ray)
        t = time.perf_counter()
        train_with_ray(cfg)
        walls["ray"].append(time.perf_counter() - t)
        viaray.append(steady_img_per_s(root / f"ray{i}"))
    ratio = statistics.median(viaray) / statistics.median(plain)
    result = {
        "benchmark": "train_overhead",
        "model": load_config(None, common).model.model_dump(),
        "batch_size": load_config(None, common).train.batch_size,
        "threads": args.threads,
        "steps": args.steps,
        "plain_img_per_s": plain,
        "ray_img_per_s": viaray,
        "plain_wall_s": walls["plain"],
        "ray_wall_s": walls["ray"],
        "ratio": ratio,
        "target": TARGET,
        "holds": ratio >= TARGET,
    }
    print(f"{'path':<22}{'img/s (median)':>16}{'wall s':>10}")
    print(f"{'plain PyTorch loop':<22}{statistics.median(plain):>16.1f}{statistics.median(walls['plain']):>10.1f}")
    print(f"{'Ray Train, 1 worker':<22}{statistics.median(viaray):>16.1f}{statistics.median(walls['ray']):>10.1f}")
    print(f"ratio Ray/plain = {ratio:.3f}  (target >= {TARGET}: {'holds' if ratio >= TARGET else 'MISSED'})")
    out = Path(__file__).with_name("results.json")
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["train_overhead"] = result
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
