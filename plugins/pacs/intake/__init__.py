"""Intake: landing files become catalogued images or quarantined originals (``pacs_ingest``).

The steps, one module each, run in this order (the DAG runs them as tasks; :func:`run_ingest`
runs them in one process for the CLI, tests and benchmarks):

- :mod:`pacs.intake.landing`     the sweep: claim settled landing files into batch manifests
- :mod:`pacs.intake.process`     read, hash, parse, validate and store each file of a batch
- :mod:`pacs.intake.merge`       the catalogue's single writer takes the batches in
- :mod:`pacs.intake.finalize`    remove landing files once their outcome is committed
- :mod:`pacs.intake.quarantine`  where rejects go with their reason, and how they come back
- :mod:`pacs.intake.staged`      the staged row every step passes on (schema and status)

Every step is idempotent and resumable from the journal (:mod:`pacs.journal`). Nothing here
logs patient data: counts, batch ids and reason codes only.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pacs import catalogue, store
from pacs.config import Config
from pacs.intake.finalize import finalize_batch, finalize_batches
from pacs.intake.landing import last_sweep, nothing_to_take, sweep, sweep_files, sweep_lock
from pacs.intake.merge import merge_batches
from pacs.intake.process import MAX_ATTEMPTS, process_batch
from pacs.intake.staged import STAGED_SCHEMA

__all__ = ["MAX_ATTEMPTS", "STAGED_SCHEMA", "finalize_batch", "finalize_batches", "last_sweep", "merge_batches",
           "merge_step", "nothing_to_take", "process_batch", "run_ingest", "sweep"]

log = logging.getLogger(__name__)


def run_ingest(cfg: Config, *, run_id: str = "manual", now: dt.datetime | None = None,
               snapshot: bool = True) -> dict[str, Any]:
    """Sweep, process, merge, finalize and refresh the snapshot, in this process."""
    with sweep_lock(cfg.work):
        ids, stats = sweep_files(cfg, run_id=run_id, now=now, limit=None)
    failed: list[str] = []
    owned = 0
    for b in ids:
        try:
            owned += process_batch(cfg, b).get("owned_elsewhere", 0)
        except store.TierError:
            raise
        except Exception as exc:  # noqa: BLE001 - one batch never stops the others
            log.error("batch %s failed (%s); the other batches go on, it is retried by the next run",
                      b, type(exc).__name__)
            failed.append(b)
    merged = merge_batches(cfg, ids, run_id=run_id, now=now)
    finalize_batches(cfg, ids)
    if snapshot:
        merged["snapshot"] = catalogue.refresh(cfg)
    merged["waiting"], merged["future_dated"] = stats.waiting, stats.future_dated
    merged["missing_landing"] = stats.missing_landing
    merged["failed_batches"], merged["left_to_other_runs"] = len(failed), owned + stats.owned_elsewhere
    return merged


def merge_step(config: str, batch_ids: list[str], *, run_id: str) -> dict[str, Any]:
    """The ``merge`` task's work: merge the batches, finalize them, refresh the snapshot; returns
    the summary the task reports. The DAG runs it in a process of its own (:mod:`pacs.isolate`)."""
    from pacs.config import load_config

    cfg = load_config(config)
    summary = merge_batches(cfg, batch_ids, run_id=run_id)
    cleaned = finalize_batches(cfg, batch_ids)
    info = catalogue.refresh(cfg)
    swept = last_sweep(cfg)
    return {**summary, **cleaned, "snapshot_files_written": info["written"],
            "snapshot_bytes_written": info["bytes_written"],
            "waiting": swept.get("waiting", 0), "future_dated": swept.get("future_dated", 0),
            "missing_landing": swept.get("missing_landing", [])}
