"""Entry point for `ray job submit --working-dir . -- python jobs/generate.py --config FILE.yaml [--set k=v]`.

Inside a job, Ray sets RAY_ADDRESS, so the job joins the cluster the job was submitted to.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's ganray

from ganray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
