"""
### pacs_lifecycle — the online tier keeps recent studies; the offline tier keeps everything

Nightly, at the run's logical date (never "now"), with the policy of the configuration
(``policy:`` in ``PACS_CONFIG``: retention years by study or received date, per-modality
overrides, hold list, capacity watermarks, packing):

1. **plan** (pool ``pacs_catalogue``) — the studies to move offline, each with its bytes and the
   rule that selected it (``lifecycle_plan`` table; ``<work>/lifecycle/<plan_id>/plan.parquet``),
   plus studies that only need their permanent offline copy made (``archive_copy``).
   With the ``dry_run`` param the run stops here.
2. **migrate** (one mapped task per batch) — copy to offline and verify each file against the
   catalogue's sha256 (S3 SHA-256 checksum or read-back); optionally one tar per series.
3. **switch** (pool) — a study switches to its offline copies only when every planned file is
   verified; only then are its online copies deleted (never a pinned study's). The
   ``pacs_catalogue`` Asset event carries the summary by rule.

Killed at any point and re-run, it completes with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import datetime as dt
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag

from pacs.dagkit import CATALOGUE, POOL, decision_date, default_args, task


def _day(logical_date: Any, dag_run: Any) -> dt.date:
    return decision_date(logical_date, dag_run).date()


@dag(
    dag_id="pacs_lifecycle",
    schedule=os.environ.get("PACS_LIFECYCLE_SCHEDULE", "0 2 * * *"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["pacs", "lifecycle", "tiers"],
    default_args=default_args(retries=3, retry_delay=timedelta(minutes=1), max_retry_delay=timedelta(minutes=30)),
    params={"dry_run": Param(False, type="boolean", description="Plan only: record the plan, move nothing.")},
)
def pacs_lifecycle() -> None:
    @task(pool=POOL)
    def plan(params: dict[str, Any] | None = None, logical_date: Any = None, dag_run: Any = None,
             run_id: str | None = None) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.lifecycle import plan as make_plan

        return make_plan(load_config(), logical_date=_day(logical_date, dag_run), run_id=run_id or "manual",
                         dry_run=bool((params or {}).get("dry_run")))

    @task
    def batches(planned: dict[str, Any]) -> list[int]:
        return planned["batches"]

    @task(max_active_tis_per_dagrun=4)
    def migrate(batch_no: int, planned: dict[str, Any]) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.lifecycle import migrate_batch

        return migrate_batch(load_config(), planned["plan_id"], batch_no)

    @task(pool=POOL, trigger_rule="all_done", outlets=[CATALOGUE])
    def switch(planned: dict[str, Any], logical_date: Any = None, dag_run: Any = None,
               outlet_events: Any = None) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.lifecycle import switch_and_purge

        if planned.get("dry_run"):
            return {"dry_run": True, "plan": planned}
        summary = switch_and_purge(load_config(), planned["plan_id"], logical_date=_day(logical_date, dag_run))
        if outlet_events is not None:
            outlet_events[CATALOGUE].extra = {"lifecycle": summary}
        return summary

    planned = plan()
    moved = migrate.partial(planned=planned).expand(batch_no=batches(planned))
    done = switch(planned)
    moved >> done


pacs_lifecycle()
