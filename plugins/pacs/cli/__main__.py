"""``python -m pacs.cli``: the ``pacs`` command."""

from pacs.cli import main

raise SystemExit(main())
