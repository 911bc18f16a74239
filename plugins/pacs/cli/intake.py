"""``pacs ingest``, ``pacs resubmit`` and ``pacs header``: intake from a shell.

Argument parsing only; the work is :mod:`pacs.intake` (one intake pass, re-submission) and
:mod:`pacs.intake.verdict` (what intake would do with one file). ``ingest`` prints its counts
as JSON on stdout and says on stderr how many files wait to settle; the sweep warns about a
landing location that does not exist.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from pacs.cli.common import command_parser, load, note


def _ingest_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(name, "Take in the settled files of every landing location, in this process: sweep, "
                             "read and validate, store online or quarantine, catalogue, refresh the snapshot. "
                             "Prints the counts as JSON.")
    p.add_argument("--no-snapshot", action="store_true", help="do not refresh the Parquet snapshot afterwards")
    p.set_defaults(run=_ingest)
    return p


def _ingest(args: argparse.Namespace) -> int:
    from pacs.intake import run_ingest

    cfg = load(args)
    result = run_ingest(cfg, snapshot=not args.no_snapshot)
    print(json.dumps(result, indent=1, default=str))
    waiting, future = result.get("waiting", 0), result.get("future_dated", 0)
    if waiting:
        note(args.command, f"{waiting:,} file(s) in landing are waiting to settle (changed within the last "
                           f"settle_seconds = {cfg.settle_seconds} s"
                           + (f"; {future:,} with a modification time in the future" if future else "")
                           + "); a later run takes them")
    return 0


def _resubmit_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(name, "Send quarantined files back through intake (after fixing what quarantined them); "
                             "the next `pacs ingest` or pacs_ingest run takes them in.")
    p.add_argument("--reason", action="append", default=[], help="a reason code (repeatable)")
    p.add_argument("--id", action="append", default=[], help="a quarantine id <batch>:<row> (repeatable)")
    p.set_defaults(run=_resubmit)
    return p


def _resubmit(args: argparse.Namespace) -> int:
    from pacs.intake.quarantine import resubmit

    print(json.dumps(resubmit(load(args), reasons=args.reason or None, ids=args.id or None)))
    return 0


def _header_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(
        name, "Read one file's header as intake reads it and say what intake would do with it: catalogue it, "
              "count it as an identical duplicate, or quarantine it with which reason. With a configuration "
              "(--config, $PACS_CONFIG or config/pacs.yaml) the merge's outcomes are checked against its "
              "catalogue and online tier, read-only; nothing is written.",
        epilog="Exit status: 0 catalogued or duplicate, 1 quarantined, 2 no such file or a bad configuration.")
    p.add_argument("path", help="a local path or a URL (s3://bucket/key)")
    p.add_argument("--show-phi", action="store_true", help="do not mask person names and the birth date")
    p.add_argument("--json", action="store_true", help="print the verdict and the header as JSON")
    p.set_defaults(run=_header)
    return p


def _masked() -> set[str]:
    """The columns ``pacs header`` masks: every person name, and the birth date."""
    from pacs.dicom.columns import COLUMNS

    return {c.name for c in COLUMNS if c.kind == "pn"} | {"patient_birth_date"}


def _archive_for_header(args: argparse.Namespace) -> Any:
    """The configuration to check against: the one named, else the default if there is one."""
    from pacs.config import DEFAULT_CONFIG

    if args.config or os.environ.get("PACS_CONFIG") or os.path.isfile(DEFAULT_CONFIG):
        return load(args)
    return None


def _print_verdict(verdict: Any, header: dict[str, Any] | None) -> None:
    from pacs.dicom.validation import REASONS

    if verdict.outcome == "catalogued":
        print(f"{verdict.file}: intake would catalogue it")
    elif verdict.outcome == "duplicate":
        print(f"{verdict.file}: intake would count it as a duplicate: {verdict.detail}")
    else:
        print(f"{verdict.file}: intake would quarantine it: {verdict.reason} ({REASONS[verdict.reason]})")
        print(f"  {verdict.detail}")
    print(f"  checked against {verdict.checked}")
    print(f"  {verdict.size_bytes:,} bytes, sha256 {verdict.sha256}")
    if header is None:
        print("header: not readable")
        return
    shown = {k: v for k, v in header.items() if v not in (None, "")}
    print("header" + ("" if shown else ": no catalogue field is present"))
    width = max(map(len, shown), default=0)
    for key, value in shown.items():
        print(f"  {key:<{width}}  {value}")


def _header(args: argparse.Namespace) -> int:
    from pacs.intake.verdict import judge_file

    verdict = judge_file(args.path, _archive_for_header(args))
    header = dict(verdict.header) if verdict.header is not None else None
    if header is not None and not args.show_phi:
        header.update({k: "***" for k in _masked() if header.get(k)})
    if args.json:
        print(json.dumps({**verdict.as_dict(), "header": header}, indent=1, default=str))
    else:
        _print_verdict(verdict, header)
    return 1 if verdict.outcome == "quarantined" else 0


_PARSERS = {"ingest": _ingest_parser, "resubmit": _resubmit_parser, "header": _header_parser}


def parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``pacs <name>`` (``ingest``, ``resubmit`` or ``header``)."""
    p = _PARSERS[name](name)
    p.set_defaults(command=name)
    return p
