"""Entry point for `ray job submit --working-dir . -- python jobs/evaluate.py --config FILE.yaml [--run DIR | --generator DIR]`.

Evaluation runs in the job's driver process; it needs no workers.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's ganray

from ganray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
