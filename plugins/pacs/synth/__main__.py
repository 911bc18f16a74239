"""``python -m pacs.synth ...``: the same as ``pacs synth ...`` (see :mod:`pacs.cli.synth`)."""

from pacs.cli.synth import main

raise SystemExit(main())
