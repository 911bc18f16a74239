"""``pacs query "SQL"``: analysts' SQL over the catalogue from a shell.

Argument parsing only; the work is :mod:`pacs.analyst.query` (snapshot reads, ``--live``,
``--deidentified``, output formats).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import duckdb

from pacs.analyst.deid import DEID_VIEWS, KEY_ENV
from pacs.analyst.query import run_query, write_output
from pacs.analyst.views import ANALYST_VIEWS
from pacs.config import load_config
from pacs.errors import CatalogueBusyError, QueryError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pacs query", description="Analysts' SQL over the catalogue (see pacs.analyst.query).",
        epilog=f"views: {', '.join(ANALYST_VIEWS)}; de-identified: {', '.join(DEID_VIEWS)}")
    p.add_argument("sql", help="the query (SQL; tables patient, study, series, image, quarantine, ingest_batch)")
    p.add_argument("--config", help="configuration file (default: $PACS_CONFIG or config/pacs.yaml)")
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
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fmt = args.format
    if fmt is None:
        ext = os.path.splitext(args.out or "")[1].lower().lstrip(".")
        fmt = ext if ext in ("csv", "parquet", "json") else "table"
    try:
        cfg = load_config(args.config)
        table = run_query(cfg, args.sql, live=args.live, deidentified=args.deidentified, timeout=args.timeout,
                          max_seconds=args.max_seconds, wait=args.wait)
        text = write_output(table, fmt, args.out, max_rows=args.max_rows)
    except (QueryError, CatalogueBusyError, duckdb.Error, OSError) as exc:
        print(f"pacs query: {exc}", file=sys.stderr)
        return 2
    if text is not None:
        sys.stdout.write(text)
    elif args.out:
        print(f"{table.num_rows:,} rows written to {args.out}", file=sys.stderr)
    return 0
