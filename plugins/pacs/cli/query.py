"""``pacs query "SQL"``: analysts' SQL over the catalogue from a shell.

Argument parsing only; the work is :mod:`pacs.analyst.query` (snapshot reads, ``--live``,
``--deidentified``, output formats).
"""

from __future__ import annotations

import argparse
import os
import sys

import duckdb

from pacs.analyst.deid import DEID_VIEWS, KEY_ENV
from pacs.analyst.query import run_query, write_output
from pacs.analyst.views import ANALYST_VIEWS
from pacs.cli.common import command_parser, load
from pacs.errors import QueryError


def parser(name: str = "query") -> argparse.ArgumentParser:
    """The parser of ``pacs query``."""
    p = command_parser(
        name, "Run SQL over the catalogue and print a table, or write CSV, Parquet or JSON. Reads the "
              "Parquet snapshot unless --live.",
        epilog=f"views: {', '.join(ANALYST_VIEWS)}; de-identified: {', '.join(DEID_VIEWS)}")
    p.add_argument("sql", help="the query (SQL; tables patient, study, series, image, quarantine, ingest_batch)")
    p.add_argument("--format", choices=("table", "csv", "parquet", "json"), default=None,
                   help="output format (default: table, or from the --out file's extension)")
    p.add_argument("--out", help="write the result to this file")
    p.add_argument("--live", action="store_true",
                   help="read the live catalogue read-only (newer than the snapshot; waits while the merge writes)")
    p.add_argument("--deidentified", action="store_true",
                   help=f"only the de-identified views (needs {KEY_ENV})")
    p.add_argument("--timeout", type=float, default=60.0, help="--live: seconds to wait for the catalogue (60)")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="--live and --deidentified: stop a query running longer than this (30)")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a snapshot refresh to finish (120)")
    p.add_argument("--max-rows", type=int, default=100, help="rows shown by --format table (100)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the query; a query that cannot run as asked is a :class:`QueryError` (exit status 2)."""
    fmt = args.format
    if fmt is None:
        ext = os.path.splitext(args.out or "")[1].lower().lstrip(".")
        fmt = ext if ext in ("csv", "parquet", "json") else "table"
    cfg = load(args)
    try:
        table = run_query(cfg, args.sql, live=args.live, deidentified=args.deidentified, timeout=args.timeout,
                          max_seconds=args.max_seconds, wait=args.wait)
        text = write_output(table, fmt, args.out, max_rows=args.max_rows)
    except (duckdb.Error, OSError) as exc:
        raise QueryError(str(exc)) from exc
    if text is not None:
        sys.stdout.write(text)
    elif args.out:
        print(f"{table.num_rows:,} rows written to {args.out}", file=sys.stderr)
    return 0
