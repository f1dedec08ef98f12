"""Metric names: a stem plus the extractor that produced it, so FIDs of different feature spaces never mix."""

from __future__ import annotations

# Every score that depends on a feature extractor starts with one of these; `cas_val` (synthetic-trained
# classifier accuracy on validation) depends on none, and is a score too.
SCORE_PREFIXES = ("fid_", "is_", "kid_", "precision_", "recall_", "f_score_", "cas_val")


def metric_name(stem: str, tag: str) -> str:
    """`fid` + `domain` -> `fid_domain`; `is_std` + `domain` -> `is_domain_std`."""
    if stem.endswith("_std"):
        return f"{stem[: -len('_std')]}_{tag}_std"
    return f"{stem}_{tag}"


def headline(metrics: dict) -> dict:
    """The scores worth printing: extractor-tagged, without their standard deviations."""
    return {k: v for k, v in metrics.items() if k.startswith(SCORE_PREFIXES) and not k.endswith("_std")}
