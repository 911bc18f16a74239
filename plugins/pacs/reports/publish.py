"""Step 3 of the capacity report: publish it, and the three steps in one call.

:func:`write_report` publishes ``capacity/<date>/`` under the reports location — the
self-contained HTML report (:mod:`pacs.reports.html`), every table as CSV and Parquet, and
``summary.json`` — and the same files under ``capacity/latest/``. Each file is written atomically
(:func:`pacs.store.put`) and ``summary.json`` last, so a reader that finds it finds the rest.
:func:`run_report` extracts, computes and publishes in this process (CLI, tests, benchmark); the
DAG runs the steps as separate tasks.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from pacs import store
from pacs.config import Config
from pacs.reports.extract import extract
from pacs.reports.figures import CapacityReport, build_report
from pacs.reports.html import render_html
from pacs.reports.tables import csv_bytes, parquet_bytes
from pacs.store import Location

log = logging.getLogger(__name__)

REPORT_FOLDER = "capacity"
LATEST = "latest"


def _report_files(report: CapacityReport) -> dict[str, bytes]:
    """Every file of the report by name: each table as CSV and Parquet, ``report.html``, ``summary.json``."""
    files: dict[str, bytes] = {}
    for name, table in sorted(report.tables.items()):
        files[f"{name}.csv"] = csv_bytes(table)
        files[f"{name}.parquet"] = parquet_bytes(table)
    files["report.html"] = render_html(report, files=sorted(files)).encode()
    summary = dict(report.summary, files=sorted([*files, "summary.json"]))
    files["summary.json"] = json.dumps(summary, indent=1, sort_keys=False).encode()
    return files


def write_report(report: CapacityReport, loc: Location) -> dict[str, Any]:
    """Publish the report under ``capacity/<date>/`` and ``capacity/latest/``; summary.json last."""
    files = _report_files(report)
    folders = [f"{REPORT_FOLDER}/{report.report_date.isoformat()}", f"{REPORT_FOLDER}/{LATEST}"]
    for folder in folders:
        for name in sorted(files, key=lambda n: n == "summary.json"):
            store.put(loc, loc.path(f"{folder}/{name}"), files[name])
    log.info("capacity report %s written to %s (%d files)", report.report_date, loc.url, len(files))
    return {"location": loc.url, "folders": folders, "report": loc.path(f"{folders[0]}/report.html"),
            "files": sorted(files), "bytes": sum(len(b) for b in files.values())}


def key_figures(report: CapacityReport) -> dict[str, Any]:
    """Counts for the report Asset's extra (no patient data)."""
    s = report.summary
    fc = s["forecast"]
    return {
        "report_date": s["report_date"],
        "studies": s["catalogue"]["studies"],
        "images": s["catalogue"]["images"],
        "bytes": s["catalogue"]["bytes"],
        "online_bytes": s["tiers"]["online"]["bytes"],
        "online_utilisation_pct": s["tiers"]["online"]["utilisation_pct"],
        "forecast": fc["status"],
        "threshold_crossing": (fc.get("threshold_crossing") or {}).get("date"),
    }


def run_report(cfg: Config, as_of: dt.datetime, *, out: Location | None = None,
               source: str | None = None) -> dict[str, Any]:
    """Extract, compute and publish in this process (CLI, tests, benchmark)."""
    settings = cfg.capacity
    policy = cfg.policy
    ex = extract(cfg, as_of, source=source, policy=policy, settings=settings)
    report = build_report(cfg, ex, policy=policy, settings=settings)
    written = write_report(report, out or cfg.reports)
    return {**written, "summary": key_figures(report), "extract_seconds": ex.seconds}
