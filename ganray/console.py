"""What a person sees: ganray's own lines and a progress bar, not Ray's internals.

Ray streams every line its workers and controllers print to the driver's console, with ANSI
colour prefixes: per-checkpoint `TrainingReport(...)` dumps, controller bookkeeping, C++
`core_worker.cc` lines that look like failures but are not. ganray's workers mark their own log
lines (`MARK`), and the driver replaces Ray's printer with `DriverConsole`, which shows only
marked lines, turns rank 0's `step N/M` lines into a progress bar on a terminal, and lets
everything else through unchanged (without colour) at `--log-level debug`. Ray's own files
under its session directory still hold every line.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any, TextIO

from tqdm import tqdm

MARK = "[ganray] "
WORKER_FORMAT = MARK + "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the CLI's own format, marked
_STEP = re.compile(r"\bstep (\d+)/(\d+)\b")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def worker_logging(level: str) -> None:
    """In a Ray worker or actor: ganray's records go to stderr, marked for the driver's console."""
    logger = logging.getLogger("ganray")
    if any(getattr(h, "ganray_worker", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(WORKER_FORMAT, datefmt="%H:%M:%S"))
    handler.ganray_worker = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False  # not also through Ray's own worker log format
    logger.setLevel(level.upper())


class DriverConsole:
    """Ray's stdstream handler, filtered: ganray lines (with a training bar), or everything when verbose."""

    def __init__(self, verbose: bool, sink: TextIO | None = None) -> None:
        self.verbose = verbose
        self.sink = sink
        self.bar: tqdm | None = None
        self.lock = threading.Lock()

    def lines(self, data: dict[str, Any]) -> list[str]:
        """The lines of one batch that a person should see, unmarked and uncoloured."""
        out = []
        for line in data.get("lines", []):
            if MARK in line:
                out.append(line[line.index(MARK) + len(MARK):])
            elif self.verbose:
                who = data.get("actor_name") or data.get("task_name") or "worker"
                out.append(f"({who} pid={data.get('pid')}) {_ANSI.sub('', line)}")
        return out

    def __call__(self, data: dict[str, Any]) -> None:
        sink = self.sink or (sys.stderr if data.get("is_err") else sys.stdout)
        with self.lock:
            for line in self.lines(data):
                self._progress(line, sink)
                tqdm.write(line, file=sink)

    def _progress(self, line: str, sink: TextIO) -> None:
        m = _STEP.search(line)
        if m is None:
            return
        step, total = int(m.group(1)), int(m.group(2))
        if self.bar is None or self.bar.total != total:
            if self.bar is not None:
                self.bar.close()
            # disable=None: a bar on a terminal only; logs and files get the plain lines.
            self.bar = tqdm(total=total, desc="training", unit="step", file=sink, disable=None, dynamic_ncols=True)
        self.bar.update(max(0, step - self.bar.n))
        if step >= total:
            self.bar.close()
            self.bar = None


def install_console(verbose: bool) -> None:
    """Swap Ray's worker-log printer for `DriverConsole` in this (driver) process."""
    from ray._private import ray_logging

    dispatcher = ray_logging.global_worker_stdstream_dispatcher
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.remove_handler("ganray_console")
    dispatcher.add_handler("ganray_console", DriverConsole(verbose))
