"""A small CNN classifier: the domain feature extractor and the judge of synthetic-data utility.

Deliberately light (16/32/64 channels, ~2.3 M multiply-adds per 28x28 image): it is evaluated
on 10,000 generated samples during training, where it must stay a small fraction of the step
time on CPU, and it still reaches 99.4% on the digits test split (measured 99.44%). Training runs for a fixed
number of steps whatever the dataset size, so a 10% subset is not under-trained relative to
the full split, and it is deterministic given its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ganray.data.base import to_unit


class SmallCNN(nn.Module):
    def __init__(self, channels: int, num_classes: int, size: int, feature_dim: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * (size // 4) ** 2, feature_dim), nn.ReLU(),
        )
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)
        # NHWC: oneDNN runs these small convolutions and poolings up to 2.5x faster in it on CPU.
        self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.body(x)))


@dataclass(frozen=True)
class ClassifierConfig:
    steps: int = 500
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    shift: int = 2  # random translation in pixels: the classic augmentation for digits-like data
    degrees: float = 0.0  # random rotation within +-degrees about the centre (0 = none)
    scale: float = 0.0  # random zoom within 1 +- scale (0 = none)

    @classmethod
    def classic(cls, augment: str, **kw) -> "ClassifierConfig":
        """A config with the named classic augmentation (`AUGMENTATIONS`)."""
        return cls(**AUGMENTATIONS[augment], **kw)


# The named classic augmentations of the report's recipe classifiers (`eval.recipe_augment`).
AUGMENTATIONS: dict[str, dict[str, float]] = {
    "shift": {"shift": 2},
    "affine": {"shift": 2, "degrees": 10.0, "scale": 0.1},
}


def describe_augment(name: str) -> str:
    """The named augmentation in words, for the report: "random shift (2 px), rotation (±10°) and zoom (±10%)"."""
    a = {"shift": 0, "degrees": 0.0, "scale": 0.0, **AUGMENTATIONS[name]}
    parts = [f"shift ({a['shift']:g} px)"] if a["shift"] else []
    parts += [f"rotation (±{a['degrees']:g}°)"] if a["degrees"] else []
    parts += [f"zoom (±{100 * a['scale']:g}%)"] if a["scale"] else []
    if not parts:
        return "no"
    return "random " + (" and ".join([", ".join(parts[:-1]), parts[-1]]) if len(parts) > 1 else parts[0])


def augment(x: torch.Tensor, cfg: ClassifierConfig, gen: torch.Generator) -> torch.Tensor:
    """The classic augmentation `cfg` sets: a random rotation and zoom (when set), then the shift."""
    return random_shift(random_affine(x, cfg.degrees, cfg.scale, gen), cfg.shift, gen)


def random_affine(x: torch.Tensor, degrees: float, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Rotate each image by up to `degrees` and zoom it by up to 1 +- `scale`, filling with background (-1).

    Draws nothing from `gen` when both are 0, so a shift-only classifier's random stream (and
    every figure measured with it) is unchanged by this option.
    """
    if degrees <= 0 and scale <= 0:
        return x
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    zoom = 1 + (torch.rand(n, generator=gen) * 2 - 1) * scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) / zoom
    theta[:, 0, 1] = -torch.sin(angle) / zoom
    theta[:, 1, 0] = torch.sin(angle) / zoom
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # grid_sample fills outside the image with 0: sample x + 1 so the fill is background (-1).
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


def random_shift(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `pixels` in x and y, filling with background (-1)."""
    if pixels <= 0:
        return x
    n = x.shape[0]
    pad = F.pad(x, [pixels] * 4, value=-1.0)
    dy = torch.randint(0, 2 * pixels + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pixels + 1, (n,), generator=gen)
    h, w = x.shape[-2:]
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pixels)
    out = pad.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, cols)


def train_classifier(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: ClassifierConfig = ClassifierConfig(),
    progress: str | None = None,
) -> SmallCNN:
    """Train on uint8 images for `cfg.steps` steps; returns the model in eval mode.

    `progress` names a progress bar (shown on a terminal only): the domain classifier can take
    minutes on a busy CPU, and a person should see that it is working.
    """
    bar = tqdm(total=cfg.steps, desc=progress, unit="step", disable=None if progress else True, dynamic_ncols=True)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    c, h, _ = images.shape[1:]
    model = SmallCNN(c, num_classes, h)
    x_all, y_all = to_unit(images), labels.long()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    batch = min(cfg.batch_size, len(x_all))
    model.train()
    step = 0
    while step < cfg.steps:
        perm = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(perm) - batch + 1, batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(model(augment(x_all[idx], cfg, gen)), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            bar.update()
            if step == cfg.steps:
                break
    bar.close()
    return model.eval()


@dataclass(frozen=True)
class Mix:
    """Synthetic data fed alongside real data: a fixed share of every batch stays real.

    A fixed real share keeps the classifier anchored on real images however many synthetic ones
    there are; concatenating 5,000 synthetic images to 145 real ones made 97% of every batch
    synthetic and cost accuracy. `targets` are int labels or soft labels (N x classes).
    """

    images: torch.Tensor  # uint8 N x C x H x W
    targets: torch.Tensor
    real_share: float = 0.5


def _batches(n: int, size: int, gen: torch.Generator):
    """Endless shuffled index batches of `size` (with replacement when `size` exceeds `n`)."""
    while True:
        if size > n:
            yield torch.randint(0, n, (size,), generator=gen)
            continue
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - size + 1, size):
            yield perm[i : i + size]


def _soft(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    return targets.float() if targets.ndim == 2 else F.one_hot(targets.long(), num_classes).float()


def train_mixed(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, mix: Mix | None,
    cfg: ClassifierConfig = ClassifierConfig(), init: SmallCNN | None = None,
) -> SmallCNN:
    """Train on real uint8 images, with `mix.real_share` of each batch real and the rest synthetic.

    `mix=None` trains on real data only (as `train_classifier`, but with this batch schedule);
    `init` continues training a model (fine-tuning after pre-training on synthetic data).
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    c, h, _ = images.shape[1:]
    model = init.train() if init is not None else SmallCNN(c, num_classes, h)
    real_n = cfg.batch_size if mix is None else min(cfg.batch_size, max(1, round(mix.real_share * cfg.batch_size)))
    sources = [(to_unit(images), _soft(labels, num_classes), real_n)]
    if mix is not None and real_n < cfg.batch_size:
        sources.append((to_unit(mix.images), _soft(mix.targets, num_classes), cfg.batch_size - real_n))
    draws = [_batches(len(x), min(b, len(x)) if i == 0 else b, gen) for i, (x, _, b) in enumerate(sources)]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    for _ in range(cfg.steps):
        picks = [next(d) for d in draws]
        x = torch.cat([src[0][i] for src, i in zip(sources, picks)])
        t = torch.cat([src[1][i] for src, i in zip(sources, picks)])
        loss = F.cross_entropy(model(augment(x, cfg, gen)), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Class probabilities for uint8 images."""
    model.eval()
    return torch.cat([F.softmax(model(to_unit(images[i : i + batch_size])), 1) for i in range(0, len(images), batch_size)])


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predict(model, images).argmax(1) == labels).float().mean())


def images_ahead(a: float, b: float, n: int) -> float:
    """How many more of `n` images accuracy `a` gets right than `b` (fractional for means over seeds).

    Rounded to 9 places: "one image ahead" must be exactly 1.0, and the float error of k/n
    accuracies (and their means over seeds) otherwise lands it at 0.9999999999999964, so a rule
    "ahead by one image" missed recipes exactly one image ahead.
    """
    return round((a - b) * n, 9)
