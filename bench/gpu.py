"""GPU benchmarks: training, generation and evaluation on one GPU, and NCCL DDP over all of them.

Run it on a GPU machine (`bash bench/gpu.sh` installs nothing and calls this with the logs
going to $OUT). Every figure is recorded in bench/results.json under "gpu" with the card's name.

    python bench/gpu.py [--quick] [--only train,compile,generate,evaluate,ddp] [--device cuda|cpu]

- train:    steady img/s of the plain training loop for the article's DCGAN (configs/article.yaml)
            and the shipped conditional model, fp32 / bf16 autocast x NCHW / NHWC, at the model's
            own batch and at 1,024.
- compile:  the same loop with G and D under torch.compile (NHWC, fp32 and bf16).
- generate: the bare forward pass, bare PNG encoding on one CPU, and end-to-end `generate` to
            local disk at PNG level 0 and 6 by one GPU actor with the CPUs, then by up to 8
            one-CPU actors sharing the GPU (generate.gpus_per_actor).
- evaluate: one evaluation of 50,000 samples (sampling + features + IS/FID/KID/PR), and the
            periodic evaluation's cost against the training between two evaluations.
- ddp:      Ray Train with NCCL: N workers (one GPU each) against 1, global img/s (more than
            one GPU only).
`--device cpu` runs the same code at toy sizes (the test suite does, so the script cannot rot
between the sessions that have a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import ganray.training.loop as loop  # noqa: E402
from ganray.config import Config, load_config  # noqa: E402
from ganray.data import load_splits  # noqa: E402
from ganray.generation.shard import encode_png  # noqa: E402
from ganray.log import setup_logging  # noqa: E402
from ganray.metrics.evaluator import build_evaluator  # noqa: E402
from ganray.models.sampling import balanced_labels, recalibrate_batchnorm, sample_balanced  # noqa: E402
from results import Check, record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTICLE = ROOT / "configs" / "article.yaml"
PARTS = ("train", "compile", "generate", "evaluate", "ddp")
log = logging.getLogger("bench.gpu")


class _Rates(loop.NullHooks):
    """Hooks that keep the loop's img/s readings and drop everything else."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def log(self, step: int, metrics: dict) -> None:
        if "img_per_s" in metrics:
            self.rates.append(metrics["img_per_s"])


USER: list[str] = []  # --set overrides, applied last to every config


def _cfg(overrides: list[str], base: Path | None = None) -> Config:
    return load_config(base, [*overrides, *USER])


def _config(article: bool, overrides: list[str]) -> Config:
    return _cfg(["eval.every=0", f"train.sample_every={10**9}", f"train.checkpoint_every={10**9}", *overrides],
                ARTICLE if article else None)


@contextlib.contextmanager
def _compiled() -> Iterator[None]:
    """Build G and D under torch.compile inside the unchanged loop (a measurement, not a feature)."""
    original = loop.build_state

    def build(*args, **kwargs):
        state = original(*args, **kwargs)
        state.G, state.D = torch.compile(state.G), torch.compile(state.D)
        return state

    loop.build_state = build
    try:
        yield
    finally:
        loop.build_state = original


def train_rate(cfg: Config, data, device: torch.device, compile_: bool = False) -> tuple[float, float]:
    """(steady img/s, seconds to the first log point: start-up and any compilation)."""
    hooks = _Rates()
    start = time.perf_counter()
    with _compiled() if compile_ else contextlib.nullcontext():
        loop.train_gan(cfg, data, hooks, loop.Worker(device=device))
    rates = hooks.rates[1:] or hooks.rates
    first = cfg.train.log_every * cfg.train.batch_size / hooks.rates[0]
    log.debug("train wall %.1f s", time.perf_counter() - start)
    return statistics.median(rates), first


def bench_train(device: torch.device, quick: bool, compile_: bool) -> list[dict]:
    steps, every = (6, 3) if quick else (400, 50)
    rows = []
    amps = ["none", "bf16"] if device.type == "cuda" else ["none"]
    for article in (True, False):
        data = load_splits(_config(article, []).data).train
        default_batch = _config(article, []).train.batch_size
        for batch in (default_batch,) if quick or compile_ else (default_batch, 1024):
            for amp in amps:
                for nhwc in ([True] if compile_ else [False, True]):
                    cfg = _config(article, [
                        f"train.steps={steps}", f"train.log_every={every}", f"train.batch_size={32 if quick else batch}",
                        f"train.amp={amp}", f"train.channels_last={str(nhwc).lower()}",
                    ])
                    rate, first = train_rate(cfg, data, device, compile_)
                    rows.append({"part": "compile" if compile_ else "train", "model": "article dcgan" if article else "cdcgan (shipped)",
                                 "batch": cfg.train.batch_size, "amp": amp, "channels_last": nhwc, "img_per_s": round(rate), "warmup_s": round(first, 1)})
                    log.info("%s", rows[-1])
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_generate(device: torch.device, quick: bool, workdir: Path, samples: int = 200_000) -> tuple[list[dict], list[Check]]:
    from generate_throughput import untrained_generator
    from ganray.generation.jobs import generate
    from ganray.ray_session import start_local_ray

    import ray

    n = 1000 if quick else samples
    loaded = untrained_generator(_cfg([]).model)
    G = loaded.G.to(device)
    rows, checks = [], []
    forward = {}
    for batch in (256, 4096):
        z = torch.randn(n, G.z_dim, device=device)
        y = balanced_labels(n, 10).to(device)
        with torch.no_grad():
            G(z[:batch], y[:batch])
            _sync(device)
            start = time.perf_counter()
            for i in range(0, n, batch):
                G(z[i : i + batch], y[i : i + batch])
            _sync(device)
        forward[batch] = n / (time.perf_counter() - start)
        rows.append({"part": "generate", "what": "bare forward", "batch": batch, "img_per_s": round(forward[batch])})
        log.info("%s", rows[-1])
    images = sample_balanced(G, min(n, 20_000), 0, 512)[0].numpy()
    encode = {}
    for level in (0, 6):
        start = time.perf_counter()
        size = sum(len(encode_png(im, level)) for im in images)
        encode[level] = len(images) / (time.perf_counter() - start)
        rows.append({"part": "generate", "what": f"PNG level {level}, one CPU", "img_per_s": round(encode[level]),
                     "bytes_per_image": round(size / len(images))})
        log.info("%s", rows[-1])
    cpus = os.cpu_count() or 1
    gpus = 1 if device.type == "cuda" else 0
    start_local_ray(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, logging_level="WARNING")
    try:
        # One actor with every CPU but one, then k one-CPU actors sharing the GPU (generate.gpus_per_actor=1/k):
        # an actor encodes its PNGs in one thread, so only the second can use the CPUs.
        k = min(8, max(1, cpus - 1))
        for actors, actor_cpus in [(1, max(1, cpus - 1))] + ([(k, 1)] if k > 1 else []):
            for level in (0, 6):
                for batch in (256,) if quick or actors > 1 else (256, 4096):
                    cfg = _cfg([
                        f"generate.out={workdir / f'gen-{actors}-{level}-{batch}'}", f"generate.num_samples={n}",
                        "generate.shard_size=1000", f"generate.num_actors={actors}", f"generate.gpus_per_actor={1 / actors}",
                        f"ray.cpus_per_worker={actor_cpus}", f"ray.use_gpu={str(bool(gpus)).lower()}",
                        f"generate.batch_size={batch}", f"generate.png_compress_level={level}",
                    ])
                    start = time.perf_counter()
                    generate(cfg, loaded)
                    rate = n / (time.perf_counter() - start)
                    # Each actor's forward pass shares one device; its PNGs use its own CPU(s).
                    bound = min(forward[batch], encode[level] * actors * actor_cpus)
                    rows.append({"part": "generate", "what": f"end to end, {actors} actor(s) x {actor_cpus} CPUs, PNG level {level}",
                                 "batch": batch, "img_per_s": round(rate), "of_slower_part": round(rate / bound, 3)})
                    log.info("%s", rows[-1])
        for actors in sorted({1, k}):
            best = max((r for r in rows if r["what"].startswith(f"end to end, {actors} actor")), key=lambda r: r["img_per_s"])
            checks.append(Check(f"{actors} actor(s) end-to-end / min(forward, PNG x CPUs), batch {best['batch']}",
                                best["of_slower_part"], 0.7))
    finally:
        ray.shutdown()
    return rows, checks


def bench_evaluate(device: torch.device, quick: bool, workdir: Path, train_img_per_s: float | None) -> tuple[list[dict], list[Check]]:
    n = 1000 if quick else 50_000
    cfg = _cfg([f"eval.num_samples={n}", f"storage.cache_dir={workdir / 'cache'}", f"eval.batch_size={512 if quick else 4096}"])
    splits = load_splits(cfg.data)
    evaluator = build_evaluator(cfg, splits, device)
    from ganray.models import build_generator

    G = build_generator(cfg.model, splits.train.shape, splits.train.num_classes).to(device)
    recalibrate_batchnorm(G)
    evaluator.evaluate_generator(G, recalibrate=False)  # real-statistics cache, kernels warmed
    rows, checks = [], []
    for samples in [n] if quick else [10_000, n]:
        ev = build_evaluator(cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"num_samples": samples})}), splits, device)
        start = time.perf_counter()
        _sync(device)
        metrics = ev.evaluate_generator(G, recalibrate=True)
        _sync(device)
        seconds = time.perf_counter() - start
        rows.append({"part": "evaluate", "samples": samples, "seconds": round(seconds, 2), "metrics": sorted(metrics)})
        log.info("%s", rows[-1])
    if train_img_per_s:
        ten_k = min(rows, key=lambda r: abs(r["samples"] - 10_000))
        shipped = load_config(None, [])
        interval = shipped.eval.every * shipped.train.batch_size / train_img_per_s
        checks.append(Check(f"evaluation of {ten_k['samples']} / training between evaluations (1 GPU)",
                            ten_k["seconds"] / interval, 0.10, at_least=False))
    return rows, checks


def bench_ddp(quick: bool, workdir: Path) -> tuple[list[dict], list[Check]]:
    from ganray.ray_session import start_local_ray
    from ganray.training.ray_train import train_with_ray
    from ganray.runs.run_dir import read_metrics

    import ray

    gpus = torch.cuda.device_count()
    steps = 100 if quick else 600
    start_local_ray(num_cpus=os.cpu_count(), num_gpus=gpus, logging_level="WARNING", log_to_driver=False)
    rows, checks = [], []
    try:
        rates = {}
        for workers in (1, gpus):
            # The global batch grows with the workers: each GPU keeps the shipped per-step batch of 64.
            cfg = _cfg([
                f"train.steps={steps}", "train.log_every=50", f"train.sample_every={steps}", f"train.checkpoint_every={steps}",
                "eval.every=0", "ray.use_gpu=true", f"ray.num_workers={workers}", f"ray.cpus_per_worker={max(1, (os.cpu_count() or 2) // gpus - 1)}",
                f"train.batch_size={64 * workers}", f"storage.runs_dir={workdir / 'ddp'}", f"storage.run_name=w{workers}",
            ])
            train_with_ray(cfg)
            rates[workers] = statistics.median([m["img_per_s"] for m in read_metrics(workdir / "ddp" / f"w{workers}")][1:])
            rows.append({"part": "ddp", "workers": workers, "global_batch": 64 * workers, "img_per_s": round(rates[workers])})
        eff = rates[gpus] / (gpus * rates[1])
        checks.append(Check(f"NCCL DDP {gpus} GPUs / ({gpus} x 1 GPU), global img/s", eff, 0.90))
    finally:
        ray.shutdown()
    return rows, checks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="toy sizes (a smoke test, not a measurement)")
    p.add_argument("--only", default=",".join(PARTS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--gen-samples", type=int, default=200_000, help="samples per generate measurement")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="key=value for every config")
    args = p.parse_args()
    USER[:] = args.overrides
    setup_logging("INFO")
    parts = [x for x in args.only.split(",") if x]
    if unknown := [x for x in parts if x not in PARTS]:
        print(f"unknown part(s) {unknown}; choose from {list(PARTS)}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run on a GPU machine or pass --device cpu", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ganray-bench-gpu-"))
    rows: list[dict] = []
    checks: list[Check] = []
    if "train" in parts:
        rows += bench_train(device, args.quick, compile_=False)
    if "compile" in parts:
        rows += bench_train(device, args.quick, compile_=True)
    # The shipped model at its own batch (the first cdcgan row), fp32, NHWC: what a default run trains at.
    shipped = [r["img_per_s"] for r in rows if r.get("part") == "train" and r["model"].startswith("cdcgan")
               and r["amp"] == "none" and r["channels_last"]][:1]
    if "generate" in parts:
        r, c = bench_generate(device, args.quick, workdir, args.gen_samples)
        rows, checks = rows + r, checks + c
    if "evaluate" in parts:
        r, c = bench_evaluate(device, args.quick, workdir, shipped[0] if shipped else None)
        rows, checks = rows + r, checks + c
    if "ddp" in parts:
        if device.type == "cuda" and torch.cuda.device_count() > 1:
            r, c = bench_ddp(args.quick, workdir)
            rows, checks = rows + r, checks + c
        else:
            log.info("ddp: skipped (needs more than one GPU)")
    record("gpu" if device.type == "cuda" else "gpu_on_cpu", rows, checks)
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items() if k != "metrics"))
    for c in checks:
        print(f"{c.measure}: {c.value:.3f} ({'>=' if c.at_least else '<='} {c.target}) {'holds' if c.holds else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
