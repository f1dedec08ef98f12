"""Logging setup shared by the CLI, jobs and Ray workers."""

from __future__ import annotations

import logging
import os

from ganray.console import worker_logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | None = None, worker: bool = False) -> None:
    """The CLI's console format; in a Ray worker (`worker=True`), lines marked for the driver's console."""
    level = level or os.environ.get("GANRAY_LOG_LEVEL", "INFO")
    if worker:
        worker_logging(level)
    else:
        logging.basicConfig(level=level.upper(), format=FORMAT, datefmt="%H:%M:%S")
    logging.getLogger("ganray").setLevel(level.upper())
    # boto3/botocore log where they found credentials and endpoints at INFO: noise in every actor.
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger("ganray").level))
