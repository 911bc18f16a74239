"""``pacs lifecycle``, ``pacs recall`` and ``pacs fixity``: tier management from a shell.

Argument parsing only; the work is :mod:`pacs.tiers`. Decisions are taken at ``--date``
(default: today), as a DAG run takes them at its logical date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from collections.abc import Sequence

from pacs.config import load_config


def _run_id() -> str:
    return f"cli-{dt.datetime.now(dt.UTC).isoformat()}"



def tiers_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pacs", description="tier management")
    parser.add_argument("command", choices=["lifecycle", "recall"])
    parser.add_argument("--config")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=None,
                        help="the logical date decisions are made at (default: today)")
    parser.add_argument("--dry-run", action="store_true", help="lifecycle: plan only")
    parser.add_argument("--study", action="append", default=[], help="recall: a StudyInstanceUID (repeatable)")
    parser.add_argument("--patient-id")
    parser.add_argument("--accession-number")
    parser.add_argument("--pin-until", type=dt.date.fromisoformat)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    day = args.date or dt.datetime.now(dt.UTC).date()
    if args.command == "lifecycle":
        from pacs.tiers.lifecycle import run_lifecycle

        out = run_lifecycle(cfg, logical_date=day, run_id=_run_id(),
                            dry_run=args.dry_run)
    else:
        from pacs.tiers.recall import recall

        out = recall(cfg, study_uids=args.study, patient_id=args.patient_id,
                     accession_number=args.accession_number, pin_until=args.pin_until, logical_date=day,
                     run_id=_run_id())
    print(json.dumps(out, indent=1, default=str))
    return 0


def fixity_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pacs fixity", description="verify both tiers and repair online copies")
    parser.add_argument("--config")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    day = args.date or dt.datetime.now(dt.UTC).date()
    from pacs.errors import FixityError
    from pacs.tiers.fixity import run_fixity

    try:
        out = run_fixity(cfg, logical_date=day, run_id=_run_id())
    except FixityError as exc:
        print(str(exc))
        return 1
    print(json.dumps(out, indent=1, default=str))
    return 0
