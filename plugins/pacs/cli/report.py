"""``pacs report``: the capacity report from a shell (see :mod:`pacs.reports.capacity`).

Reports at 00:00 UTC of ``--date`` (today by default: a shell user's default; DAG runs pass
their own date) and writes under the reports location or ``--out-location``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from pacs.cli.common import command_parser, load
from pacs.reports.units import fmt_bytes
from pacs.store import Location


def parser(name: str = "report") -> argparse.ArgumentParser:
    """The parser of ``pacs report``."""
    p = command_parser(name, "Write the capacity report (HTML page, summary.json and CSVs): volume, growth, "
                             "tier utilisation and the forecast, as of 00:00 UTC of --date.")
    p.add_argument("--date", type=dt.date.fromisoformat,
                   help="report date YYYY-MM-DD: images received before that day 00:00 UTC (default: today)")
    p.add_argument("--out-location", help="where to write (a folder or s3:// URL; default: the reports location)")
    p.add_argument("--source", choices=("live", "snapshot"), help="read the live catalogue or the Parquet snapshot")
    p.add_argument("--json", action="store_true", help="print the key figures as JSON")
    p.set_defaults(run=run)
    return p


def _out_location(url: str) -> Location:
    """``--out-location``: a folder (relative to the working directory) or an fsspec URL."""
    return Location.at("report output", url)


def _print_summary(result: dict[str, Any]) -> None:
    """The report's path and key figures, for a person."""
    s = result["summary"]
    print(f"Capacity report {s['report_date']}: {result['report']}")
    print(f"  archive {fmt_bytes(s['bytes'])} in {s['studies']:,} studies; online {fmt_bytes(s['online_bytes'])}"
          + (f" ({s['online_utilisation_pct']:.1f} % of capacity)" if s["online_utilisation_pct"] is not None
             else ""))
    print(f"  forecast: {s['forecast']}" + (f", reaches the threshold on {s['threshold_crossing']}"
                                            if s["threshold_crossing"] else ""))


def run(args: argparse.Namespace) -> int:
    """Build and publish the report; print its path and key figures (or them as JSON)."""
    from pacs.reports.extract import as_of_for  # the report's numpy/pyarrow/DuckDB stack: not for --help
    from pacs.reports.publish import run_report

    cfg = load(args)
    day = args.date or dt.datetime.now(dt.UTC).date()  # a shell user's default; DAG runs pass their date
    out = _out_location(args.out_location) if args.out_location else None
    result = run_report(cfg, as_of_for(day), out=out, source=args.source)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        _print_summary(result)
    return 0
