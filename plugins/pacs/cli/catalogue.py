"""``pacs summary`` and ``pacs check``: what the catalogue holds, and whether it is consistent.

Argument parsing only; the work is :mod:`pacs.catalogue.checks` (counts, invariants) and
:mod:`pacs.intake.landing` (what waits in landing, and which landing locations do not exist).
Both commands warn about a landing location that does not exist; ``check`` fails on it.
"""

from __future__ import annotations

import argparse
import json

from pacs.cli.common import command_parser, load, warn


def _summary_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(name, "What the catalogue holds (patients, studies, series, images, bytes, tiers, "
                             "quarantined files by reason) and what waits in landing; no patient data.")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(run=_summary)
    return p


def _summary(args: argparse.Namespace) -> int:
    from pacs.catalogue.checks import print_summary, summary
    from pacs.intake.landing import landing_state, missing_landing, missing_text

    cfg = load(args)
    for loc in missing_landing(cfg):
        warn("summary", missing_text(cfg, loc))
    info = {**summary(cfg), "landing": landing_state(cfg)}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print_summary(info)
    return 0


def _check_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(name, "Check the catalogue's invariants (unique SOP instances, exact aggregates, tiers "
                             "and URIs agree, ...) and that every landing location exists.",
                       epilog="Exit status: 0 consistent, 1 problems found (one line each), 2 no catalogue "
                              "or a bad configuration.")
    p.set_defaults(run=_check)
    return p


def _check(args: argparse.Namespace) -> int:
    from pacs.catalogue.checks import check
    from pacs.intake.landing import missing_landing, missing_text

    cfg = load(args)
    problems = [missing_text(cfg, loc) for loc in missing_landing(cfg)]
    for problem in problems:  # before the catalogue's checks, which need the catalogue to exist
        print(problem, flush=True)
    for problem in check(cfg):
        print(problem)
        problems.append(problem)
    print("catalogue and landing consistent" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``pacs summary`` or ``pacs check``."""
    return (_summary_parser if name == "summary" else _check_parser)(name)
