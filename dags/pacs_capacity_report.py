"""
### pacs_capacity_report — volume, growth, tier utilisation and a 24-month forecast

Daily at 00:00 UTC (``PACS_CAPACITY_SCHEDULE``) **and** after every update of the
``pacs_catalogue`` Asset (asset-or-time schedule), for the configuration in ``PACS_CONFIG``:

1. **extract** (pool ``pacs_catalogue``, so it never overlaps the merge; queue ``catalogue``) — one short read-only
   scan of the catalogue into small aggregates, saved under the ``work`` location.
2. **report** — every figure at the run's date: studies, images and bytes per day, week and month
   by modality, tier and institution; utilisation of each tier against ``capacity``; growth over
   30, 90 and 365 days and year over year; the online tier's 24-month forecast under the
   lifecycle policy with the day it crosses the high watermark and a 95 % band; online bytes with
   1 to 5 years of online retention; offline growth and cost per tier. Written under the
   ``reports`` location as ``capacity/<date>/`` and ``capacity/latest/``: ``report.html``
   (self-contained, prints well), every table as CSV and Parquet, and ``summary.json``. The
   ``pacs_capacity_report`` Asset is updated with the key figures.

The run's date is its logical date, or ``run_after`` for an asset-triggered run (which has no
logical date); figures include images received before it, never "now". Too little history gives
a report that says so instead of a forecast. Counts and bytes only: no patient data in logs,
XCom or the report.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag

from pacs.dagkit import CATALOGUE, CATALOGUE_QUEUE, POOL, REPORT, default_args, task


@dag(
    dag_id="pacs_capacity_report",
    description="Reports volume, growth and tier utilisation with a 24-month forecast, for capacity planners.",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(os.environ.get("PACS_CAPACITY_SCHEDULE", "0 0 * * *"), timezone="UTC"),
        assets=[CATALOGUE],
    ),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["pacs", "capacity", "reports"],
    default_args=default_args(retries=3, retry_delay=timedelta(seconds=30)),
)
def pacs_capacity_report() -> None:
    @task(pool=POOL, queue=CATALOGUE_QUEUE)
    def extract(logical_date: Any = None, dag_run: Any = None) -> dict[str, str]:
        from pacs.config import load_config
        from pacs.reports.capacity import extract as extract_catalogue
        from pacs.reports.capacity import run_as_of

        cfg = load_config()
        as_of = run_as_of(logical_date, getattr(dag_run, "run_after", None))
        prefix = f"capacity/extract/{as_of.strftime('%Y%m%dT%H%M%S')}"
        extract_catalogue(cfg, as_of).save(cfg.work, prefix)
        return {"prefix": prefix, "as_of": as_of.isoformat()}

    @task(outlets=[REPORT])
    def report(extracted: dict[str, str], outlet_events: Any = None) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.reports.capacity import Extract, build_report, key_figures, write_report

        cfg = load_config()
        ex = Extract.load(cfg.work, extracted["prefix"])
        built = build_report(cfg, ex)
        written = write_report(built, cfg.reports)
        cfg.work.fs.rm(cfg.work.path(extracted["prefix"]), recursive=True)
        figures = key_figures(built)
        if outlet_events is not None:
            outlet_events[REPORT].extra = figures
        return {**figures, "report": written["report"]}

    report(extract())


pacs_capacity_report()
