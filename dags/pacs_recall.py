"""
### pacs_recall — bring studies back to the online tier, pinned until a date

Triggered by hand (or by the API) with one of: ``study_uids`` (a list), ``patient_id``, or
``accession_number``; and ``pin_until`` (a date; default: the logical date + the policy's
``recall_pin_days``, 30).

The task (pool ``pacs_catalogue``, queue ``catalogue``) checks the online tier has room — a clear failure before
anything is copied if not — then copies every offline file back (unpacking a member of a
packed series with one ranged read), verifies each against the catalogue's sha256, records
the online copies and pins the studies. Lifecycle never evicts a pinned study; after the pin
expires the next lifecycle run drops the online copies again. The offline copy is never
deleted.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag

from pacs.dagkit import CATALOGUE, CATALOGUE_QUEUE, POOL, decision_date, default_args, task


@dag(
    dag_id="pacs_recall",
    description="Brings studies back from the offline tier to the online tier, verified, pinned until a date.",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["pacs", "recall", "tiers"],
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=1)),
    params={
        "study_uids": Param([], type=["null", "array"], items={"type": "string"}, description="StudyInstanceUIDs"),
        "patient_id": Param(None, type=["null", "string"], description="All studies of this patient"),
        "accession_number": Param(None, type=["null", "string"], description="The study with this accession"),
        "pin_until": Param(None, type=["null", "string"], format="date",
                           description="Keep online until this date (default: logical date + 30 days)"),
    },
)
def pacs_recall() -> None:
    @task(pool=POOL, queue=CATALOGUE_QUEUE, outlets=[CATALOGUE])
    def recall(params: dict[str, Any] | None = None, logical_date: Any = None, dag_run: Any = None,
               run_id: str | None = None, outlet_events: Any = None) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.tiers.recall import recall as recall_studies

        params = params or {}
        when = decision_date(logical_date, dag_run)
        pin = dt.date.fromisoformat(params["pin_until"]) if params.get("pin_until") else None
        summary = recall_studies(load_config(), study_uids=params.get("study_uids") or [],
                                 patient_id=params.get("patient_id"),
                                 accession_number=params.get("accession_number"), pin_until=pin,
                                 logical_date=when.date(), run_id=run_id or "manual")
        if outlet_events is not None:
            outlet_events[CATALOGUE].extra = {"recall": summary}
        return summary

    recall()


pacs_recall()
