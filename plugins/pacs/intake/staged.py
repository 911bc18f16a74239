"""The staged row: one landing file's record as it travels process → merge → finalize.

A batch's staged rows are a journal table of :data:`STAGED_SCHEMA` (the file's origin, its
:class:`Status`, reason and detail, where its bytes went, and the catalogue's header columns
from :data:`pacs.dicom.columns.HEADER_SCHEMA`). The helpers here are the only code that sets
a row's status.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from enum import StrEnum
from typing import Any

import pyarrow as pa

from pacs.dicom.columns import DEPARTMENTAL_COLUMNS, HEADER_SCHEMA, STAGED_HEADER_COLUMNS
from pacs.dicom.validation import UIDS, is_valid_uid


class Status(StrEnum):
    """What processing made of a landing file."""

    OK = "ok"                # stored in the online tier, to be catalogued
    REJECTED = "rejected"    # quarantined with a reason
    DEFERRED = "deferred"    # left in landing for a later sweep, with the reason in ``detail``


_STR = pa.string()
_INT = pa.int32()
STAGED_SCHEMA = pa.schema([
    ("batch_id", _STR), ("row_no", _INT), ("source_uri", _STR), ("source_path", _STR),
    ("landing", _INT), ("source_size", pa.int64()), ("source_mtime_ns", pa.int64()),
    ("received_at", pa.timestamp("us", tz="UTC")), ("status", _STR), ("reason", _STR), ("detail", _STR),
    ("sha256", _STR), ("size_bytes", pa.int64()), ("dst_uri", _STR), ("move", pa.bool_()),
    ("in_place", pa.bool_()), ("quarantine_uri", _STR), ("sidecar_uri", _STR),
    ("source_dev", pa.int64()), ("source_ino", pa.int64()), ("read_mtime_ns", pa.int64()),
    *HEADER_SCHEMA,
    ("rejection_note", _STR),  # a KOS rejection note's references (JSON); None for every other file
    # departmental values (JSON; pacs.dicom.acquisition, pacs.dicom.dose_sr): None when the file has none
    *((name, _STR) for name in DEPARTMENTAL_COLUMNS),
])
_UID_COLS = [col for _, col in UIDS]


def base_row(batch_id: str, f: dict[str, Any]) -> dict[str, Any]:
    """A fresh staged row for manifest entry ``f`` (every column present, status unset)."""
    row = dict.fromkeys(STAGED_SCHEMA.names)
    row.update(
        batch_id=batch_id, row_no=f["row"], source_uri=f["uri"], source_path=f["path"], landing=f["landing"],
        source_size=f["size"], source_mtime_ns=f["mtime_ns"],
        received_at=dt.datetime.fromtimestamp(f["mtime_ns"] / 1e9, dt.UTC), move=False,
    )
    return row


def accept(row: dict[str, Any], header: dict[str, Any]) -> None:
    """Mark a row good, with the catalogue columns of its header."""
    row.update({k: header.get(k) for k in STAGED_HEADER_COLUMNS})
    row["rejection_note"] = header.get("rejection_note")
    for name in DEPARTMENTAL_COLUMNS:
        row[name] = header.get(name)
    row["status"] = Status.OK.value


def reject(row: dict[str, Any], reason: str, detail: str, header: dict[str, Any] | None) -> None:
    """Mark a row rejected; only identifiers that are valid UIDs are kept (they may become paths)."""
    row["status"], row["reason"], row["detail"] = Status.REJECTED.value, reason, detail
    for col in _UID_COLS:
        value = (header or {}).get(col)
        row[col] = value if is_valid_uid(value) else None


def defer(row: dict[str, Any], detail: str) -> None:
    """Leave a row's file in landing for a later sweep: nothing of it is published."""
    row["status"], row["detail"], row["in_place"] = Status.DEFERRED.value, detail, False
    row["reason"], row["quarantine_uri"], row["sidecar_uri"], row["dst_uri"] = None, None, None, None
    row["move"] = False


def counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch's counts by status and reason (no patient data)."""
    status = Counter(r["status"] for r in rows)
    reasons = Counter(r["reason"] for r in rows if r["status"] == Status.REJECTED)
    return {"files": len(rows), "ok": status[Status.OK], "rejected": status[Status.REJECTED],
            "deferred": status[Status.DEFERRED], "bytes": sum(r["size_bytes"] or 0 for r in rows),
            "reasons": dict(sorted(reasons.items()))}


def table(rows: list[dict[str, Any]]) -> pa.Table:
    """Staged rows as an Arrow table (column by column: 30x faster than ``from_pylist``)."""
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in STAGED_SCHEMA},
                    schema=STAGED_SCHEMA)
