"""
### pacs_purge — delete rejected or expired instances from both tiers, through a recorded plan

Triggered by hand (or by the API). Params: ``rejected_before`` (a date: instances rejected before
that day), ``retention`` (the policy's ``delete_after_years`` rule per modality), ``dry_run``.

1. **plan** (pool ``pacs_catalogue``) — the instances to delete with why and their copies
   (tables ``purge_plan``, ``purge_run``); instances of held, pinned or migrating studies are
   refused and counted. With ``dry_run`` the run stops here.
2. **approve** — only with ``approve_plan: true`` in the policy (else skipped): the run waits for a
   person (Browse → Required Actions, or the REST API) who sees the counts by reason; *Reject* →
   **discard** records the plan as rejected and nothing is deleted.
3. **purge** (pool) — checks each instance again, deletes its copies (a packed series' tar is
   rewritten without them, the new tar verified before the old one goes), checks they are gone,
   and commits: an audit row per copy in table ``deletion``, the image rows and empty series and
   studies removed, aggregates and snapshot refreshed.

Tasks that open the catalogue run on the Celery queue ``catalogue``. Killed at any point and
re-run (a retry), the purge ends as one uninterrupted run would.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag

from pacs.dagkit import CATALOGUE, CATALOGUE_QUEUE, POOL, PlanApproval, default_args, purge_message, task


@dag(
    dag_id="pacs_purge",
    description="Deletes rejected or expired instances from both tiers through a recorded plan, audited.",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["pacs", "admin", "deletion", "tiers"],
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=1)),
    params={
        "rejected_before": Param(None, type=["null", "string"], format="date",
                                 description="Delete instances rejected before this day (YYYY-MM-DD)."),
        "retention": Param(False, type=["boolean", "null"],
                           description="Also delete what the policy's delete_after_years rule expires."),
        "dry_run": Param(False, type=["boolean", "null"], description="Plan only: record the plan, delete nothing."),
    },
)
def pacs_purge() -> None:
    @task(pool=POOL, queue=CATALOGUE_QUEUE)
    def plan(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
        from pacs.admin.purge import plan as make_plan
        from pacs.config import load_config
        from pacs.errors import UsageError

        params = params or {}
        cfg = load_config()
        before = params.get("rejected_before")
        try:
            day = dt.date.fromisoformat(before) if before else None
        except ValueError:
            raise UsageError(f"rejected_before {before!r}: expected a date YYYY-MM-DD") from None
        planned = make_plan(cfg, rejected_before=day, retention=bool(params.get("retention")),
                            run_id=run_id or "manual", dry_run=bool(params.get("dry_run")))
        return {**planned, "needs_approval": cfg.policy.approve_plan and planned["state"] == "planned"
                and bool(planned["instances"])}

    approve = PlanApproval(task_id="approve", plan_task_id="plan", approve_to="purge", reject_to="discard",
                           message=purge_message)

    @task(pool=POOL, queue=CATALOGUE_QUEUE)
    def discard(planned: dict[str, Any]) -> dict[str, Any]:
        from pacs.admin.purge import reject_plan
        from pacs.config import load_config

        return reject_plan(load_config(), planned["plan_id"])

    @task(pool=POOL, queue=CATALOGUE_QUEUE, trigger_rule="none_failed_min_one_success", outlets=[CATALOGUE])
    def purge(planned: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        from pacs.admin.purge import execute
        from pacs.config import load_config

        if planned["state"] != "planned":
            return planned  # a dry run, or a plan already done
        summary = execute(load_config(), planned["plan_id"])
        if outlet_events is not None:
            outlet_events[CATALOGUE].extra = {"purge": summary}
        return summary

    planned = plan()
    planned >> approve >> [purge(planned), discard(planned)]


pacs_purge()
