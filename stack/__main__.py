"""``python -m stack``: see :mod:`stack.stack_test`."""

from stack.stack_test import main

raise SystemExit(main())
