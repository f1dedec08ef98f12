"""`python -m ganray ...` runs the same CLI as the `ganray` script."""

import sys

from ganray.cli import main

sys.exit(main())
