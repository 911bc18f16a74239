"""The DuckDB catalogue: connections, schema, the ingest merge, and the Parquet snapshot.

One writer at a time: every task that writes runs in the Airflow pool ``pacs_catalogue``
(one slot), and :func:`connect` retries while another process holds DuckDB's file lock, so a
short-lived reader never breaks a writer. Analysts read the Parquet snapshot (or a read-only
connection), never the writer's file handle.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pacs import sql
from pacs.config import Location
from pacs.dagkit import POOL as POOL  # the one name of the writer pool

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
SCHEMA_FILES = ("schema", "schema_lifecycle")


class CatalogueBusyError(RuntimeError):
    """Another process held the catalogue's lock for longer than the timeout."""


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def connect(path: str | os.PathLike[str], *, read_only: bool = False, timeout: float = 300.0,
            create: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the catalogue, waiting (with jittered backoff) while another process holds its lock."""
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"catalogue {path} does not exist yet (run pacs_ingest first)")
    if not read_only and create:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                if _is_lock_error(exc):
                    raise CatalogueBusyError(f"catalogue {path} stayed locked for {timeout:.0f}s: {exc}") from exc
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
    # Bound DuckDB's own memory (it spills to disk beyond it): the writer shares its worker with
    # Airflow, and the 1 GB-per-process budget holds for a 100,000-file backlog.
    con.execute("SET memory_limit = $m", {"m": os.environ.get("PACS_DUCKDB_MEMORY_LIMIT", "512MB")})
    if not read_only:
        ensure_schema(con)
    return con


@contextmanager
def opened(path: str | os.PathLike[str], *, read_only: bool = False, timeout: float = 300.0
           ) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(path, read_only=read_only, timeout=timeout)
    try:
        yield con
    finally:
        con.close()


def run(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None) -> None:
    """Run every statement of ``include/sql/<name>.sql``."""
    for stmt in sql.statements(name):
        con.execute(stmt, sql.params_for(stmt, params or {}))


def run_all(con: duckdb.DuckDBPyConnection, names: tuple[str, ...], params: dict[str, Any] | None = None) -> None:
    """Run several SQL files in order."""
    for name in names:
        run(con, name, params)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT, or ROLLBACK on any error (a killed process commits nothing)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for name in SCHEMA_FILES:
        run(con, name)
    con.execute(
        "INSERT INTO catalogue_meta VALUES ('schema_version', $v) ON CONFLICT (key) DO NOTHING",
        {"v": SCHEMA_VERSION},
    )


@dataclass
class MergeResult:
    """What one merge did, per batch and in total (counts only, no patient data)."""

    batches: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    bytes_catalogued: int = 0

    def total(self, key: str) -> int:
        return sum(b.get(key, 0) for b in self.batches.values())

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


def merge(
    con: duckdb.DuckDBPyConnection,
    staged: pa.Table,
    *,
    run_id: str,
    now: dt.datetime,
    quarantine_late_rejects: Callable[[pa.Table], pa.Table],
    write_outcomes: Callable[[pa.Table], None],
    place_winners: Callable[[pa.Table], None] | None = None,
) -> MergeResult:
    """Merge staged rows of one or more batches in one transaction.

    ``quarantine_late_rejects`` receives the rows the catalogue rejects (patient_mismatch,
    sop_conflict) and must store their bytes, returning (batch_id, row_no, quarantine_uri,
    sidecar_uri); ``place_winners`` then puts the bytes of first-received files whose online
    path a later file had taken; ``write_outcomes`` persists every file's outcome for finalize.
    Both run before COMMIT, so a crash anywhere leaves either nothing or everything committed.
    """
    n = staged.num_rows
    staged = staged.append_column("_i", pa.array(np.arange(n, dtype=np.int64)))
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("staged", staged)
        run(con, "merge_decide")
        late = con.sql(
            "SELECT s.* EXCLUDE (reason, detail), d.reason, d.detail FROM decided d JOIN staged s USING (_i) "
            "WHERE d.outcome = 'quarantined' AND d.quarantine_uri IS NULL ORDER BY d.batch_id, d.row_no"
        ).to_arrow_table()
        if late.num_rows:
            placed = quarantine_late_rejects(late)
            con.register("late_placed", placed)
            con.execute(
                "UPDATE decided SET quarantine_uri = p.quarantine_uri, sidecar_uri = p.sidecar_uri "
                "FROM late_placed p WHERE decided.batch_id = p.batch_id AND decided.row_no = p.row_no"
            )
            con.unregister("late_placed")
            missing = con.execute(
                "SELECT count(*) FROM decided WHERE outcome = 'quarantined' AND quarantine_uri IS NULL"
            ).fetchall()[0][0]
            if missing:
                raise RuntimeError(f"{missing} rejected file(s) have no quarantined copy; not committing")
        winners = con.sql("SELECT s.* FROM decided d JOIN staged s USING (_i) WHERE d.replace_dst "
                          "ORDER BY d.batch_id, d.row_no").to_arrow_table()
        if winners.num_rows:
            if place_winners is None:
                raise RuntimeError("files must be placed in the online tier but no placer was given")
            place_winners(winners)
            con.execute("UPDATE decided SET in_place = true WHERE replace_dst")
        # The decisions, in staged order; the catalogued rows are taken from the Arrow table
        # itself (no copy of the wide staged rows inside DuckDB).
        decision = con.sql(
            "SELECT _i, outcome, reason, detail, in_place, quarantine_uri, sidecar_uri FROM decided ORDER BY _i"
        ).to_arrow_table()
        if decision.num_rows != n:
            raise RuntimeError(f"{n - decision.num_rows} staged row(s) got no decision; not committing")
        catalogued = pc.equal(decision.column("outcome"), "catalogued")
        # usually every file is new: then the staged table itself is the input (no copy)
        new_images = staged if pc.all(catalogued).as_py() else staged.filter(catalogued)
        con.register("new_images", new_images)
        run(con, "merge_apply", {"now": now, "run_id": run_id})
        run(con, "aggregates", {"now": now})
        drop = {i for (i,) in con.execute(sql.load("merge_outcomes")).fetchall()}
        delete_dst = np.zeros(n, dtype=bool)
        if drop:
            delete_dst[list(drop)] = True
        outcomes = pa.table({
            **{c: staged.column(c) for c in ("batch_id", "row_no", "source_uri", "source_path", "source_size",
                                             "source_mtime_ns")},
            "outcome": decision.column("outcome"), "reason": decision.column("reason"),
            "detail": decision.column("detail"),
            **{c: staged.column(c) for c in ("sop_instance_uid", "study_instance_uid", "sha256", "size_bytes",
                                             "dst_uri")},
            "in_place": decision.column("in_place"), "delete_dst": pa.array(delete_dst),
            "quarantine_uri": decision.column("quarantine_uri"), "sidecar_uri": decision.column("sidecar_uri"),
        })
        write_outcomes(outcomes)
        counts = con.execute(
            "SELECT batch_id, files, catalogued, duplicates, quarantined, deferred, bytes FROM ingest_batch "
            "WHERE batch_id IN (SELECT DISTINCT batch_id FROM decided)"
        ).fetchall()
        reasons = con.execute(
            "SELECT reason, count(*) FROM decided WHERE outcome = 'quarantined' GROUP BY reason"
        ).fetchall()
        con.unregister("staged")
        con.unregister("new_images")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    result = MergeResult()
    for batch_id, files, cat, dup, quar, deferred, nbytes in counts:
        result.batches[batch_id] = {"files": files, "catalogued": cat, "duplicates": dup,
                                    "quarantined": quar, "deferred": deferred}
        result.bytes_catalogued += int(nbytes)
    result.reasons = {r: int(n) for r, n in reasons}
    return result


def outcomes_from_catalogue(con: duckdb.DuckDBPyConnection, batch_id: str) -> dict[str, Any]:
    rows = con.execute(
        "SELECT files, catalogued, duplicates, quarantined, deferred, bytes FROM ingest_batch WHERE batch_id = $b",
        {"b": batch_id},
    ).fetchall()
    if not rows:
        return {}
    row = rows[0]
    keys = ("files", "catalogued", "duplicates", "quarantined", "deferred", "bytes")
    return dict(zip(keys, row, strict=True))


# ---------------------------------------------------------------------------------------------
# Parquet snapshot for analysts
# ---------------------------------------------------------------------------------------------

SNAPSHOT_MANIFEST = "_snapshot.json"


def _write_parquet(loc: Location, key: str, reader: pa.RecordBatchReader) -> int:
    """Stream a query result into one Parquet file, published atomically."""
    path = loc.path(key)
    fs = loc.fs
    rows = 0
    if loc.is_local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
        with pq.ParquetWriter(tmp, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        os.replace(tmp, path)
        return rows
    with fs.open(path, "wb") as f, pq.ParquetWriter(f, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def write_query(con: duckdb.DuckDBPyConnection, loc: Location, key: str, query: str,
                params: dict[str, Any] | None = None, batch_rows: int = 100_000) -> int:
    """Stream a query's result into one Parquet file at ``key`` of ``loc``; returns the row count."""
    reader = con.sql(query, params=sql.params_for(query, params or {})).to_arrow_reader(batch_rows)
    return _write_parquet(loc, key, reader)


def refresh_snapshot(con: duckdb.DuckDBPyConnection, loc: Location, *, force: bool = False) -> dict[str, Any]:
    """Refresh the hive-partitioned Parquet snapshot; only changed partitions are rewritten.

    Layout: ``<table>/study_year=<YYYY>/data.parquet`` for study, series and image
    (``study_year=0`` when a study has no date), ``<table>/data.parquet`` for the small tables.
    Each file is replaced atomically, so a reader sees the old or the new partition, never half.
    """
    manifest_path = loc.path(SNAPSHOT_MANIFEST)
    previous: dict[str, Any] = {}
    if not force:
        try:
            with loc.fs.open(manifest_path, "rb") as f:
                previous = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            previous = {}
    prev_parts: dict[str, Any] = previous.get("partitions", {})
    parts: dict[str, Any] = {}
    written = 0
    run(con, "snapshot_prepare")
    stamps = con.execute("SELECT part, rows, stamp FROM snapshot_stamps ORDER BY part").fetchall()
    for part, nrows, stamp in stamps:
        stamp_s = stamp.isoformat() if stamp is not None else None
        parts[part] = {"rows": int(nrows), "stamp": stamp_s}
        if prev_parts.get(part) == parts[part] and loc.fs.exists(loc.path(f"{part}/data.parquet")):
            continue
        table, _, year = part.partition("/study_year=")
        query = sql.load(f"snapshot_{table}")
        params = {"year": int(year)} if year else {}
        write_query(con, loc, f"{part}/data.parquet", query, params, batch_rows=200_000)
        written += 1
    # Partitions that no longer exist (e.g. a study's date was filled in) are removed.
    for part in set(prev_parts) - set(parts):
        try:
            loc.fs.rm_file(loc.path(f"{part}/data.parquet"))
        except FileNotFoundError:
            pass
    manifest = {"partitions": parts, "written": written}
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    if loc.is_local:
        os.makedirs(loc.root, exist_ok=True)
        tmp = manifest_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, manifest_path)
    else:
        loc.fs.pipe_file(manifest_path, data)
    return {"partitions": len(parts), "rewritten": written, "location": loc.url}
