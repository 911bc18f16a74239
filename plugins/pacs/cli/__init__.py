"""The ``pacs`` command: the package's jobs from a shell, without a scheduler.

Subcommands (``pacs <command> --help`` for each):

Argument parsing only: each command calls the room that does the work.

- ``synth``      generate a synthetic archive (see :mod:`pacs.synth`)
- ``ingest``     run one intake pass (sweep, process, merge, finalize, snapshot) in this process
- ``summary``    what the catalogue holds: counts, bytes, quarantine by reason, where things are
- ``resubmit``   send quarantined files back through intake
- ``header``     print the catalogue fields read from a file's header (names masked)
- ``check``      verify the catalogue's invariants (unique SOP instances, exact aggregates)
- ``query``      analysts' SQL over the catalogue (see :mod:`pacs.analyst.query`)
- ``report``     the capacity report (see :mod:`pacs.reports.capacity`)
- ``lifecycle``, ``recall``, ``fixity``  tier management (see :mod:`pacs.tiers`)
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

# Commands parsed in their own module of this package: (module, function(argv) -> int, pass the name).
DELEGATED = {
    "synth": ("pacs.cli.synth", "main", False),
    "query": ("pacs.cli.query", "main", False),
    "report": ("pacs.cli.report", "main", False),
    "lifecycle": ("pacs.cli.tiers", "tiers_main", True),
    "recall": ("pacs.cli.tiers", "tiers_main", True),
    "fixity": ("pacs.cli.tiers", "fixity_main", False),
}


def _config(path: str | None) -> Any:
    from pacs.config import load_config

    return load_config(path)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        module, function, with_name = DELEGATED[argv[0]]
        command = getattr(importlib.import_module(module), function)
        return int(command(argv if with_name else argv[1:]) or 0)
    parser = argparse.ArgumentParser(prog="pacs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="configuration file (default: $PACS_CONFIG or config/pacs.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in DELEGATED:
        sub.add_parser(name, help=f"see `pacs {name} --help`")
    p = sub.add_parser("ingest", help="one intake pass in this process")
    p.add_argument("--no-snapshot", action="store_true")
    p = sub.add_parser("summary", help="what the catalogue holds")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("resubmit", help="send quarantined files back through intake")
    p.add_argument("--reason", action="append", default=[], help="a reason code (repeatable)")
    p.add_argument("--id", action="append", default=[], help="a quarantine id <batch>:<row> (repeatable)")
    p = sub.add_parser("header", help="the catalogue fields of a file's header")
    p.add_argument("path")
    p.add_argument("--show-phi", action="store_true", help="do not mask names and birth dates")
    sub.add_parser("check", help="verify the catalogue's invariants")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pacs.errors import PacsError

    try:
        return _run(parser, args)
    except PacsError as exc:
        if args.verbose:
            raise
        print(f"pacs {args.command}: {exc}", file=sys.stderr)  # one line; -v shows the traceback
        return 1


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "ingest":
        from pacs.intake import run_ingest

        print(json.dumps(run_ingest(_config(args.config), snapshot=not args.no_snapshot), indent=1))
        return 0
    if args.command == "summary":
        from pacs.catalogue.checks import print_summary, summary

        info = summary(_config(args.config))
        if args.json:
            print(json.dumps(info, indent=1))
        else:
            print_summary(info)
        return 0
    if args.command == "resubmit":
        from pacs.intake.quarantine import resubmit

        print(json.dumps(resubmit(_config(args.config), reasons=args.reason or None, ids=args.id or None)))
        return 0
    if args.command == "header":
        import fsspec

        from pacs.dicom import HeaderError, read_header

        fs, path = fsspec.core.url_to_fs(args.path)
        try:
            header = read_header(fs, path)
        except HeaderError as exc:
            print(f"{exc.reason}: {exc.detail}")
            return 1
        if not args.show_phi:
            for k in ("patient_name", "patient_birth_date"):
                if header.get(k):
                    header[k] = "***"
        print(json.dumps(header, indent=1, default=str))
        return 0
    if args.command == "check":
        from pacs.catalogue.checks import check

        problems = check(_config(args.config))
        for p in problems:
            print(p)
        print("catalogue consistent" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
