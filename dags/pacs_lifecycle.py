"""
### pacs_lifecycle — the online tier keeps recent studies; the offline tier keeps everything

Nightly, at the run's logical date (never "now"), with the policy of the configuration
(``policy:`` in ``PACS_CONFIG``: retention years by study or received date, per-modality
overrides, hold list, capacity watermarks, packing):

1. **plan** (pool ``pacs_catalogue``) — the studies to move offline, each with its bytes and the
   rule that selected it (``lifecycle_plan`` table; ``<work>/lifecycle/<plan_id>/plan.parquet``),
   plus studies that only need their permanent offline copy made (``archive_copy``).
   With the ``dry_run`` param the run stops here.
2. **approve** — only with ``approve_plan: true`` in the policy (else skipped): the run waits for
   a person to approve the plan, whose studies, bytes and rules it shows (Browse → Required
   Actions, or the REST API). *Approve* → migrate and switch run; *Reject* → **discard**
   (pool) records the plan as rejected, and nothing is copied, switched or deleted.
3. **migrate** (one mapped task per batch) — copy to offline and verify each file against the
   catalogue's sha256 (S3 SHA-256 checksum or read-back); optionally one tar per series.
4. **switch** (pool) — a study switches to its offline copies only when every planned file is
   verified; only then are its online copies deleted (never a pinned study's). The
   ``pacs_catalogue`` Asset event carries the summary by rule.

Tasks that open the catalogue (plan, switch, discard) run on the Celery queue ``catalogue``.
A run not done by ``PACS_LIFECYCLE_DEADLINE_HOUR`` (UTC, default 06:00 for the 02:00 schedule)
raises a deadline alert. Killed at any point and re-run, it completes with nothing lost and
nothing duplicated.
"""

from __future__ import annotations

import datetime as dt
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag

from pacs.dagkit import (
    CATALOGUE,
    CATALOGUE_QUEUE,
    POOL,
    PlanApproval,
    daily_deadline,
    decision_date,
    default_args,
    task,
)

SCHEDULE = os.environ.get("PACS_LIFECYCLE_SCHEDULE", "0 2 * * *")


def _day(logical_date: Any, dag_run: Any) -> dt.date:
    return decision_date(logical_date, dag_run).date()


@dag(
    dag_id="pacs_lifecycle",
    description="Moves aged studies from the online tier to the offline tier, verified, by the lifecycle policy.",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["pacs", "lifecycle", "tiers"],
    default_args=default_args(retries=3, retry_delay=timedelta(minutes=1), max_retry_delay=timedelta(minutes=30)),
    params={"dry_run": Param(False, type=["boolean", "null"], description="Plan only: record the plan, move nothing.")},
    deadline=daily_deadline("PACS_LIFECYCLE_DEADLINE_HOUR", SCHEDULE, default_hour=6),
)
def pacs_lifecycle() -> None:
    @task(pool=POOL, queue=CATALOGUE_QUEUE)
    def plan(params: dict[str, Any] | None = None, logical_date: Any = None, dag_run: Any = None,
             run_id: str | None = None) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.lifecycle import plan as make_plan

        cfg = load_config()  # the policy, approve_plan included, is read now: each run decides for itself
        planned = make_plan(cfg, logical_date=_day(logical_date, dag_run), run_id=run_id or "manual",
                            dry_run=bool((params or {}).get("dry_run")))
        return {**planned, "needs_approval": cfg.policy.approve_plan and not planned["dry_run"]
                and planned["studies"] > 0}

    approve = PlanApproval(task_id="approve", plan_task_id="plan", approve_to="batches", reject_to="discard")

    @task(trigger_rule="none_failed_min_one_success")  # after an approval, or when none was asked (skipped)
    def batches(planned: dict[str, Any]) -> list[int]:
        return planned["batches"]

    @task(pool=POOL, queue=CATALOGUE_QUEUE)
    def discard(planned: dict[str, Any]) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.lifecycle import reject_plan

        return reject_plan(load_config(), planned["plan_id"])

    @task(max_active_tis_per_dagrun=4)
    def migrate(batch_no: int, planned: dict[str, Any]) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.lifecycle import migrate_batch

        return migrate_batch(load_config(), planned["plan_id"], batch_no)

    @task(pool=POOL, queue=CATALOGUE_QUEUE, trigger_rule="all_done", outlets=[CATALOGUE])
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
    to_move = batches(planned)
    moved = migrate.partial(planned=planned).expand(batch_no=to_move)
    done = switch(planned)
    # approve branches: Approve follows batches (and so migrate, switch), Reject only discard;
    # switch is also directly downstream so that a rejection skips it too (it runs all_done)
    planned >> approve >> [to_move, discard(planned), done]
    moved >> done


pacs_lifecycle()
