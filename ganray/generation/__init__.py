"""Synthetic and augmented datasets: deterministic shards written by a Ray actor pool (DESIGN.md)."""
