"""
### pacs_fixity — are the archive's bytes still the bytes it catalogued?

Weekly: every online file, and a rolling share of offline objects so that each one is
re-hashed within ``fixity_offline_weeks`` weeks (policy), are verified against the catalogue's
sha256; each tier's listing is reconciled with the catalogue (``missing``, ``corrupt``,
``orphan``). A corrupt or missing online copy is restored from a verified offline copy. An
online orphan (a file the catalogue does not know, e.g. left by a crashed run) is re-entered
through intake: moved, verified, into ``<landing>/resubmitted/orphans/``, where the next
``pacs_ingest`` catalogues it, counts it as a duplicate or quarantines it with its reason.

Findings go to the ``fixity_finding`` table. Any missing or corrupt copy — repaired or not —
fails the run with a message naming the counts, and the alert callback records it
(``<reports>/alerts/``, and ``PACS_ALERT_WEBHOOK`` when set).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag

from pacs.dagkit import CATALOGUE_QUEUE, POOL, decision_date, default_args, task


@dag(
    dag_id="pacs_fixity",
    description="Verifies every copy in both tiers against the catalogue's sha256 and reconciles their listings.",
    schedule=os.environ.get("PACS_FIXITY_SCHEDULE", "0 4 * * 0"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["pacs", "fixity", "tiers"],
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=5)),
)
def pacs_fixity() -> None:
    @task(pool=POOL, queue=CATALOGUE_QUEUE)
    def plan(logical_date: Any = None, dag_run: Any = None, run_id: str | None = None) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.fixity import plan as make_plan

        when = decision_date(logical_date, dag_run)
        return make_plan(load_config(), logical_date=when.date(), run_id=run_id or "manual")

    @task
    def chunks(planned: dict[str, Any]) -> list[str]:
        return planned["chunks"]

    @task(max_active_tis_per_dagrun=4)
    def verify(chunk: str, planned: dict[str, Any]) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.fixity import verify_chunk

        return verify_chunk(load_config(), planned["fixity_id"], chunk)

    @task
    def reconcile(tier: str, planned: dict[str, Any]) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.fixity import reconcile as reconcile_tier

        return reconcile_tier(load_config(), planned["fixity_id"], tier)

    @task(pool=POOL, queue=CATALOGUE_QUEUE, trigger_rule="all_done")
    def record(planned: dict[str, Any]) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.fixity import record_and_repair

        # damaged copies are a terminal error (FixityError): the task fails now, without retries
        return record_and_repair(load_config(), planned["fixity_id"])

    planned = plan()
    verified = verify.partial(planned=planned).expand(chunk=chunks(planned))
    listed = reconcile.partial(planned=planned).expand(tier=["online", "offline"])
    done = record(planned)
    [verified, listed] >> done


pacs_fixity()
