"""The one exception type users see.

Anything the user can fix (bad config, missing file, wrong shape) is raised as
`GanrayError` with a one-line message naming the problem and the fix; the CLI prints it
without a traceback and exits non-zero. Everything else is a bug and keeps its traceback.
"""


class GanrayError(Exception):
    """A user-facing error: one line, names the problem and how to fix it."""


def user_error(err: BaseException) -> GanrayError | None:
    """The one-line GanrayError a Ray worker, actor or task raised, out of Ray's wrappers; None if there is none."""
    failures = getattr(err, "worker_failures", None) or {}
    for e in [*failures.values(), err]:
        while e is not None:
            if isinstance(e, GanrayError) and "GanrayError: " not in str(e):
                return GanrayError(str(e).strip().splitlines()[-1])
            text = str(e)
            if "GanrayError: " in text:
                return GanrayError(text.split("GanrayError: ")[-1].splitlines()[0])
            e = e.__cause__
    return None
