"""
### pacs_backup — a verified backup of the catalogue in the offline tier

Daily at 02:30 UTC (``PACS_BACKUP_SCHEDULE``), for the configuration in ``PACS_CONFIG``:

1. **backup** (pool ``pacs_catalogue``, queue ``catalogue``: it holds the catalogue's lock, so no
   merge or lifecycle step changes the file meanwhile) — ``CHECKPOINT``, then the DuckDB file is
   streamed to ``_catalogue/backups/g<N>/`` in the offline tier and hashed in the same pass; the
   object is read back and its sha256 compared before the generation's manifest is written.
   Generations beyond ``backup.keep`` (default 7) are deleted once the new one is verified.

A backup killed mid-way leaves no listed generation (the next one removes its object). To get
the catalogue back: ``pacs restore [--generation N]``; without any backup, ``pacs rebuild``
reconstructs it from the tiers. Counts and checksums only in logs and XCom: no patient data.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import CronTriggerTimetable, dag

from pacs.dagkit import CATALOGUE_QUEUE, POOL, default_args, task


@dag(
    dag_id="pacs_backup",
    description="Backs up the catalogue to the offline tier as a verified generation; keeps backup.keep of them.",
    schedule=CronTriggerTimetable(os.environ.get("PACS_BACKUP_SCHEDULE", "30 2 * * *"), timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["pacs", "catalogue", "backup"],
    default_args=default_args(retries=3, retry_delay=timedelta(minutes=2)),
)
def pacs_backup() -> None:
    @task(pool=POOL, queue=CATALOGUE_QUEUE)
    def backup(run_id: str | None = None) -> dict[str, Any]:
        from pacs.catalogue.backup import backup as take_backup
        from pacs.config import load_config

        return take_backup(load_config(), run_id=run_id or "manual")

    backup()


pacs_backup()
