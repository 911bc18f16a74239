"""The capacity report: volume, growth, tier utilisation, forecast, retention what-if and cost.

Owns ``pacs_capacity_report`` and ``pacs report`` (:mod:`pacs.cli.report`), in three steps that
run without a scheduler; this module re-exports what callers use (``capacity.extract(...)``):

1. :func:`extract` (:mod:`pacs.reports.extract`) reads small aggregates from the live catalogue,
   read-only, or from its Parquet snapshot (``capacity.source: snapshot``).
2. :func:`build_report` (:mod:`pacs.reports.figures`) computes every figure from the extract at
   the run's date ``as_of`` (never the clock); :func:`render_charts` (:mod:`pacs.reports.charts`)
   draws the charts.
3. :func:`write_report` (:mod:`pacs.reports.publish`) publishes ``capacity/<date>/`` under the
   reports location — a self-contained HTML report (:func:`render_html`, :mod:`pacs.reports.html`),
   every table as CSV and Parquet, and ``summary.json`` — and the same files under
   ``capacity/latest/``. :func:`run_report` runs the three steps in one process.

Definitions: a day is a UTC calendar day; a study's bytes count on its study date
(``capacity.date_basis: received_at`` counts them on arrival; a study without a date, or dated
after the report's date, counts on the day it arrived, so no table or chart reaches past the
report's date); ``as_of`` includes images received before it; the forecast's history ends the day
before the report date (the last complete day).
GB and TB are decimal (10⁹, 10¹² bytes), as storage is priced.

Configuration (``capacity:`` in the YAML file, :mod:`pacs.reports.settings`)::

    capacity:
      online_bytes: 20 TB              # online tier capacity (the policy's watermarks are fractions of it)
      offline_bytes: 500 TB            # optional: offline tier capacity
      price_per_gb_month: {online: 0.10, offline: 0.0125}
      currency: USD
      forecast_months: 24
      date_basis: study_date           # study_date | received_at
      source: live                     # live | snapshot
      memory_limit: 1 GB               # DuckDB memory for the extract
"""

from __future__ import annotations

from collections.abc import Sequence

from pacs.errors import ReportError
from pacs.reports.charts import render_charts
from pacs.reports.extract import EXTRACT_TABLES, Extract, as_of_for, extract, run_as_of
from pacs.reports.figures import WHAT_IF_YEARS, CapacityReport, build_report
from pacs.reports.html import render_html
from pacs.reports.publish import LATEST, REPORT_FOLDER, key_figures, run_report, write_report
from pacs.reports.settings import CapacitySettings, parse_settings
from pacs.reports.units import DAYS_PER_MONTH, GB, TB

__all__ = [
    "DAYS_PER_MONTH",
    "EXTRACT_TABLES",
    "GB",
    "LATEST",
    "REPORT_FOLDER",
    "TB",
    "WHAT_IF_YEARS",
    "CapacityReport",
    "CapacitySettings",
    "Extract",
    "ReportError",
    "as_of_for",
    "build_report",
    "extract",
    "key_figures",
    "main",
    "parse_settings",
    "render_charts",
    "render_html",
    "run_as_of",
    "run_report",
    "write_report",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``pacs report``: see :func:`pacs.cli.report.main`."""
    from pacs.cli.report import main as report_main

    return report_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
