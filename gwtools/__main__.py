"""``python -m gwtools`` is the same as the ``gwtools`` command."""

from gwtools.cli import main

raise SystemExit(main())
