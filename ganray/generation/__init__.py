"""Synthetic and augmented datasets: deterministic shards written by a Ray actor pool (docs/contracts.md)."""
