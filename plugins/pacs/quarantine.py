"""Quarantined files: listing them and re-submitting them to intake.

Re-submission (after, say, a patient mismatch is resolved in the RIS) copies a quarantined
file's original bytes back into the first landing location under ``resubmitted/``, marks the
quarantine row ``resubmitted``, and only then removes the quarantined copy. The next ingest
validates it again from scratch, so a file that is still bad is simply quarantined again.
Killed at any point and re-run, nothing is lost: at worst the file is both in landing and in
quarantine, and intake counts the second copy as a duplicate.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pacs import catalogue, storage
from pacs.config import Config
from pacs.validation import REASONS

log = logging.getLogger(__name__)

RESUBMIT_FOLDER = "resubmitted"


def select(con: Any, *, reasons: list[str] | None = None, ids: list[str] | None = None,
           include_resubmitted: bool = False) -> list[dict[str, Any]]:
    """Quarantine rows matching the filters (reasons and/or quarantine ids)."""
    for r in reasons or []:
        if r not in REASONS:
            raise ValueError(f"unknown reason code {r!r}; known: {', '.join(sorted(REASONS))}")
    rel = con.sql(
        "SELECT quarantine_id, batch_id, reason, detail, quarantine_uri, sidecar_uri, sha256, size_bytes, status "
        "FROM quarantine "
        "WHERE ($reasons IS NULL OR reason IN (SELECT unnest($reasons::VARCHAR[]))) "
        "  AND ($ids IS NULL OR quarantine_id IN (SELECT unnest($ids::VARCHAR[]))) "
        "  AND ($all OR status = 'quarantined') "
        "ORDER BY quarantine_id",
        params={"reasons": reasons or None, "ids": ids or None, "all": include_resubmitted},
    )
    cols = rel.columns
    return [dict(zip(cols, row, strict=True)) for row in rel.fetchall()]


def resubmit(cfg: Config, *, reasons: list[str] | None = None, ids: list[str] | None = None,
             now: dt.datetime | None = None) -> dict[str, Any]:
    """Send quarantined files back through intake. Needs the catalogue writer's slot."""
    if not reasons and not ids:
        return {"resubmitted": 0}
    now = now or dt.datetime.now(dt.UTC)
    landing = cfg.landing[0]
    done = 0
    with catalogue.opened(cfg.duckdb) as con:
        for row in select(con, reasons=reasons, ids=ids):
            qpath = cfg.quarantine.path_of_uri(row["quarantine_uri"])
            if row["quarantine_uri"].endswith(".link"):
                log.warning("quarantine %s is a link record, not a file; it cannot be re-submitted",
                            row["quarantine_id"])
                continue
            name = row["quarantine_id"].replace(":", "-") + ".dcm"
            dst = landing.path(f"{RESUBMIT_FOLDER}/{name}")
            written = storage.copy_stream(cfg.quarantine.fs, qpath, landing, dst, fsync=cfg.ingest.fsync,
                                          overwrite=True)
            if row["sha256"] and written.sha256 != row["sha256"]:
                raise storage.StorageError(f"quarantine {row['quarantine_id']}: stored bytes do not match their sha256")
            con.execute(
                "UPDATE quarantine SET status = 'resubmitted', resubmitted_at = $now, resubmitted_uri = $uri "
                "WHERE quarantine_id = $id",
                {"now": now, "uri": landing.uri(dst), "id": row["quarantine_id"]},
            )
            storage.remove(cfg.quarantine, qpath)
            if row["sidecar_uri"]:
                storage.remove(cfg.quarantine, cfg.quarantine.path_of_uri(row["sidecar_uri"]))
            done += 1
    log.info("re-submitted %d quarantined file(s) to landing", done)
    return {"resubmitted": done}
