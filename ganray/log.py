"""Logging setup shared by the CLI, jobs and Ray workers."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    level = level or os.environ.get("GANRAY_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level.upper(), format=FORMAT, datefmt="%H:%M:%S")
    logging.getLogger("ganray").setLevel(level.upper())
    # boto3/botocore log where they found credentials and endpoints at INFO: noise in every actor.
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger("ganray").level))
