"""``pacs lifecycle``, ``pacs recall`` and ``pacs fixity``: tier management from a shell.

Argument parsing only; the work is :mod:`pacs.tiers`. Decisions are taken at ``--date``
(default: today), as a DAG run takes them at its logical date. Each prints its outcome as
JSON; progress is logged to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging

from pacs.cli.common import command_parser, load


def _run_id() -> str:
    return f"cli-{dt.datetime.now(dt.UTC).isoformat()}"


def _day(args: argparse.Namespace) -> dt.date:
    return args.date or dt.datetime.now(dt.UTC).date()  # a shell user's default; DAG runs pass their date


def _with_date(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--date", type=dt.date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                   help="the logical date decisions are taken at (default: today)")
    p.set_defaults(log_level=logging.INFO)
    return p


def _lifecycle_parser(name: str) -> argparse.ArgumentParser:
    p = _with_date(command_parser(
        name, "Move the studies the lifecycle policy sends offline (by age at --date, or by the online "
              "tier's watermarks) from the online tier to the offline tier: copy, verify, switch the "
              "catalogue, then delete the online copies."))
    p.add_argument("--dry-run", action="store_true", help="plan only: print what would move, move nothing")
    p.set_defaults(run=_lifecycle)
    return p


def _lifecycle(args: argparse.Namespace) -> int:
    from pacs.tiers.lifecycle import run_lifecycle

    out = run_lifecycle(load(args), logical_date=_day(args), run_id=_run_id(), dry_run=args.dry_run)
    print(json.dumps(out, indent=1, default=str))
    return 0


def _recall_parser(name: str) -> argparse.ArgumentParser:
    p = _with_date(command_parser(
        name, "Copy studies back to the online tier from the offline tier (verified) and pin them there "
              "until --pin-until. Name the studies by UID, patient ID or accession number."))
    p.add_argument("--study", action="append", default=[], metavar="UID",
                   help="a StudyInstanceUID (repeatable)")
    p.add_argument("--patient-id", help="every study of this patient")
    p.add_argument("--accession-number", help="the study with this accession number")
    p.add_argument("--pin-until", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                   help="keep them online until this date (default: --date plus policy.recall_pin_days)")
    p.set_defaults(run=_recall)
    return p


def _recall(args: argparse.Namespace) -> int:
    from pacs.tiers.recall import recall

    out = recall(load(args), study_uids=args.study, patient_id=args.patient_id,
                 accession_number=args.accession_number, pin_until=args.pin_until, logical_date=_day(args),
                 run_id=_run_id())
    print(json.dumps(out, indent=1, default=str))
    return 0


def _fixity_parser(name: str) -> argparse.ArgumentParser:
    p = _with_date(command_parser(
        name, "Verify the sha256 of the copies in both tiers (online: all; offline: a rolling share each "
              "week), reconcile each tier's listing with the catalogue, and repair damaged online copies "
              "from offline.",
        epilog="Exit status: 0 every copy verified or repaired, 1 findings that could not be repaired."))
    p.set_defaults(run=_fixity)
    return p


def _fixity(args: argparse.Namespace) -> int:
    from pacs.errors import FixityError
    from pacs.tiers.fixity import run_fixity

    try:
        out = run_fixity(load(args), logical_date=_day(args), run_id=_run_id())
    except FixityError as exc:
        print(str(exc))
        return 1
    print(json.dumps(out, indent=1, default=str))
    return 0


_PARSERS = {"lifecycle": _lifecycle_parser, "recall": _recall_parser, "fixity": _fixity_parser}


def parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``pacs lifecycle``, ``pacs recall`` or ``pacs fixity``."""
    return _PARSERS[name](name)
