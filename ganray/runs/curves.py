"""TensorBoard curves for every run: the logged scalars and sample grids, beside metrics.jsonl.

    <run>/tensorboard/events.out.tfevents.*

so `tensorboard --logdir runs/` (or an s3:// runs prefix copied down) shows losses, FID, cas_val
and the samples of every run side by side. metrics.jsonl stays the contract that ganray reads;
these files are for people. A resumed run opens a new event file whose first step purges the
old incarnation's later events, so the curves match the truncated metrics.jsonl.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ganray.storage import Store

TENSORBOARD = "tensorboard"


class Curves:
    """Rank 0's TensorBoard writer for one run; opened at its first logged step."""

    def __init__(self, store: Store, local: Path | None) -> None:
        self.store, self.local = store, local
        self._writer = None
        self._staging: Path | None = None  # S3 runs write locally and upload at each flush

    def _open(self, step: int):
        from torch.utils.tensorboard import SummaryWriter

        if self.local is not None:
            logdir = self.local / TENSORBOARD
        else:
            self._staging = logdir = Path(tempfile.mkdtemp(prefix="ganray-tensorboard-"))
        self._writer = SummaryWriter(str(logdir), purge_step=step, flush_secs=30)
        return self._writer

    def scalars(self, step: int, metrics: dict) -> None:
        writer = self._writer or self._open(step)
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(key, value, step)

    def samples(self, step: int, png: bytes) -> None:
        writer = self._writer or self._open(step)
        grid = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        writer.add_image("samples", grid, step, dataformats="HWC")

    def flush(self) -> None:
        """Durable now: on local disk the event file is flushed; on S3 it is uploaded whole."""
        if self._writer is None:
            return
        self._writer.flush()
        if self._staging is not None:
            for path in sorted(self._staging.iterdir()):
                self.store.write_bytes(f"{TENSORBOARD}/{path.name}", path.read_bytes())

    def close(self) -> None:
        if self._writer is not None:
            self.flush()
            self._writer.close()
            self._writer = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
