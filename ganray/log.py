"""Logging setup shared by the CLI, jobs and Ray workers."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    level = level or os.environ.get("GANRAY_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level.upper(), format=FORMAT, datefmt="%H:%M:%S")
    logging.getLogger("ganray").setLevel(level.upper())
