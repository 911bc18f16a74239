"""``pacs purge``: delete rejected (and, with ``--retention``, expired) instances from both tiers.

Argument parsing only; the work is :mod:`pacs.admin.purge` (a recorded plan, then delete, verify
and commit, with an audit row per deleted copy in table ``deletion``). Prints the plan's counts as
JSON: instances, bytes, by reason, refused (held, pinned, migrating).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

from pacs.cli.admin import _run_id
from pacs.cli.common import command_parser, load
from pacs.errors import UsageError


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--rejected-before {text!r}: expected a date YYYY-MM-DD") from None


def parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``pacs purge``."""
    p = command_parser(name, "Delete instances from both tiers through a recorded plan: those rejected before "
                             "--rejected-before, and with --retention those the policy's delete_after_years "
                             "expires. Held, pinned or migrating studies are refused. Each deleted copy is a "
                             "row of table deletion.")
    p.add_argument("--rejected-before", metavar="DATE", help="delete instances rejected before this day (YYYY-MM-DD)")
    p.add_argument("--retention", action="store_true", help="also delete what the policy's delete_after_years "
                                                            "rule expires")
    p.add_argument("--dry-run", action="store_true", help="record the plan and print it; delete nothing")
    p.set_defaults(run=_purge)
    return p


def _purge(args: argparse.Namespace) -> int:
    from pacs.admin.purge import purge

    before = _date(args.rejected_before) if args.rejected_before else None
    out = purge(load(args), rejected_before=before, retention=args.retention, dry_run=args.dry_run,
                run_id=_run_id())
    print(json.dumps(out, indent=1, default=str))
    return 0
