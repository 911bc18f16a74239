"""``pacs patient merge``, ``pacs study move`` and ``pacs reject``: administration from a shell.

Argument parsing only; the work is :mod:`pacs.admin.corrections` (one catalogue transaction and
a ``correction`` row each) and :mod:`pacs.admin.rejection` (``rejection`` rows). Each prints its
result as JSON. ``--config`` and ``-v`` are
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


def _reject_parser(name: str) -> argparse.ArgumentParser:
    codes = "; ".join(f"{c} {m}" for c, m in _codes().items())
    p = command_parser(name, "Reject instances: they are kept, but left out of the analysts' views, lifecycle "
                             "plans, capacity figures and recall; recorded in table rejection. The first "
                             "rejection of an instance stands.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", metavar="UID", help="every catalogued instance of this StudyInstanceUID")
    which.add_argument("--series", metavar="UID", help="every catalogued instance of this SeriesInstanceUID")
    which.add_argument("--sop", metavar="UID", help="the instance of this SOPInstanceUID")
    p.add_argument("--reason", required=True, metavar="CODE", help=f"the IOCM rejection code: {codes}")
    p.add_argument("--note", metavar="TEXT", help="free text recorded with the rejection")
    p.set_defaults(run=_reject)
    return p


def _codes() -> dict[str, str]:
    from pacs.dicom.rejection_note import REJECTION_CODES

    return REJECTION_CODES


def _reject(args: argparse.Namespace) -> int:
    from pacs.admin.rejection import reject

    out = reject(load(args), study=args.study, series=args.series, sop=args.sop, code=args.reason,
                 reason=args.note, run_id=_run_id())
    print(json.dumps(out, indent=1))
    return 0


_PARSERS = {"patient": _patient_parser, "study": _study_parser, "reject": _reject_parser}


def parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``pacs patient``, ``pacs study`` or ``pacs reject``."""
    return _PARSERS[name](name)
