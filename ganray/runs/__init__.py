"""Run artifacts: the run directory's layout, its checkpoints, the exported generator, which
checkpoint selection keeps, and the lock that makes one process its only writer.

Training writes these; evaluation, reports, sweeps and generation read them. None of it needs
the training loop, so everything that only reads a run imports this package, not `training`.
"""
