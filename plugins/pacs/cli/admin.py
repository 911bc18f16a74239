"""``pacs patient merge`` and ``pacs study move``: identity corrections from a shell.

Argument parsing only; the work is :mod:`pacs.admin.corrections` (one catalogue transaction and
a ``correction`` row each). Each prints the correction as JSON. ``--config`` and ``-v`` are
taken before the command, after it, or after the action (``pacs patient merge ... --config F``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json

from pacs.cli.common import CONFIG_HELP, VERBOSE_HELP, command_parser, load


def _run_id() -> str:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's bare uid)
        who = "unknown"
    return f"cli-{dt.datetime.now(dt.UTC).isoformat()}-{who}"


def _action(sub: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text, description=text)
    # SUPPRESS: an option not given after the action keeps the value given before it
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (recorded with the correction)")
    return p


def _patient_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(name, "Correct a patient's identity, recorded in table correction; no file is rewritten.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    merge = _action(sub, "merge", "Merge patient --from into patient --into: every study of --from moves to "
                                  "--into, and later files naming --from are filed under --into.")
    merge.add_argument("--from", dest="from_patient", required=True, metavar="OLD", help="the PatientID merged away")
    merge.add_argument("--into", dest="into_patient", required=True, metavar="NEW", help="the PatientID kept")
    merge.set_defaults(run=_merge)
    return p


def _merge(args: argparse.Namespace) -> int:
    from pacs.admin.corrections import patient_merge

    out = patient_merge(load(args), from_patient=args.from_patient, into_patient=args.into_patient,
                        reason=args.reason, run_id=_run_id())
    print(json.dumps(out, indent=1))
    return 0


def _study_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(name, "Correct a study's patient, recorded in table correction; no file is rewritten.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    move = _action(sub, "move", "Move study --study to patient --to-patient; later files of the study that "
                                "still name its old patient are filed under --to-patient.")
    move.add_argument("--study", required=True, metavar="UID", help="the StudyInstanceUID")
    move.add_argument("--to-patient", required=True, metavar="ID", help="the PatientID it belongs to")
    move.set_defaults(run=_move)
    return p


def _move(args: argparse.Namespace) -> int:
    from pacs.admin.corrections import study_move

    out = study_move(load(args), study=args.study, to_patient=args.to_patient, reason=args.reason,
                     run_id=_run_id())
    print(json.dumps(out, indent=1))
    return 0


_PARSERS = {"patient": _patient_parser, "study": _study_parser}


def parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``pacs patient`` or ``pacs study``."""
    return _PARSERS[name](name)
