"""The catalogue's side of the ingest merge: decide, record what was placed, apply.

The intake merge (:mod:`pacs.intake.merge`) owns the order, inside one transaction:

1. :func:`decide` registers a group of staged rows and decides each file's outcome
   (catalogued, identical duplicate, quarantined for a catalogue-level reason, deferred),
   returning the rows whose bytes must still be placed;
2. the intake places them (late rejects into quarantine, first-received files where a later
   copy had taken their online path) and records that with :func:`record_quarantined` and
   :func:`record_winners_placed`;
3. :func:`apply` upserts patient, study, series and image rows and the exact aggregates, records
   the rejections that KOS rejection notes make (``merge_rejections.sql``, only when a note is
   among the files), inserts the departmental rows (acquisition parameters, dose reports and
   their irradiation events: ``merge_departmental.sql``, only when a file has such values) and
   returns every file's outcome, which the intake writes to the journal before COMMIT.

Both extras are driven by the staged columns alone (``rejection_note``, ``acquisition``,
``dose_report``), so any code that feeds staged rows through here records them too; a staged
table written before a column existed merges as if no file had its values.

A crash anywhere leaves either nothing or everything committed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pacs.catalogue import db, sql
from pacs.catalogue.sop_index import SopIndex
from pacs.errors import StorageError

DEPARTMENTAL_COLUMNS = ("acquisition", "dose_report")
"""The staged columns ``merge_departmental.sql`` reads: :data:`pacs.dicom.columns.DEPARTMENTAL_COLUMNS`
(named here, not imported: the catalogue does not load pydicom; a test holds the two equal)."""


class Outcome(StrEnum):
    """What the merge made of a staged file (``outcome`` of the journal's outcome table)."""

    CATALOGUED = "catalogued"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    DEFERRED = "deferred"


@dataclass
class MergeResult:
    """What one merge did, per batch and in total (counts only, no patient data)."""

    batches: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    bytes_catalogued: int = 0
    sop_hashes: np.ndarray | None = None  # the image_sop hashes one merge group added (not reported)

    def total(self, key: str) -> int:
        return sum(b.get(key, 0) for b in self.batches.values())

    def add(self, other: MergeResult) -> None:
        self.batches.update(other.batches)
        self.bytes_catalogued += other.bytes_catalogued
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": len(self.batches),
            "files": self.total("files"),
            "catalogued": self.total("catalogued"),
            "duplicates": self.total("duplicates"),
            "quarantined": self.total("quarantined"),
            "deferred": self.total("deferred"),
            "bytes": self.bytes_catalogued,
            "reasons": dict(sorted(self.reasons.items())),
        }


def merged_batches(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> set[str]:
    """The batches among ``batch_ids`` that the catalogue already holds."""
    if not batch_ids:
        return set()
    rows = con.execute(
        "SELECT batch_id FROM ingest_batch WHERE batch_id IN (SELECT unnest($ids::VARCHAR[]))",
        {"ids": batch_ids},
    ).fetchall()
    return {r[0] for r in rows}


@dataclass(frozen=True)
class Decisions:
    """The decided group: the staged rows (numbered) and what must be placed before applying."""

    staged: pa.Table
    late: pa.Table     # rejected by the catalogue and without a quarantined copy yet
    winners: pa.Table  # first-received files whose online path a later file had taken


def decide(con: duckdb.DuckDBPyConnection, staged: pa.Table, index: SopIndex | None = None) -> Decisions:
    """Decide every staged file's outcome (in the caller's open transaction). ``index``: the
    sorted index of image_sop (:mod:`pacs.catalogue.sop_index`) that finds the staged SOP
    instances that may be catalogued at the cost of the batch; without it image_sop is scanned."""
    staged = staged.append_column("_i", pa.array(np.arange(staged.num_rows, dtype=np.int64)))
    con.register("staged", staged)
    db.run(con, "merge_decide_sop")
    if index is None:
        db.run(con, "merge_sop_scan")
    else:
        hashes = con.sql("SELECT sop_hash FROM merge_staged_sop").to_arrow_table().column(0)
        con.register("sop_index_hits", index.lookup(hashes.to_numpy()))
        db.run(con, "merge_sop_hits")
        con.unregister("sop_index_hits")
    db.run(con, "merge_decide")
    late = con.sql(
        "SELECT s.* EXCLUDE (reason, detail), d.reason, d.detail FROM decided d JOIN staged s USING (_i) "
        "WHERE d.outcome = 'quarantined' AND d.quarantine_uri IS NULL ORDER BY d.batch_id, d.row_no"
    ).to_arrow_table()
    winners = con.sql("SELECT s.* FROM decided d JOIN staged s USING (_i) WHERE d.replace_dst "
                      "ORDER BY d.batch_id, d.row_no").to_arrow_table()
    return Decisions(staged, late, winners)


def record_quarantined(con: duckdb.DuckDBPyConnection, placed: pa.Table) -> None:
    """Record where the late rejects were quarantined: (batch_id, row_no, quarantine_uri, sidecar_uri)."""
    con.register("late_placed", placed)
    con.execute(
        "UPDATE decided SET quarantine_uri = p.quarantine_uri, sidecar_uri = p.sidecar_uri "
        "FROM late_placed p WHERE decided.batch_id = p.batch_id AND decided.row_no = p.row_no"
    )
    con.unregister("late_placed")


def record_winners_placed(con: duckdb.DuckDBPyConnection) -> None:
    """Record that every first-received file is now in its online place."""
    con.execute("UPDATE decided SET in_place = true WHERE replace_dst")


def _outcomes(con: duckdb.DuckDBPyConnection, staged: pa.Table, decision: pa.Table) -> pa.Table:
    drop = {i for (i,) in con.execute(sql.load("merge_outcomes")).fetchall()}
    delete_dst = np.zeros(staged.num_rows, dtype=bool)
    if drop:
        delete_dst[list(drop)] = True
    return pa.table({
        **{c: staged.column(c) for c in ("batch_id", "row_no", "source_uri", "source_path", "source_size",
                                         "source_mtime_ns")},
        "outcome": decision.column("outcome"), "reason": decision.column("reason"),
        "detail": decision.column("detail"),
        **{c: staged.column(c) for c in ("sop_instance_uid", "study_instance_uid", "sha256", "size_bytes",
                                         "dst_uri")},
        "in_place": decision.column("in_place"), "delete_dst": pa.array(delete_dst),
        "quarantine_uri": decision.column("quarantine_uri"), "sidecar_uri": decision.column("sidecar_uri"),
    })


def _result(con: duckdb.DuckDBPyConnection) -> MergeResult:
    counts = con.execute(
        "SELECT batch_id, files, catalogued, duplicates, quarantined, deferred, bytes FROM ingest_batch "
        "WHERE batch_id IN (SELECT DISTINCT batch_id FROM decided)"
    ).fetchall()
    reasons = con.execute("SELECT reason, count(*) FROM decided WHERE outcome = 'quarantined' GROUP BY reason"
                          ).fetchall()
    result = MergeResult()
    for batch_id, files, cat, dup, quar, deferred, nbytes in counts:
        result.batches[batch_id] = {"files": files, "catalogued": cat, "duplicates": dup,
                                    "quarantined": quar, "deferred": deferred}
        result.bytes_catalogued += int(nbytes)
    result.reasons = {r: int(n) for r, n in reasons}
    return result


def _effective_patients(con: duckdb.DuckDBPyConnection, new_images: pa.Table) -> pa.Table:
    """``new_images`` with each file's effective patient (merge_decide.sql, an identity
    correction): the header's PatientID stays in the file and in ``study.header_patient_id``.
    Usually no row is corrected, and the table is returned as it is."""
    corrected = con.sql("SELECT _i, patient_id FROM merge_effective_patient").to_arrow_table()
    if not corrected.num_rows or not new_images.num_rows:
        return new_images
    at = pc.index_in(new_images.column("_i"), value_set=corrected.column("_i"))
    effective = pc.if_else(pc.is_valid(at), pc.take(corrected.column("patient_id"), at),
                           new_images.column("patient_id"))
    return new_images.set_column(new_images.schema.get_field_index("patient_id"), "patient_id", effective)


def _has_rejection_notes(new_images: pa.Table) -> bool:
    """Whether a newly catalogued file is a KOS rejection note (a staged table written before
    notes were read has no such column: none is)."""
    if "rejection_note" not in new_images.column_names or not new_images.num_rows:
        return False
    return new_images.column("rejection_note").null_count < new_images.num_rows


def _with_departmental_columns(new_images: pa.Table) -> tuple[pa.Table, bool]:
    """``new_images`` with the departmental columns (all NULL in a staged table written before they
    existed), and whether any newly catalogued file has departmental values."""
    for name in DEPARTMENTAL_COLUMNS:
        if name not in new_images.column_names:
            new_images = new_images.append_column(name, pa.nulls(new_images.num_rows, pa.string()))
    present = any(new_images.column(name).null_count < new_images.num_rows for name in DEPARTMENTAL_COLUMNS)
    return new_images, bool(new_images.num_rows) and present


def apply(con: duckdb.DuckDBPyConnection, decisions: Decisions, *, run_id: str, now: dt.datetime,
          sop_token: str) -> tuple[pa.Table, MergeResult]:
    """Upsert the decided group; returns every file's outcome and the counts (before COMMIT).

    ``sop_token`` is written as the catalogue's ``image_sop_token`` (image_sop changes here);
    the result's ``sop_hashes`` are the new rows' hashes, for :meth:`SopIndex.added` after COMMIT.
    """
    staged = decisions.staged
    missing = con.execute("SELECT count(*) FROM decided WHERE outcome = 'quarantined' AND quarantine_uri IS NULL"
                          ).fetchall()[0][0]
    if missing:
        raise StorageError(f"{missing} rejected file(s) have no quarantined copy; not committing")
    if decisions.winners.num_rows and con.execute(
            "SELECT count(*) FROM decided WHERE replace_dst AND NOT coalesce(in_place, false)").fetchall()[0][0]:
        raise StorageError("first-received files were not placed in the online tier; not committing")
    # The decisions, in staged order; the catalogued rows are taken from the Arrow table itself
    # (no copy of the wide staged rows inside DuckDB).
    decision = con.sql(
        "SELECT _i, outcome, reason, detail, in_place, quarantine_uri, sidecar_uri FROM decided ORDER BY _i"
    ).to_arrow_table()
    if decision.num_rows != staged.num_rows:
        raise StorageError(f"{staged.num_rows - decision.num_rows} staged row(s) got no decision; not committing")
    catalogued = pc.equal(decision.column("outcome"), Outcome.CATALOGUED.value)
    # usually every file is new: then the staged table itself is the input (no copy)
    new_images = staged if pc.all(catalogued).as_py() else staged.filter(catalogued)
    new_images, departmental = _with_departmental_columns(new_images)
    con.register("new_images", _effective_patients(con, new_images))
    db.run(con, "merge_apply", {"now": now, "run_id": run_id, "sop_token": sop_token})
    if _has_rejection_notes(new_images):
        db.run(con, "merge_rejections", {"run_id": run_id})
    if departmental:
        db.run(con, "merge_departmental", {"now": now})
    db.run(con, "merge_aggregates", {"now": now})
    outcomes = _outcomes(con, staged, decision)
    result = _result(con)
    result.sop_hashes = con.sql("SELECT (md5_number(sop_instance_uid) >> 64)::UBIGINT FROM new_images"
                                ).to_arrow_table().column(0).to_numpy()
    con.unregister("staged")
    con.unregister("new_images")
    db.run(con, "merge_done")  # its working tables are not kept until the next merge replaces them
    return outcomes, result


def outcomes_from_catalogue(con: duckdb.DuckDBPyConnection, batch_id: str) -> dict[str, Any]:
    """The counts of a batch the catalogue already holds (for a marker an interrupted merge missed)."""
    rows = con.execute(
        "SELECT files, catalogued, duplicates, quarantined, deferred, bytes FROM ingest_batch WHERE batch_id = $b",
        {"b": batch_id},
    ).fetchall()
    if not rows:
        return {}
    keys = ("files", "catalogued", "duplicates", "quarantined", "deferred", "bytes")
    return dict(zip(keys, rows[0], strict=True))
