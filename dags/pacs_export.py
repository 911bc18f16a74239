"""
### pacs_export — a cohort's DICOM files to a folder or an s3:// prefix

Triggered by hand (or by the API) with ``target`` (a folder or ``s3://bucket/prefix``) and at
least one selector: ``query`` (SQL over the analysts' views returning ``study_instance_uid``,
``series_instance_uid`` and/or ``sop_instance_uid``), ``study_uids``, ``accession_numbers`` or
``patient_ids``; ``deidentify`` applies DICOM PS3.15's Basic Application Level Confidentiality
Profile to the copies with the pseudonym key (Airflow Variable ``pacs_pseudonym_key``).

1. **select** (pool ``pacs_catalogue``, queue ``catalogue``: a short read of the catalogue) — the
   selection's instances and where their copies are, kept under the target's ``.pacs-export/``.
2. **copy** (any worker; the catalogue is not opened) — each instance from its fastest copy
   (online file, offline object, or packed member by one ranged read), verified against the
   catalogue's sha256, as ``patient/study/series/sop.dcm``, then ``manifest.csv`` and
   ``manifest.parquet``. A retry resumes where the killed try stopped. A file de-identification
   refuses (burned-in annotation) is left out and listed in ``refused.csv``; the task logs one
   warning and returns ``status: partial``.

The archive (tiers and catalogue) is never changed. Counts only in logs and XCom.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag

from pacs.dagkit import CATALOGUE_QUEUE, POOL, default_args, task


@dag(
    dag_id="pacs_export",
    description="Exports a cohort's DICOM files (verified, resumable, optionally de-identified) to a folder or S3.",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["pacs", "export", "analysts"],
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=1)),
    params={
        "target": Param(None, type=["null", "string"], description="The target folder or s3://bucket/prefix."),
        "query": Param(None, type=["null", "string"],
                       description="SQL over the analysts' views returning study_instance_uid, series_instance_uid "
                                   "and/or sop_instance_uid."),
        "study_uids": Param([], type=["null", "array"], items={"type": "string"}, description="StudyInstanceUIDs"),
        "accession_numbers": Param([], type=["null", "array"], items={"type": "string"},
                                   description="AccessionNumbers"),
        "patient_ids": Param([], type=["null", "array"], items={"type": "string"}, description="PatientIDs"),
        "deidentify": Param(False, type=["boolean", "null"],
                            description="De-identify the copies (PS3.15 Basic Application Level Confidentiality "
                                        "Profile, pseudonym key from the Variable pacs_pseudonym_key)."),
    },
)
def pacs_export() -> None:
    @task(pool=POOL, queue=CATALOGUE_QUEUE)
    def select(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.errors import UsageError
        from pacs.export.export import save_selection, selection

        params = params or {}
        if not params.get("target"):
            raise UsageError("pacs_export needs params.target: a folder or s3://bucket/prefix")
        cfg = load_config()
        sel = selection(cfg, query=params.get("query"), studies=params.get("study_uids") or (),
                        accessions=params.get("accession_numbers") or (), patient_ids=params.get("patient_ids") or ())
        return save_selection(cfg, params["target"], sel, deidentify=bool(params.get("deidentify")))

    @task
    def copy(selected: dict[str, Any], params: dict[str, Any] | None = None,
             run_id: str | None = None) -> dict[str, Any]:
        from pacs.config import load_config
        from pacs.export.export import export as run_export

        params = params or {}
        return run_export(load_config(), params["target"], None, deidentify=bool(params.get("deidentify")),
                          run_id=run_id or "manual", saved=selected["digest"])

    copy(select())

pacs_export()
