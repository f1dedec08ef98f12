"""The one exception type users see.

Anything the user can fix (bad config, missing file, wrong shape) is raised as
`GanrayError` with a one-line message naming the problem and the fix; the CLI prints it
without a traceback and exits non-zero. Everything else is a bug and keeps its traceback.
"""


class GanrayError(Exception):
    """A user-facing error: one line, names the problem and how to fix it."""
