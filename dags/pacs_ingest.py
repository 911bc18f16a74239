"""
### pacs_ingest — landing folders → online tier + DuckDB catalogue

Every 15 minutes (``PACS_INGEST_SCHEDULE``), for every landing location of the configuration
(``PACS_CONFIG``):

1. **resubmit** — only when the ``resubmit_reasons`` / ``resubmit_ids`` params are set (else
   it is skipped before it does anything): send quarantined files back to landing (e.g. after
   a patient mismatch was fixed in the RIS).
2. **sweep** — list landing, take files seen unchanged for ``settle_seconds`` (by this
   sweeper's own observation, so a file with a future mtime is still taken), write batch
   manifests; batches left open by an interrupted run (whose lease died with it) are resumed
   first; a batch another running run holds is left to it. When it takes nothing, the run ends
   there: process and merge are skipped without starting.
3. **process** (one mapped task per batch) — hash, read the DICOM header, validate, store the
   file in the online tier (or quarantine it with its reason).
4. **merge** (pool ``pacs_catalogue``, one slot: the only catalogue writer), in three steps:
   *merge* — duplicates, patient mismatches and SOP conflicts are decided against the catalogue
   and everything is upserted in one transaction; *finalize* — landing files are deleted, only
   now that their outcome is committed; *snapshot* — the Parquet snapshot for analysts is
   refreshed. The ``pacs_catalogue`` Asset event carries the run's counts. (One task rather
   than three: each Airflow task costs a fixed overhead, and the three share the writer's slot.)
   The three run in a fresh interpreter started by the task (``pacs.isolate``), so that DuckDB's
   working set is not added to the task's Airflow process and ends with the step; it dies with
   the task, and its log lines are the task's.

``resubmit`` and ``merge`` run on the Celery queue ``catalogue`` (the catalogue's host); a run
not finished ``PACS_INGEST_DEADLINE_MINUTES`` (60) after it was queued raises a deadline alert.

Any task can be killed and re-run: the journal under the ``work`` location resumes it with
nothing lost or duplicated. Logs and XCom carry batch ids and counts, never patient data.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag

from pacs.dagkit import CATALOGUE, CATALOGUE_QUEUE, POOL, default_args, queued_deadline, task


def _resubmission_asked(params: dict[str, Any]) -> bool:
    return bool(params.get("resubmit_reasons") or params.get("resubmit_ids"))


@dag(
    dag_id="pacs_ingest",
    description="Takes DICOM files from landing into the online tier and the catalogue, quarantining bad ones.",
    schedule=os.environ.get("PACS_INGEST_SCHEDULE", "*/15 * * * *"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["pacs", "intake"],
    default_args=default_args(retries=3, retry_delay=timedelta(seconds=30)),
    params={
        "resubmit_reasons": Param([], type=["null", "array"], items={"type": "string"},
                                  description="Re-submit quarantined files with these reason codes."),
        "resubmit_ids": Param([], type=["null", "array"], items={"type": "string"},
                              description="Re-submit these quarantine ids (<batch_id>:<row>)."),
    },
    deadline=queued_deadline("PACS_INGEST_DEADLINE_MINUTES", default_minutes=60),
)
def pacs_ingest() -> None:
    @task.skip_if(lambda context: not _resubmission_asked(context["params"]))
    @task(pool=POOL, queue=CATALOGUE_QUEUE)
    def resubmit(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.intake.quarantine import resubmit as resubmit_files

        params = params or {}
        return resubmit_files(load_config(), reasons=params.get("resubmit_reasons") or None,
                              ids=params.get("resubmit_ids") or None)

    # runs after resubmit, or when it was skipped (nothing asked); skips itself when landing holds
    # nothing to take, and then process and merge are skipped by the scheduler without starting
    @task(trigger_rule="none_failed")
    def sweep(run_id: str | None = None) -> list[str]:
        from pacs.config import load_config
        from pacs.intake import sweep as sweep_landing

        cfg = load_config()
        batch_ids = sweep_landing(cfg, run_id=run_id or "manual")
        if not batch_ids:  # nothing to take: the run ends here, process and merge never start
            from airflow.sdk.exceptions import AirflowSkipException

            from pacs.intake import last_sweep, nothing_to_take

            raise AirflowSkipException(nothing_to_take(last_sweep(cfg)))
        return batch_ids

    @task
    def process(batch_id: str) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.intake import process_batch

        return process_batch(load_config(), batch_id)

    @task(pool=POOL, queue=CATALOGUE_QUEUE, trigger_rule="all_done_min_one_success", outlets=[CATALOGUE])
    def merge(batch_ids: list[str], run_id: str | None = None, outlet_events: Any = None) -> dict[str, Any]:
        from pacs import isolate
        from pacs.config import load_config

        cfg = load_config()  # DuckDB's working set ends with the merge's own process (pacs.isolate)
        extra = isolate.run("pacs.intake:merge_step", env=isolate.connection_env(cfg), config=str(cfg.path),
                            batch_ids=list(batch_ids), run_id=run_id or "manual")
        if outlet_events is not None:
            outlet_events[CATALOGUE].extra = extra
        return extra

    batch_ids = sweep()
    resubmit() >> batch_ids
    processed = process.expand(batch_id=batch_ids)
    processed >> merge(batch_ids)


pacs_ingest()
