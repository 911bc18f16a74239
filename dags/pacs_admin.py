"""
### pacs_admin — identity corrections and rejections, recorded, never rewriting a file

Triggered by hand (or by the API), so each correction is in the UI and its run history. Params:
``action`` (``patient_merge``, ``study_move`` or ``reject``), ``reason`` (recorded), and

- for ``patient_merge``: ``from_patient`` (merged away) and ``into_patient`` (kept): every study
  of the first moves to the second, and later files naming the first are filed under the second;
- for ``study_move``: ``study`` (a StudyInstanceUID) and ``to_patient``: later files of the
  study that still name its old patient are filed under ``to_patient``;
- for ``reject``: one of ``study``, ``series`` or ``sop`` (a UID), ``reason`` the IOCM code
  (``113001``, ``113037``, ``113038`` or ``113039``) and ``note`` (free text): its catalogued
  instances get a row of table ``rejection`` each (the first rejection stands) and are left out
  of analysts' views, lifecycle plans, capacity figures and recall.

The task (pool ``pacs_catalogue``, queue ``catalogue``) makes the correction in one catalogue
transaction — a row of table ``correction`` with the keys as they were, the study and patient
rows, the patient aggregates — and refreshes the Parquet snapshot. An unknown patient or study,
a patient merged into itself or a study already under that patient fails at once with one line,
changing nothing; a retry after the commit finds its correction and changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag

from pacs.dagkit import CATALOGUE, CATALOGUE_QUEUE, POOL, default_args, task


@dag(
    dag_id="pacs_admin",
    description="Identity corrections and rejections: merges a patient, moves a study or rejects instances, recorded.",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["pacs", "admin", "corrections", "rejection"],
    default_args=default_args(retries=1, retry_delay=timedelta(minutes=1)),
    params={
        "action": Param("patient_merge", type=["null", "string"],
                        enum=[None, "patient_merge", "study_move", "reject"],
                        description="patient_merge, study_move or reject"),
        "from_patient": Param(None, type=["null", "string"], description="patient_merge: the PatientID merged away"),
        "into_patient": Param(None, type=["null", "string"], description="patient_merge: the PatientID kept"),
        "study": Param(None, type=["null", "string"], description="study_move, reject: the StudyInstanceUID"),
        "series": Param(None, type=["null", "string"], description="reject: the SeriesInstanceUID"),
        "sop": Param(None, type=["null", "string"], description="reject: the SOPInstanceUID"),
        "to_patient": Param(None, type=["null", "string"], description="study_move: the PatientID it belongs to"),
        "reason": Param(None, type=["null", "string"],
                        description="Why (recorded with the correction); reject: the IOCM code, e.g. 113001"),
        "note": Param(None, type=["null", "string"], description="reject: free text recorded with the rejection"),
    },
)
def pacs_admin() -> None:
    @task(pool=POOL, queue=CATALOGUE_QUEUE, outlets=[CATALOGUE])
    def correct(params: dict[str, Any] | None = None, run_id: str | None = None,
                outlet_events: Any = None) -> dict[str, Any]:
        from pacs.admin.corrections import correct as make_correction
        from pacs.config import load_config

        params = params or {}
        summary = make_correction(load_config(), action=params.get("action"), run_id=run_id or "manual",
                                  reason=params.get("reason"), from_patient=params.get("from_patient"),
                                  into_patient=params.get("into_patient"), study=params.get("study"),
                                  to_patient=params.get("to_patient"), series=params.get("series"),
                                  sop=params.get("sop"), note=params.get("note"))
        if outlet_events is not None:
            outlet_events[CATALOGUE].extra = {"correction": summary}
        return summary

    correct()


pacs_admin()
