"""``python -m gwtools``: the same command line as the ``gwtools`` script."""

import sys

from gwtools.cli import main

sys.exit(main())
