"""The one typed config tree, loaded from YAML with `--set section.key=value` overrides.

Validation happens at load time so a typo fails before any Ray worker starts: unknown keys
and wrong types are errors naming the dotted key.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ganray.errors import GanrayError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True, validate_default=True)


class DataConfig(_Section):
    source: str = Field("digits", description="name in the data registry (ganray.data.registry.SOURCES)")
    path: str | None = Field(None, description="directory or s3:// prefix; unused for digits")
    image_size: int = Field(28, ge=8, le=256, description="images are resized to this")
    channels: Literal[1, 3] = 1
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="held out when a source has no test split")
    train_fraction: float = Field(1.0, gt=0.0, le=1.0, description="use a class-stratified subset of train")
    val_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="class-stratified share of train (after train_fraction) held out for "
        "selection decisions; models never train on it, and test is read only for final numbers; 0 = off",
    )
    split_seed: int = 0

    @field_validator("image_size")
    @classmethod
    def _multiple_of_four(cls, v: int) -> int:
        if v % 4:
            raise ValueError(f"must be a multiple of 4 (the generator upsamples twice), got {v}")
        return v


class ModelConfig(_Section):
    arch: str = Field("cdcgan", description="name in the model registry (ganray.models)")
    z_dim: int = Field(100, ge=1, le=4096)
    width: float = Field(0.5, gt=0.0, le=8.0, description="channel multiplier (the article's model is 1.0)")
    spectral_norm: bool = Field(True, description="spectral norm on D's layers")
    d_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after D's convs (the article uses 0.3)")


class LossConfig(_Section):
    kind: Literal["minimax", "hinge"] = "hinge"
    diffaugment: str | None = Field(
        None, description="comma list of color,translation,cutout; empty for none; unset = translation for training "
        "sets of at most eval.recipe_prior_max_per_class images per class (where the report's recommended use of the "
        "samples is a mix with real images, which translation-augmented GANs served better), none above (where the "
        "samples stand alone, and GANs without augmentation train a classifier better on them)",
    )
    lecam: float = Field(0.0, ge=0.0, description="weight of the LeCam regularizer on D's logits (0.3 in its paper for low data); 0 = off")
    ada_target: float = Field(
        0.0, ge=0.0, lt=1.0, description="adaptive augmentation: p rises while E[sign(D(real))] exceeds this target "
        "(ADA uses 0.6); 0 = off, DiffAugment always applied",
    )
    ada_kimg: float = Field(100.0, gt=0.0, description="thousands of images for the adaptive probability to go from 0 to 1")
    mode_seeking: float = Field(
        1.0, ge=0.0, allow_inf_nan=False, description="mode-seeking regularizer (MSGAN) at this weight: G is penalized "
        "when two noises for one label give similar images, against mode collapse (raised train-on-synthetic on "
        "digits and MNIST at 2,400 steps); logged as ms_ratio; 0 = off",
    )
    mode_seeking_warmup: int = Field(
        1200, ge=0, description="steps over which the mode-seeking weight rises linearly from 0 to loss.mode_seeking, "
        "so G learns the classes before it is pushed toward variety; 0 = full weight from the first step",
    )
    class_weight: float | None = Field(
        None, ge=0.0, allow_inf_nan=False, description="auxiliary classifier (AC-GAN) on D's features: D learns the "
        "classes of real images and G is pushed toward samples it reads as their label, at this weight; 0 = off; "
        "unset = 1.0 on class-conditional models, off on unconditional ones",
    )

    @field_validator("diffaugment")
    @classmethod
    def _known_policies(cls, v: str | None) -> str | None:
        if v is None:
            return None
        known = {"color", "translation", "cutout"}
        names = [p.strip() for p in v.split(",") if p.strip()]
        bad = [p for p in names if p not in known]
        if bad:
            raise ValueError(f"unknown DiffAugment policy {bad[0]!r}; use a comma list of {sorted(known)}")
        return ",".join(names)


class TrainConfig(_Section):
    steps: int = Field(2400, ge=1)
    batch_size: int = Field(64, ge=1, description="global batch, split evenly across workers")
    lr_g: float = Field(2e-4, gt=0.0, allow_inf_nan=False)
    lr_d: float = Field(2e-4, gt=0.0, allow_inf_nan=False)
    beta1: float = Field(0.0, ge=0.0, lt=1.0)
    beta2: float = Field(0.9, ge=0.0, lt=1.0)
    adam_eps: float = Field(1e-7, gt=0.0, description="Keras' Adam default")
    ema_decay: float = Field(
        0.999, ge=0.0, lt=1.0,
        description="0 disables the EMA generator; warmed up as min(decay, (1+step)/(10+step)), so it reaches 0.999 after ~9,000 steps",
    )
    seed: int = 0
    log_every: int = Field(50, ge=1)
    sample_every: int = Field(600, ge=1)
    checkpoint_every: int = Field(600, ge=1)
    keep_checkpoints: int = Field(3, ge=1)
    amp: Literal["none", "bf16"] = Field("none", description="bf16 autocast, GPU only")
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = Field(
        "none", description="torch.compile G and D in this mode (reduce-overhead: CUDA graphs on GPU); the first "
        "steps pay the compile time",
    )
    channels_last: bool = Field(True, description="NHWC memory format for G and D (oneDNN on CPU, tensor cores on GPU)")
    sync_batchnorm: bool = Field(
        False, description="with several workers, G's BatchNorm uses the global batch's statistics (2 all-reduces per layer per step)",
    )
    threads_per_worker: int = Field(0, ge=0, description="torch threads per worker; 0 = the worker's CPUs")


class EvalConfig(_Section):
    every: int = Field(1200, ge=0, description="evaluate every K training steps (and at the end); 0 = off")
    num_samples: int = Field(10000, ge=20, description="generated samples per evaluation")
    extractor: Literal["domain", "inception"] = Field("domain", description="feature extractor for the metrics")
    inception_weights: str | None = Field(None, description="local InceptionV3 weights (torch-fidelity's pt-inception file)")
    metrics: list[str] = Field(
        default_factory=lambda: ["fid", "isc", "kid", "prc"], min_length=1,
        description="names in the metric registry (ganray.metrics.names.FIDELITY): fid, isc, kid, prc",
    )
    real_split: Literal["train", "test"] = Field("train", description="real split the metrics compare against")
    kid_subset_size: int = Field(1000, ge=2, description="lowered to the sample count when fewer")
    kid_subsets: int = Field(50, ge=1, description="KID subsets averaged (torch-fidelity's default is 100)")
    prc_samples: int = Field(
        5000, ge=20, description="precision/recall compare at most this many generated and real samples, equally many "
        "of each (a seeded subset; its k-NN radii cost grows with the square)",
    )
    batch_size: int = Field(256, ge=1, description="sampling and feature batch (256 suits CPU caches; raise it on GPUs)")
    seed: int = Field(0, description="noise and labels of the evaluated samples")
    classifier_steps: int = Field(500, ge=1, description="training steps of the domain classifier / report judge")
    cas_samples: int = Field(
        2000, ge=0, description="synthetic samples of cas_val (train on synthetic, accuracy on validation) at each evaluation; 0 = off",
    )
    cas_steps: int = Field(200, ge=1, description="classifier steps of cas_val: a small fixed budget, the same for every checkpoint")
    report_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="classifier seeds the report averages over")
    report_fractions: list[float] = Field(default_factory=lambda: [0.1, 0.25, 1.0], description="real-train fractions of the low-data study")
    report_steps: Literal["same", "scaled"] = Field(
        "same", description="training steps of the low-data study's GAN for a smaller fraction f of the run's data: "
        "same = train.steps; scaled = train.steps x sqrt(f / data.train_fraction), cheaper but measured worse at 10% digits",
    )
    report_samples: int = Field(5000, ge=10, description="class-balanced synthetic samples per classifier in the report")
    recipe_steps: int = Field(
        1000, ge=1, description="classifier steps of every downstream recipe the report compares, real only included: "
        "real only still gains ~0.5 points from 500 to 1,000 steps on 100-800 images and no more after, so a smaller "
        "budget would credit synthetic data with what more steps give",
    )
    recipe_augment: Literal["shift", "affine"] = Field(
        "affine", description="classic augmentation of every classifier the report trains on real or synthetic data: "
        "train-on-synthetic's two arms and every recipe's, real only's included (ganray.metrics.classifier.AUGMENTATIONS; "
        "the judge and the domain classifier keep the shift): shift = random 2-pixel translation; affine = also a "
        "random rotation within +-10 degrees and zoom within +-10%. affine raised real only by 0.46 points on MNIST "
        "82/class and digits 25%, and the prior recipe by 0.38 (MNIST), 0.40 (digits 25%) and 0.15 (digits 10%, "
        "noise), 3 GANs x 3 classifier seeds; train-on-synthetic 0.967x -> 0.980x of real on full digits, 0.949x -> 0.944x on MNIST 82/class (3 GANs each)",
    )
    recipe_prior: str | None = Field(
        "mix-50-ns", description="the recipe the report chooses when validation cannot tell the recipes apart "
        "(none beats real by one validation image), if the training set is under recipe_prior_max_per_class, the prior "
        "is within one image of real and the judge agrees with at least recipe_min_agreement of the generator's labels; "
        "null = real only on a tie. mix-50-ns (noisy student: taught by mix-50-ens-hard's classifiers) with affine "
        "classifiers: digits 10% +1.18 +- 0.28 points over real only, MNIST 82/class +0.28 +- 0.08, digits 25% +0.50 +- 0.14 "
        "(3 GANs x 3 classifier seeds); mix-50-ens-hard +0.80 +- 0.14, +0.24 +- 0.22, +0.50 +- 0.21",
    )
    recipe_min_agreement: float = Field(0.9, ge=0.0, le=1.0, description="the prior's gate: the real-trained judge's "
                                        "agreement with the generator's labels on 1,000 class-balanced samples")
    recipe_prior_max_per_class: float | None = Field(
        100.0, gt=0, description="the prior is considered only for training sets of at most this many images per class "
        "(mean: train images / classes); null = any size. mix-50-ens gained at 12 and 82 per class (digits 10%, MNIST), "
        "nothing measurable at 29 (digits 25%), and lost 0.37 points at 115 (digits 100%) and 0.03 at 240 (MNIST)",
    )
    recipes: list[str] = Field(
        default_factory=lambda: ["real", "mix-50", "mix-75", "mix-50-soft"],
        description="downstream recipes the report compares on validation (names in ganray.metrics.recipes); real is always one",
    )

    @field_validator("metrics")
    @classmethod
    def _once_each(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _inception_needs_weights(self) -> "EvalConfig":
        if self.extractor == "inception" and not self.inception_weights:
            raise ValueError(
                "eval.extractor=inception needs eval.inception_weights, a local weights file (nothing is downloaded)"
            )
        return self

    @field_validator("report_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 < f <= 1.0 for f in v):
            raise ValueError("must be fractions in (0, 1], e.g. [0.1, 0.25, 1.0]")
        return sorted(set(v))

    @field_validator("report_seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("needs at least one seed")
        return v


class StorageConfig(_Section):
    runs_dir: str = "runs"
    cache_dir: str = Field("~/.cache/ganray", description="domain classifiers and real-data feature statistics")
    run_name: str | None = Field(None, description="defaults to <arch>-<timestamp>")
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint, e.g. http://host:8333; None = AWS or $AWS_ENDPOINT_URL"
    )
    region: str | None = Field(None, description="S3 region; None = boto3's chain ($AWS_REGION, ~/.aws/config)")
    max_attempts: int = Field(5, ge=1, le=20, description="S3 attempts per request, retries included")

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {v!r}")
        if "@" in v.split("://", 1)[1].split("/", 1)[0]:
            # Configs are written into run and sweep directories; keys belong to the AWS credential chain.
            raise ValueError("must not contain credentials (user:password@); use AWS_ACCESS_KEY_ID/a profile/an instance role")
        return v

    @field_validator("run_name")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or v in {".", ".."}):
            raise ValueError(f"must be a plain directory name, got {v!r}")
        return v


class RayConfig(_Section):
    address: str | None = Field(None, description="cluster address; None = running cluster or a new local one")
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    max_failures: int = Field(2, ge=0, description="worker failures Ray Train recovers from")
    placement: Literal["pack", "spread"] = Field(
        "pack", description="train workers and shard actors: pack = fill a node first (fast all-reduce); spread = across nodes",
    )


class TuneConfig(_Section):
    space: dict[str, dict[str, list[Any]]] = Field(
        default_factory=lambda: {
            "train.lr_g": {"loguniform": [5e-5, 1e-3]},
            "train.lr_d": {"loguniform": [5e-5, 1e-3]},
            "model.width": {"choice": [0.25, 0.5, 1.0]},
        },
        description="config key -> {loguniform|uniform|randint: [low, high]} or {choice: [values]}",
    )
    num_samples: int = Field(8, ge=1, description="trials to run")
    max_concurrent: int = Field(0, ge=0, description="trials at once; 0 = as many as the cluster's CPUs allow")
    metric: Literal["fid", "cas_val"] = Field(
        "fid", description="objective: fid (minimized) or cas_val, synthetic-trained accuracy on validation (maximized)",
    )
    scheduler: Literal["asha", "pbt", "fifo"] = "asha"
    search: Literal["random", "optuna"] = Field("random", description="search algorithm")
    grace_period: int = Field(1, ge=1, description="evaluations a trial gets before ASHA may stop it")
    reduction_factor: int = Field(3, ge=2, description="ASHA keeps 1/reduction_factor of trials per rung")
    perturbation_interval: int = Field(2, ge=1, description="PBT: evaluations between exploit/explore steps")
    gpus_per_trial: float = Field(1.0, gt=0.0, description="GPUs per trial when ray.use_gpu (fractions share a GPU)")
    export_top_k: int = Field(
        1, ge=1, description="also export the best checkpoint of each of the top k trials to top/1 ... top/k, "
        "for an ensemble (ganray generate --generator top/1 --generator top/2 ...)",
    )
    seed: int = Field(0, description="seeds the search algorithm's sampling")


class ExportConfig(_Section):
    select: Literal["cas_val", "fid", "last"] = Field(
        "cas_val", description="which checkpoint becomes <run>/generator: best cas_val (utility on validation), "
        "lowest FID, or the last; falls back to last when the run has no such metric",
    )


MAX_SAMPLES_PER_OUTPUT = 100_000_000  # about 2.4 GB of label plan at its peak


class GenerateConfig(_Section):
    out: str | None = Field(None, description="output directory or s3://bucket/prefix for shards and manifest.json")
    num_samples: int = Field(10000, ge=1, description="samples to generate (augment: ignored, set by the data)")
    shard_size: int = Field(1000, ge=1, description="samples per shard")
    seed: int = Field(0, description="shard s depends only on (seed, s)")
    classes: list[float] | None = Field(None, description="class proportions, one per class; None = balanced")
    min_confidence: Annotated[float, Field(ge=0.0, lt=1.0)] | Literal["auto"] = Field(
        0.0, description="quality filter: keep samples the domain classifier assigns to their class with at least this probability; "
        "0 = off; auto = the threshold whose samples train the best classifier on the validation split (recorded in the manifest)"
    )
    latent_scale: Annotated[float, Field(gt=0.0, le=4.0)] | Literal["auto"] = Field(
        1.0, description="noise is multiplied by this: below 1 trades diversity for fidelity (truncation), above 1 the reverse; "
        "auto = searched on the validation split like min_confidence; recorded in the manifest",
    )
    soft_labels: bool = Field(
        False, description="add the teacher's class probabilities of each sample to its .json (soft_label), for distillation"
    )
    teacher: str = Field(
        "judge", description="whose class probabilities make soft_label and rank uncertain_share: judge = the domain classifier; "
        "a recipe's name = the mean of the report's classifiers of that recipe (eval.report_seeds, eval.recipe_steps, "
        "eval.report_samples), trained on the generator's training data: real = the real-only ones (the mix-*-ens "
        "recipes' teacher), mix-50-ens-hard = its students (mix-50-ns's teacher)",
    )
    uncertain_share: float = Field(
        0.0, ge=0.0, lt=1.0, description="this share of each shard's samples, class by class, is the teacher's least certain "
        "(highest entropy) of 4x as many candidates; the rest are drawn at random; 0 = off (the report's *-hard recipes: 0.5)",
    )
    num_actors: int = Field(
        0, ge=0, description="Ray actors writing shards; 0 = one per ray.cpus_per_worker CPUs in the cluster (with ray.use_gpu, "
        "no more than its GPUs / generate.gpus_per_actor)",
    )
    gpus_per_actor: float = Field(
        1.0, gt=0.0, le=1.0, description="GPU share of each actor with ray.use_gpu: an actor encodes its PNGs in one thread, "
        "so one actor per GPU leaves the GPU idle (H200: 5,900 img/s end to end, forward 269,000); 0.125 runs 8 actors on a GPU",
    )
    batch_size: int = Field(256, ge=1, description="generator forward batch (256 suits CPU caches; raise it on GPUs)")
    overwrite: bool = Field(False, description="replace an output that holds another generator's or seed's shards")
    png_compress_level: int = Field(6, ge=0, le=9, description="zlib level of each PNG: 0 = stored (fastest, largest), 9 = smallest")
    augment_copies: int = Field(4, ge=1, description="augment: augmented copies per real image (originals are kept too)")
    augment_ops: list[Literal["affine", "elastic", "color"]] = Field(
        default_factory=lambda: ["affine", "elastic"], description="augment: torchvision v2 transforms; color applies to RGB only"
    )

    @field_validator("num_samples")
    @classmethod
    def _plannable(cls, v: int) -> int:
        if v > MAX_SAMPLES_PER_OUTPUT:
            raise ValueError(
                f"generate.num_samples={v} is more than one output holds ({MAX_SAMPLES_PER_OUTPUT:,}: the shard plan keeps "
                "every label in memory); write several outputs, each with its own generate.out and generate.seed"
            )
        return v


class Config(_Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    storage: StorageConfig = StorageConfig()
    ray: RayConfig = RayConfig()
    tune: TuneConfig = TuneConfig()
    export: ExportConfig = ExportConfig()
    generate: GenerateConfig = GenerateConfig()

    @model_validator(mode="after")
    def _batch_splits(self) -> "Config":
        if self.train.batch_size % self.ray.num_workers:
            raise ValueError(
                f"train.batch_size={self.train.batch_size} must be divisible by "
                f"ray.num_workers={self.ray.num_workers}"
            )
        return self

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the given sections (all if none): names runs and caches."""
        data = self.model_dump()
        if sections:
            data = {k: data[k] for k in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` as a float (YAML 1.1 needs `1.0e-4`, a common trap for lrs)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _printable(text: str) -> str:
    """User-supplied key names may hold newlines or control characters; errors stay one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    # A union adds its member's tag to the location ("generate.latent_scale.constrained-float"); config keys never hold "-" or "[".
    loc = _printable(".".join(str(p) for p in first["loc"] if not re.search(r"[-\[]", str(p))))
    msg = _printable(first["msg"])
    if first["type"] == "extra_forbidden":
        return f"unknown config key '{loc}'; check the spelling (see README, Configuration)"
    if first["type"] in {"model_type", "model_attributes_type", "dict_type"}:
        return f"config key '{loc}' must be a mapping"
    where = f" '{loc}'" if loc else ""
    return f"invalid config{where}: {msg.removeprefix('Value error, ')}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b=value`; the value is parsed as YAML so `3`, `1e-4`, `true` get their types."""
    if "=" not in text:
        raise GanrayError(f"--set {text!r} is not key=value; write e.g. --set train.steps=100")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):  # also keeps the error below on one line
        raise GanrayError(f"--set key {key!r} must be section.key, e.g. train.steps")
    try:
        value = _yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_override(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    node: Any = tree
    schema: Any = Config
    for i, part in enumerate(parts):
        fields = schema.model_fields if isinstance(schema, type) and issubclass(schema, BaseModel) else None
        if fields is None or part not in fields:
            raise GanrayError(
                f"--set {'.'.join(parts)}: unknown config key '{'.'.join(parts[: i + 1])}'; "
                "see README, Configuration"
            )
        schema = fields[part].annotation
        if i == len(parts) - 1:
            node[part] = value
        else:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML file <- `--set` overrides, validated once at the end."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise GanrayError(f"config file {str(p)!r} is a directory; pass a YAML file to --config (e.g. configs/demo.yaml)")
        if not p.is_file():
            raise GanrayError(f"config file {str(p)!r} does not exist; pass an existing YAML file to --config")
        try:
            loaded = _yaml(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise GanrayError(f"config file {str(p)!r}{where} is not valid YAML; fix the syntax") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise GanrayError(f"config file {str(p)!r} must hold a mapping of sections (data:, train:, ...)")
        tree = loaded
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(tree, parts, value)
    return validate_config(tree)


def validate_config(tree: Any) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise GanrayError(_format_error(e)) from None


def parse_config(text: str | bytes) -> Config:
    """A config written by `dump_config` (a run's or sweep's config.yaml); GanrayError if unreadable."""
    try:
        return validate_config(_yaml(text.decode() if isinstance(text, bytes) else text))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise GanrayError(f"not a valid YAML config ({type(e).__name__})") from None


def read_stored_config(store: Any, where: str) -> Config | None:
    """The `config.yaml` a run or sweep directory keeps in `store`; None when there is none.

    `where` names the directory in the error ("run dir '...'", "sweep dir '...'").
    """
    try:
        raw = store.read_bytes("config.yaml")
    except FileNotFoundError:
        return None
    try:
        return parse_config(raw)
    except GanrayError as e:
        raise GanrayError(f"{where} holds an unreadable config.yaml ({e}); choose another storage.run_name") from None


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)
