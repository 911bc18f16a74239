"""Quarantine: where rejected files go with their reason, and how they come back.

A rejected file's original bytes are stored under a deterministic key (reason, batch, row)
with a JSON sidecar naming the reason, detail, source and sha256 (:func:`quarantine_bytes`);
the merge quarantines catalogue-level rejects the same way (:func:`late_quarantine`).

Re-submission (after, say, a patient mismatch is resolved in the RIS) copies a quarantined
file's original bytes back into the first landing location under ``resubmitted/``, marks the
quarantine row ``resubmitted``, and only then removes the quarantined copy. The next ingest
validates it again from scratch, so a file that is still bad is simply quarantined again.
Killed at any point and re-run, nothing is lost: at worst the file is both in landing and in
quarantine, and intake counts the second copy as a duplicate.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pyarrow as pa

from pacs import catalogue, store
from pacs.config import Config
from pacs.dicom.layout import quarantine_key
from pacs.dicom.validation import REASONS
from pacs.errors import UsageError

log = logging.getLogger(__name__)

RESUBMIT_FOLDER = "resubmitted"
_PLACED = pa.schema([("batch_id", pa.string()), ("row_no", pa.int32()), ("quarantine_uri", pa.string()),
                     ("sidecar_uri", pa.string())])


def select(con: Any, *, reasons: list[str] | None = None, ids: list[str] | None = None,
           include_resubmitted: bool = False) -> list[dict[str, Any]]:
    """Quarantine rows matching the filters (reasons and/or quarantine ids)."""
    for r in reasons or []:
        if r not in REASONS:
            raise UsageError(f"unknown reason code {r!r}; known: {', '.join(sorted(REASONS))}")
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


def resubmit(cfg: Config, *, reasons: list[str] | None = None, ids: list[str] | None = None) -> dict[str, Any]:
    """Send quarantined files back through intake. Needs the catalogue writer's slot."""
    if not reasons and not ids:
        return {"resubmitted": 0}
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
            written = store.copy_stream(cfg.quarantine.fs, qpath, landing, dst, fsync=cfg.ingest.fsync,
                                          overwrite=True)
            if row["sha256"] and written.sha256 != row["sha256"]:
                raise store.StorageError(f"quarantine {row['quarantine_id']}: stored bytes do not match their sha256")
            con.execute(
                "UPDATE quarantine SET status = 'resubmitted', resubmitted_at = now(), resubmitted_uri = $uri "
                "WHERE quarantine_id = $id",
                {"uri": landing.uri(dst), "id": row["quarantine_id"]},
            )
            store.remove(cfg.quarantine, qpath)
            if row["sidecar_uri"]:
                store.remove(cfg.quarantine, row["sidecar_uri"])
            done += 1
        if done:
            catalogue.refresh_snapshot(con, cfg.parquet)  # the quarantine table analysts read
    log.info("re-submitted %d quarantined file(s) to landing", done)
    return {"resubmitted": done}


def sidecar(cfg: Config, row: dict[str, Any], qpath: str, fsync: bool = False) -> str:
    side = qpath.rsplit(".", 1)[0] + ".json"
    body = {
        "reason": row["reason"], "detail": row["detail"], "source_uri": row["source_uri"],
        "batch_id": row["batch_id"], "row": row["row_no"], "sha256": row["sha256"],
        "size_bytes": row["size_bytes"], "quarantined_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    data = json.dumps(body, indent=1).encode()
    store.write(cfg.quarantine, side, data, store.hash_bytes(data), fsync=fsync, overwrite=True)
    return cfg.quarantine.uri(side)


def quarantine_bytes(cfg: Config, row: dict[str, Any], data: bytes | None, src_fs: Any = None,
                      src_path: str | None = None, suffix: str = ".dcm", fsync: bool = False) -> None:
    """Store a rejected file's original bytes (and sidecar) under its deterministic key.

    Without ``fsync`` the caller flushes the filesystem before recording the batch as stored.
    """
    qpath = cfg.quarantine.path(quarantine_key(row["reason"], row["batch_id"], row["row_no"], suffix))
    with store.tier_faults(cfg.quarantine):
        if data is not None:
            store.write(cfg.quarantine, qpath, data, row["sha256"] or store.hash_bytes(data),
                          fsync=fsync, overwrite=True, tag=row["batch_id"])
        else:
            written = store.copy_stream(src_fs, src_path, cfg.quarantine, qpath, fsync=fsync,
                                          overwrite=True, tag=row["batch_id"])
            row["sha256"], row["size_bytes"] = written.sha256, written.size
        row["quarantine_uri"] = cfg.quarantine.uri(qpath)
        row["sidecar_uri"] = sidecar(cfg, row, qpath, fsync=fsync)


def late_quarantine(cfg: Config, late: pa.Table) -> pa.Table:
    """Quarantine the rows the merge rejects (patient_mismatch, sop_conflict, ...) from landing,
    or from their online copy when landing no longer has them; returns where each went."""
    out: dict[str, list[Any]] = {"batch_id": [], "row_no": [], "quarantine_uri": [], "sidecar_uri": []}
    for r in late.to_pylist():
        src_loc = cfg.landing[r["landing"]]
        src = r["source_path"]
        if store.exists(src_loc, src):
            fs, path = src_loc.fs, src
        elif r["in_place"]:
            fs, path = cfg.online.fs, cfg.online.path_of_uri(r["dst_uri"])
        else:
            raise store.StorageError(f"batch {r['batch_id']} row {r['row_no']}: no copy left to quarantine")
        row = {k: r[k] for k in ("batch_id", "row_no", "reason", "detail", "source_uri", "sha256", "size_bytes")}
        qpath = cfg.quarantine.path(quarantine_key(row["reason"], row["batch_id"], row["row_no"]))
        if store.holds(cfg.quarantine, qpath, r["sha256"]):  # done by an interrupted attempt
            row["quarantine_uri"] = cfg.quarantine.uri(qpath)
            row["sidecar_uri"] = sidecar(cfg, row, qpath, fsync=cfg.ingest.fsync)
        else:
            quarantine_bytes(cfg, row, None, fs, path, fsync=cfg.ingest.fsync)
            if row["sha256"] != r["sha256"]:
                raise store.StorageError(f"batch {r['batch_id']} row {r['row_no']}: bytes changed while quarantining")
        for k, values in out.items():
            values.append(row[k])
    return pa.table(out, schema=_PLACED)
