"""Ray Train's failure policy, less the retries of errors that a retry cannot fix.

Ray Train retries every worker error up to `FailureConfig(max_failures)`. For a dead node or a
killed worker that is right; for a GanrayError (an unsafe checkpoint, bad data, divergence) it
repeats the same failure, with a traceback each time, and buries the one line that says what
to fix. This policy raises those on the first attempt and leaves everything else to Ray's own.

Ray 2.60 has no public hook for a failure policy: `fail_fast_on_user_errors` swaps the factory
`DataParallelTrainer.fit` calls, for the duration of one `fit()`. The policy object is sent to
Ray Train's controller actor, so this module stays light (no torch) to import there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy
from ray.train.v2._internal.execution.failure_handling.failure_policy import FailureDecision
from ray.train.v2.api.exceptions import TrainingFailedError

from ganray.errors import user_error


class UserErrorsFailFast(DefaultFailurePolicy):
    def make_decision(self, training_failed_error: TrainingFailedError) -> FailureDecision:
        if user_error(training_failed_error) is not None:
            return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


@contextlib.contextmanager
def fail_fast_on_user_errors() -> Iterator[None]:
    from ray.train.v2.api import data_parallel_trainer as dpt

    original = dpt.create_failure_policy
    dpt.create_failure_policy = UserErrorsFailFast
    try:
        yield
    finally:
        dpt.create_failure_policy = original
