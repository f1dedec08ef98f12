"""Metric names: a stem plus the extractor that produced it, so FIDs of different feature spaces never mix."""

from __future__ import annotations

from ganray.errors import GanrayError

# The one list of fidelity metrics: each `eval.metrics` name (also torch-fidelity's switch for it),
# and the torch-fidelity results it yields under ganray's name stems. Adding a metric is one entry.
FIDELITY: dict[str, dict[str, str]] = {
    "fid": {"frechet_inception_distance": "fid"},
    "isc": {"inception_score_mean": "is", "inception_score_std": "is_std"},
    "kid": {"kernel_inception_distance_mean": "kid", "kernel_inception_distance_std": "kid_std"},
    "prc": {"precision": "precision", "recall": "recall", "f_score": "f_score"},
}
# torch-fidelity result key -> ganray name stem (the extractor tag is appended).
RESULT_STEMS: dict[str, str] = {key: stem for results in FIDELITY.values() for key, stem in results.items()}
# Every score that depends on a feature extractor starts with one of these; `cas_val` (synthetic-trained
# classifier accuracy on validation) depends on none, and is a score too.
SCORE_PREFIXES: tuple[str, ...] = (
    *dict.fromkeys(f"{stem}_" for stem in RESULT_STEMS.values() if not stem.endswith("_std")), "cas_val",
)


def check_metrics(names: list[str]) -> list[str]:
    """`eval.metrics` against the registry: a typo is one line before any work."""
    bad = [n for n in names if n not in FIDELITY]
    if bad:
        raise GanrayError(f"unknown metric {bad[0]!r} in eval.metrics; use names from {', '.join(FIDELITY)}")
    return names


def metric_name(stem: str, tag: str) -> str:
    """`fid` + `domain` -> `fid_domain`; `is_std` + `domain` -> `is_domain_std`."""
    if stem.endswith("_std"):
        return f"{stem[: -len('_std')]}_{tag}_std"
    return f"{stem}_{tag}"


def headline(metrics: dict) -> dict:
    """The scores worth printing: extractor-tagged, without their standard deviations."""
    return {k: v for k, v in metrics.items() if k.startswith(SCORE_PREFIXES) and not k.endswith("_std")}
