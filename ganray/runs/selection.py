"""Which checkpoint a run exports: chosen by a metric measured on validation, not by being last.

`export.select=cas_val` picks the evaluated step whose synthetic-trained classifier scored best
on the validation split; `fid` the lowest FID; `last` the newest checkpoint. Checkpoint pruning
keeps the selected one (`protected`), so selection always has its checkpoint to export.
"""

from __future__ import annotations

from typing import Callable

from ganray.runs.checkpoint import checkpoint_name

# select -> (does this metric key count, is a better than b)
_CRITERIA: dict[str, tuple[Callable[[str], bool], Callable[[float, float], bool]]] = {
    "cas_val": (lambda k: k == "cas_val", lambda a, b: a > b),
    "fid": (lambda k: k.startswith("fid_") and not k.endswith("_std"), lambda a, b: a < b),
}


def best_step(lines: list[dict], select: str, steps: set[int] | None = None) -> tuple[int, str, float] | None:
    """(step, metric, value) of the best evaluated step (among `steps` when given); None for `last` or no metric.

    Ties go to the earlier step: the later one is not better by the measure that decides.
    """
    if select not in _CRITERIA:
        return None
    counts, better = _CRITERIA[select]
    best: tuple[int, str, float] | None = None
    for line in lines:
        step = line.get("step")
        if step is None or (steps is not None and step not in steps):
            continue
        for key, value in line.items():
            if counts(key) and isinstance(value, (int, float)) and (best is None or better(value, best[2])):
                best = (int(step), key, float(value))
    return best


def protected(lines: list[dict], select: str) -> set[str]:
    """Checkpoint names pruning must keep so the selected step stays exportable."""
    found = best_step(lines, select)
    return {checkpoint_name(found[0])} if found else set()
