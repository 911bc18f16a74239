"""Refreshing the Parquet snapshot at the cost of what changed, whatever the catalogue holds.

The snapshot is a set of **immutable** Parquet files, never rewritten in place, and a manifest
(``_snapshot.json``) that lists the files of one refresh; it is published last, so a reader of
a manifest reads one refresh's consistent state. Each file holds the rows of whole *cluster keys*
(a study for ``study``, ``series`` and ``image``; a patient; an ingest batch for ``quarantine`` and
``ingest_batch``), sorted, up to a bounded number of rows, in the partition its study's year gives
(``<table>/study_year=<YYYY>/<generation>-<n>.parquet``; ``study_year=0`` without a study date).

A refresh, in the writer's transaction:

1. takes the rows changed since the previous refresh began (``updated_at``, a zone-map scan that
   reads only recently written row groups; every writer sets it to ``now()``, the start of its
   own transaction, which is after the previous refresh's under the one-writer rule; a clock
   found earlier than the previous refresh's start means it stepped back: a full rebuild);
2. **appends** a new file per partition for new rows (created after the previous refresh began:
   intake's new images, series, studies), and **rewrites** only the files that hold the cluster
   key of a row that changed (an aggregate that moved, a study sent offline), so rows written grow
   with the change, not the archive;
3. merges a partition's small files once there are more than :data:`MAX_SMALL_FILES` of them,
   so files per partition stay bounded (compaction, amortised into the refreshes);
4. publishes the manifest and ``_snapshot.sql`` (views for plain DuckDB), commits its index
   (tables ``snapshot_file``/``snapshot_key``), and only then deletes the files it replaced.

When the index and the published manifest disagree (first refresh of an older snapshot, a
snapshot folder deleted or moved, a crash between publishing and committing) it rebuilds the
whole snapshot once, from the catalogue.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pacs import store
from pacs.catalogue import db, sql
from pacs.store import Location

log = logging.getLogger(__name__)

SNAPSHOT_MANIFEST = "_snapshot.json"
SNAPSHOT_VIEWS = "_snapshot.sql"
FORMAT = 2
MAX_SMALL_FILES = 8
"""A partition's files under a quarter of the target size are merged when there are more."""
_PARTITIONED = "'study_year=' || coalesce(year(s.study_date), 0)::VARCHAR"


@dataclass(frozen=True)
class Table:
    """How one catalogue table is laid out in the snapshot."""

    name: str
    row_key: str
    cluster: str
    order: str
    target_rows: int
    marker: str = "t.updated_at"   # when the row last changed
    created: str = "t.created_at"  # when it was inserted
    join: str = "JOIN study s ON s.study_instance_uid = t.study_instance_uid"
    part: str = _PARTITIONED

    @property
    def partitioned(self) -> bool:
        return self.part != "''"

    def query(self, name: str) -> str:
        return sql.named_queries("snapshot_refresh")[name].format(
            table=self.name, row_key=self.row_key, cluster=self.cluster, marker=self.marker, created=self.created,
            part=self.part, join=self.join, order=self.order)


TABLES: tuple[Table, ...] = (
    # study first: its changed rows tell which studies moved partition (their series and images follow)
    Table("study", "study_instance_uid", "study_instance_uid", "study_date, study_instance_uid", 100_000,
          join="", part=_PARTITIONED.replace("s.study_date", "t.study_date")),
    Table("series", "series_instance_uid", "study_instance_uid", "study_instance_uid, series_instance_uid", 200_000),
    Table("image", "sop_instance_uid", "study_instance_uid",
          "study_instance_uid, series_instance_uid, instance_number, sop_instance_uid", 250_000,
          created="t.ingested_at"),
    # returning patients are spread over every file: small files keep their rewrites small
    Table("patient", "patient_id", "patient_id", "patient_id", 20_000, join="", part="''"),
    Table("quarantine", "quarantine_id", "batch_id", "quarantined_at, quarantine_id", 200_000,
          marker="greatest(t.quarantined_at, coalesce(t.resubmitted_at, t.quarantined_at))",
          created="t.quarantined_at", join="", part="''"),
    Table("ingest_batch", "batch_id", "batch_id", "merged_at, batch_id", 200_000, marker="t.merged_at",
          created="t.merged_at", join="", part="''"),
    Table("rejection", "sop_instance_uid", "run_id", "rejected_at, sop_instance_uid", 200_000,
          marker="t.rejected_at", created="t.rejected_at", join="", part="''"),
    # append-only: a plan's audit rows are written in one commit, so the plan is their row key
    Table("deletion", "plan_id", "plan_id", "deleted_at, sop_instance_uid, tier", 200_000,
          marker="t.deleted_at", created="t.deleted_at", join="", part="''"),
    # departmental rows (schema_departmental.sql), laid out as their images: by study and study year
    *(Table(name, "sop_instance_uid", "study_instance_uid", "study_instance_uid, series_instance_uid, sop_instance_uid",
            250_000) for name in ("ct_acquisition", "mr_acquisition", "dx_exposure", "us_acquisition", "dose_report")),
    # a dose report's events are written (and purged) together, so the report is their row key
    Table("dose_event", "sop_instance_uid", "study_instance_uid", "study_instance_uid, sop_instance_uid, event_ordinal",
          250_000),
)
TABLE_NAMES = tuple(t.name for t in TABLES)


@dataclass
class _Refresh:
    """One refresh's bookkeeping: what it wrote and what it replaced."""

    con: duckdb.DuckDBPyConnection
    loc: Location
    generation: int
    written: list[dict[str, Any]]
    replaced: list[str]
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # a crashed refresh's names stay unused
    rows: int = 0
    bytes: int = 0

    def file_name(self, table: Table, part: str) -> str:
        folder = f"{table.name}/{part}" if part else table.name
        return f"{folder}/{self.generation:08d}-{self.token}-{len(self.written):05d}.parquet"


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    rows = con.execute("SELECT value FROM catalogue_meta WHERE key = $k", {"k": key}).fetchall()
    return rows[0][0] if rows else None


def _set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute("INSERT INTO catalogue_meta VALUES ($k, $v) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                {"k": key, "v": value})


def _published(loc: Location) -> dict[str, Any]:
    try:
        with loc.fs.open(loc.path(SNAPSHOT_MANIFEST), "rb") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _in_step(con: duckdb.DuckDBPyConnection, loc: Location) -> bool:
    """Whether the index describes the snapshot published at ``loc`` (else: rebuild it whole)."""
    manifest = _published(loc)  # a copy of the folder elsewhere is still in step: files are named relative to it
    return manifest.get("format") == FORMAT and str(manifest.get("generation")) == _meta(con, "snapshot_generation")


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f'DESCRIBE "{table}"').fetchall()]  # a fixed table name


def _write_files(r: _Refresh, table: Table, part: str, reader: pa.RecordBatchReader, columns: list[str]) -> None:
    """Stream ``reader`` into new files of at most ``table.target_rows`` rows, recording each."""
    batches: Iterator[pa.RecordBatch] = iter(reader)
    pending: pa.RecordBatch | None = next(batches, None)
    while pending is not None:
        name = r.file_name(table, part)
        keys: set[str] = set()
        rows = 0
        with store.writer(r.loc, r.loc.path(name)) as f:
            schema = pa.schema([reader.schema.field(c) for c in columns])
            with pq.ParquetWriter(f, schema, compression="zstd") as out:
                while pending is not None and rows < table.target_rows:
                    take = pending.slice(0, table.target_rows - rows)
                    rest = pending.slice(take.num_rows)
                    out.write_batch(pa.RecordBatch.from_arrays([take.column(c) for c in columns], schema=schema))
                    keys.update(pc.unique(take.column(table.cluster)).to_pylist())
                    rows += take.num_rows
                    pending = rest if rest.num_rows else next(batches, None)
        size = r.loc.fs.size(r.loc.path(name))
        r.written.append({"name": name, "tbl": table.name, "part": part, "rows": rows, "bytes": size,
                          "keys": sorted(k for k in keys if k is not None)})
        r.rows += rows
        r.bytes += size


def _full(r: _Refresh, table: Table) -> None:
    """Write every partition of ``table`` from the catalogue."""
    columns = _columns(r.con, table.name)
    for (part,) in r.con.execute(table.query("full_parts")).fetchall():
        query = table.query("full_rows")
        reader = r.con.sql(query, params=sql.params_for(query, {"part": part})).to_arrow_reader(100_000)
        _write_files(r, table, part, reader, columns)


def _changed(r: _Refresh, table: Table, since: dt.datetime) -> None:
    """Write the rows of ``table`` changed since ``since``: new files, and the files they replace."""
    con = r.con
    con.execute(table.query("changed"), {"since": since})
    if table.name == "study":
        con.execute(table.query("moved_studies"))
    elif table.partitioned and con.execute("SELECT count(*) FROM snap_moved").fetchall()[0][0]:
        con.execute(table.query("moved"))
    removed = con.execute("SELECT count(*) FROM snapshot_removed WHERE tbl = $t", {"t": table.name}).fetchall()[0][0]
    if not removed and not con.execute("SELECT count(*) FROM snap_changed").fetchall()[0][0]:
        return
    columns = _columns(con, table.name)
    affected: dict[str, list[str]] = {}
    for name, part, _rows in con.execute(table.query("affected"), {"tbl": table.name}).fetchall():
        affected.setdefault(part, []).append(name)
    parts = set(affected) | {p for (p,) in con.execute(table.query("parts_changed")).fetchall()}
    cols = ", ".join(f'"{c}"' for c in columns)
    for part in sorted(parts):
        group = affected.get(part, [])
        group += _compaction(con, table, part, group)
        old = ""
        params: dict[str, Any] = {"part": part}
        if group:
            params["files"] = [r.loc.uri(r.loc.path(n)) for n in group]
            params["tbl"] = table.name
            # rows a writer deleted from the catalogue (snapshot_removed) leave the rewritten files
            old = (f"SELECT {_old_columns(con, columns, params['files'])} FROM read_parquet($files, "
                   f"hive_partitioning = false, union_by_name = true) o "
                   f"WHERE o.{table.row_key} NOT IN (SELECT {table.row_key} FROM snap_changed) "
                   f"AND o.{table.row_key}::VARCHAR NOT IN (SELECT row_key FROM snapshot_removed WHERE tbl = $tbl) "
                   f"UNION ALL ")
        query = f"{old}SELECT {cols} FROM snap_changed WHERE _part = $part ORDER BY {table.order}"
        _write_files(r, table, part, con.sql(query, params=params).to_arrow_reader(100_000), columns)
        r.replaced += group


def _old_columns(con: duckdb.DuckDBPyConnection, columns: list[str], files: list[str]) -> str:
    """The select list of ``columns`` over published files: a column the files lack (written before
    it was added to the catalogue, as schema_admin.sql adds some) reads as NULL."""
    present = {d[0] for d in con.execute("SELECT * FROM read_parquet($files, hive_partitioning = false, "
                                         "union_by_name = true) LIMIT 0", {"files": files}).description}
    return ", ".join(f'"{c}"' if c in present else f'NULL AS "{c}"' for c in columns)


def _compaction(con: duckdb.DuckDBPyConnection, table: Table, part: str, group: list[str]) -> list[str]:
    """A partition's small files to merge into this refresh's file, once there are too many."""
    small = [n for n, _ in con.execute(table.query("small"), {"tbl": table.name, "part": part,
                                                               "rows": table.target_rows // 4}).fetchall()
             if n not in group]
    return small if len(small) >= MAX_SMALL_FILES else []


def _record(r: _Refresh, full: bool) -> None:
    """Bring the index in step with what this refresh wrote and replaced (in its transaction)."""
    con = r.con
    if full:
        con.execute("DELETE FROM snapshot_file")
        con.execute("DELETE FROM snapshot_key")
    elif r.replaced:
        con.execute("DELETE FROM snapshot_file WHERE name IN (SELECT unnest($n::VARCHAR[]))", {"n": r.replaced})
        con.execute("DELETE FROM snapshot_key WHERE name IN (SELECT unnest($n::VARCHAR[]))", {"n": r.replaced})
    if r.written:
        files = pa.table({c: [w[c] for w in r.written] for c in ("name", "tbl", "part", "rows", "bytes")})
        keys = pa.table({"tbl": [w["tbl"] for w in r.written for _ in w["keys"]],
                         "key": [k for w in r.written for k in w["keys"]],
                         "name": [w["name"] for w in r.written for _ in w["keys"]]})
        con.register("snap_written", files)
        con.register("snap_written_keys", keys)
        con.execute("INSERT INTO snapshot_file SELECT name, tbl, part, rows, bytes, $g FROM snap_written",
                    {"g": r.generation})
        con.execute("INSERT INTO snapshot_key SELECT tbl, key, name FROM snap_written_keys")
        con.unregister("snap_written")
        con.unregister("snap_written_keys")


def _manifest(r: _Refresh, started: dt.datetime) -> dict[str, Any]:
    tables: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLE_NAMES}
    for name, tbl, part, rows, nbytes in r.con.execute(
            "SELECT name, tbl, part, rows, bytes FROM snapshot_file ORDER BY tbl, part, name").fetchall():
        tables.setdefault(tbl, []).append({"file": name, "part": part, "rows": rows, "bytes": nbytes})
    return {"format": FORMAT, "generation": r.generation, "location": r.loc.url, "refreshed_at": started.isoformat(),
            "tables": tables}


def views_sql(loc: Location, manifest: dict[str, Any], empty: dict[str, list[tuple[str, str]]]) -> str:
    """``CREATE VIEW`` statements over exactly the files of ``manifest``: what plain DuckDB runs
    (a table with no rows, hence no file, is an empty view of its columns and types ``empty``)."""
    lines = [f"-- The pacs catalogue snapshot, generation {manifest['generation']} "
             f"(refreshed {manifest['refreshed_at']}).",
             "-- In DuckDB: .read <this file>  (object storage needs DuckDB's httpfs and credentials)."]
    for table, files in sorted(manifest["tables"].items()):
        if not files:
            cols = ", ".join(f'NULL::{kind} AS "{name}"' for name, kind in empty.get(table, []))
            lines.append(f"CREATE OR REPLACE VIEW {table} AS SELECT {cols} WHERE false;")
            continue
        paths = ", ".join("'" + loc.uri(loc.path(f["file"])).replace("'", "''") + "'" for f in files)
        hive = "true" if "study_year=" in files[0]["file"] else "false"
        lines.append(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet([{paths}], "
                     f"hive_partitioning = {hive}, union_by_name = true);")
    # the analysts' views of `pacs query` (rejected instances left out), for this session
    lines += ["", "-- The analysts' views (include/sql/views.sql), as `pacs query` defines them.",
              sql.load("views").strip()]
    return "\n".join(lines) + "\n"


def _remove_unlisted(loc: Location, manifest: dict[str, Any]) -> int:
    """Delete every table file the manifest does not list (replaced ones, a crashed refresh's)."""
    listed = {f["file"] for files in manifest["tables"].values() for f in files}
    removed = 0
    for table in TABLE_NAMES:
        for path, _size in list(store.iter_files(loc, table)):
            if path.endswith(".parquet") and loc.key(path) not in listed:
                removed += store.remove(loc, path)
    return removed


def refresh_snapshot(con: duckdb.DuckDBPyConnection, loc: Location, *, force: bool = False) -> dict[str, Any]:
    """Bring the snapshot at ``loc`` up to the catalogue, writing what changed; see the module doc."""
    db.ensure_schema(con)
    store.register_filesystem(con, loc)
    with db.transaction(con):
        started = con.execute("SELECT now()").fetchall()[0][0]
        since_text = _meta(con, "snapshot_since")
        since = dt.datetime.fromisoformat(since_text) if since_text else None
        stepped_back = since is not None and started < since
        if stepped_back:
            log.warning("the clock is earlier than the previous snapshot refresh (%s): rebuilding it whole", since)
        full = force or stepped_back or not _in_step(con, loc)
        # never a generation a published manifest already used: its files' names are taken
        generation = max(int(_meta(con, "snapshot_generation") or 0),
                         int(_published(loc).get("generation") or 0)) + 1
        r = _Refresh(con, loc, generation, written=[], replaced=[])
        con.execute("CREATE OR REPLACE TEMP TABLE snap_moved (key VARCHAR)")
        for table in TABLES:
            if full:
                _full(r, table)
            else:
                _changed(r, table, since)
        _record(r, full)
        con.execute("DELETE FROM snapshot_removed")  # every file that held such a row was rewritten
        manifest = _manifest(r, started)
        moved = _meta(con, "snapshot_location") != loc.url  # the views name the files by their full path
        if full or r.written or r.replaced or moved:
            store.put(loc, loc.path(SNAPSHOT_MANIFEST), json.dumps(manifest, indent=1).encode())
            empty = {t: [(c[0], c[1]) for c in con.execute(f'DESCRIBE "{t}"').fetchall()]  # fixed table names
                     for t, files in manifest["tables"].items() if not files}
            store.put(loc, loc.path(SNAPSHOT_VIEWS), views_sql(loc, manifest, empty).encode())
            _set_meta(con, "snapshot_generation", str(generation))
        _set_meta(con, "snapshot_location", loc.url)
        _set_meta(con, "snapshot_since", started.isoformat())
    # replaced files, and any a crashed refresh left, go once the new manifest is published
    removed = _remove_unlisted(loc, manifest) if (full or r.written or r.replaced) else 0
    files = sum(len(v) for v in manifest["tables"].values())
    log.info("snapshot %s: %d file(s) written (%d rows, %d bytes), %d replaced, %d in all%s", loc.url,
             len(r.written), r.rows, r.bytes, len(r.replaced), files, " (full rebuild)" if full else "")
    return {"files": files, "written": len(r.written), "rows_written": r.rows, "bytes_written": r.bytes,
            "replaced": len(r.replaced), "removed": removed, "full": full, "location": loc.url}
