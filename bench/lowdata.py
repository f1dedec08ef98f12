"""What the low-data benches share: the splits at a fraction, a judge trained on the real images,
the `mix-50` score over classifier seeds, and samples drawn as the shards draw them."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ganray.config import Config, load_config
from ganray.data import ImageDataset, load_splits
from ganray.generation.plan import ShardPlan
from ganray.generation.render import draw_samples
from ganray.log import setup_logging
from ganray.metrics.classifier import ClassifierConfig, Mix, accuracy, train_classifier, train_mixed
from results import mean_std

CLASSIFIER_SEEDS = (0, 1, 2)


def probabilities(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A classifier as the judge `draw_samples` takes: images in, class probabilities out."""

    @torch.no_grad()
    def judge(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model.eval()(x), 1)

    return judge


@dataclass
class LowData:
    cfg: Config
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    judge: torch.nn.Module

    @classmethod
    def at(cls, overrides: list[str]) -> "LowData":
        cfg = load_config(None, overrides)
        s = load_splits(cfg.data)
        judge = train_classifier(s.train.images, s.train.labels, s.train.num_classes, ClassifierConfig(steps=cfg.eval.classifier_steps, seed=0))
        return cls(cfg, s.train, s.val, s.test, judge)

    @property
    def k(self) -> int:
        return self.train.num_classes

    @property
    def n(self) -> int:
        """Synthetic samples per classifier: 10x the real data, within [1,000, 5,000]."""
        return min(5000, max(1000, 10 * len(self.train)))

    def classifier(self, seed: int) -> ClassifierConfig:
        return ClassifierConfig(steps=self.cfg.eval.classifier_steps, seed=seed)

    def mix50(self, x: torch.Tensor | None, y: torch.Tensor | None) -> tuple[float, float]:
        """Validation and test accuracy of real + (x, y) with half of every batch real (real only
        when x is None), each the mean over the classifier seeds."""
        v, t = [], []
        for cs in CLASSIFIER_SEEDS:
            m = train_mixed(self.train.images, self.train.labels, self.k, None if x is None else Mix(x, y, 0.5), self.classifier(cs))
            v.append(accuracy(m, self.val.images, self.val.labels))
            t.append(accuracy(m, self.test.images, self.test.labels))
        return statistics.mean(v), statistics.mean(t)

    def draw(self, members: list[torch.nn.Module], scale: float, conf: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` class-balanced samples and their labels; `conf` > 0 keeps those the judge gives p(label) >= conf."""
        plan = ShardPlan.build(self.n, self.n, seed, [1.0] * self.k)
        got = draw_samples(members, plan.labels(0), plan.members(0, len(members)), plan.rng(0), latent_scale=scale,
                           judge=probabilities(self.judge) if conf > 0 else None, min_confidence=conf)
        return torch.from_numpy(got.images), torch.from_numpy(plan.labels(0))


def parse_variant(text: str, sep: str = ",") -> tuple[str, list[str]]:
    """`NAME:key=value<sep>key=value` -> (NAME, overrides); `NAME:` alone is the defaults."""
    name, _, sets = text.partition(":")
    return name, [s for s in sets.split(sep) if s]


def summarize_variant(name: str, recipe: str, rows: list[dict], real_t: float, **extra) -> dict:
    """Mean ± std over GAN seeds of a variant's rows (test_change, tstr, judge), printed and returned."""
    (dt, sd), (ts, ts_sd), (judge, _) = (mean_std([r[k] for r in rows]) for k in ("test_change", "tstr", "judge"))
    print(f"{name} over {len(rows)} seed(s): {recipe} test {100 * dt:+.2f} ± {100 * sd:.2f} points; "
          f"tstr {ts:.4f} ± {ts_sd:.4f} ({ts / real_t:.3f}x); judge {judge:.3f}", flush=True)
    return {"variant": name, **extra, "seeds": len(rows), "rows": rows, "test_change": dt, "test_std": sd, "tstr": ts,
            "tstr_std": ts_sd, "tstr_ratio": ts / real_t, "judge": judge, "real_test": real_t}


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options every low-data bench takes: the real fraction, GAN seeds and config overrides."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--seeds", default="0,1,2", help="GAN training seeds")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every GAN")
    return p


def start(args: argparse.Namespace, name: str) -> tuple[Path, list[str], list[int], LowData, tuple[float, float]]:
    """One thread, quiet logs, a scratch dir for the GANs' runs, the data at `--fraction`, and the
    real-only baseline (printed): (root, overrides, GAN seeds, data, (val, test) real only)."""
    setup_logging("WARNING")
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix=f"ganray-bench-{name}-"))
    over = [*args.overrides, f"data.train_fraction={args.fraction}"]
    data = LowData.at(over)
    real = data.mix50(None, None)
    print(f"real only: val {real[0]:.4f} test {real[1]:.4f}", flush=True)
    return root, over, [int(s) for s in args.seeds.split(",") if s], data, real
