"""The Parquet snapshot analysts read: written after every catalogue change, read consistently.

**Write.** :func:`~pacs.catalogue.snapshot_refresh.refresh_snapshot` (in :mod:`pacs.catalogue.snapshot_refresh`)
writes new immutable files for what changed and publishes the manifest ``_snapshot.json`` last.

**Read.** :func:`with_snapshot` runs a piece of work on an in-memory DuckDB whose catalogue
tables are views over exactly the files one manifest lists, and runs it again if a refresh
changed the snapshot meanwhile: a result is always one refresh's consistent state (files are
never rewritten, so the files of one manifest are one state; a file a later refresh removed
under the query makes it run again).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pacs import store
from pacs.catalogue import db, sql
from pacs.catalogue.snapshot_refresh import SNAPSHOT_MANIFEST, TABLE_NAMES, refresh_snapshot
from pacs.errors import QueryError, SnapshotBusyError
from pacs.store import Location

log = logging.getLogger(__name__)

T = TypeVar("T")

TABLES = TABLE_NAMES
"""The catalogue tables the snapshot holds."""
_TABLE_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _write_parquet(loc: Location, key: str, reader: pa.RecordBatchReader) -> int:
    """Stream a query result into one Parquet file, published atomically."""
    rows = 0
    with store.writer(loc, loc.path(key)) as f, pq.ParquetWriter(f, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def write_query(con: duckdb.DuckDBPyConnection, loc: Location, key: str, query: str,
                params: dict[str, Any] | None = None, batch_rows: int = 100_000) -> int:
    """Stream a query's result into one Parquet file at ``key`` of ``loc``; returns the row count."""
    reader = con.sql(query, params=sql.params_for(query, params or {})).to_arrow_reader(batch_rows)
    return _write_parquet(loc, key, reader)


@dataclass(frozen=True)
class SnapshotState:
    """One refresh of the snapshot: its manifest and the files it lists, by table."""

    manifest: bytes
    modified: float
    tables: dict[str, tuple[str, ...]]

    def files(self, table: str) -> list[str]:
        return list(self.tables.get(table, ()))

    @property
    def all_files(self) -> list[str]:
        return [f for files in self.tables.values() for f in files]


def _modified(info: dict[str, Any]) -> float:
    value = info.get("mtime", info.get("LastModified", info.get("last_modified", info.get("created"))))
    if value is None:
        return 0.0
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def _files_by_table(manifest: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    if "tables" in manifest:
        return {t: tuple(f["file"] for f in files) for t, files in manifest["tables"].items()}
    # the format before 2: one data.parquet per partition
    out: dict[str, list[str]] = {}
    for part in sorted(manifest.get("partitions", {})):
        out.setdefault(part.split("/", 1)[0], []).append(f"{part}/data.parquet")
    return {t: tuple(v) for t, v in out.items()}


def snapshot_state(loc: Location) -> SnapshotState | None:
    """The snapshot's current manifest (None when no snapshot was ever written)."""
    path = loc.path(SNAPSHOT_MANIFEST)
    try:
        info = loc.fs.info(path)
        with loc.fs.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return SnapshotState(manifest=data, modified=_modified(info), tables=_files_by_table(json.loads(data)))


def _still_current(loc: Location, state: SnapshotState) -> bool:
    """Whether ``state`` is still the snapshot (the same manifest)."""
    now = snapshot_state(loc)
    return now is not None and now.manifest == state.manifest


def _create_empty_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The catalogue's tables, empty: what a table with no snapshot file reads as (the admin
    tables too: the analysts' views anti-join ``rejection``; the departmental ones: their views
    read them)."""
    db.run_all(con, ("schema", "schema_admin", "schema_departmental"))


def open_snapshot(loc: Location, state: SnapshotState | None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose catalogue tables are views over the files of ``state`` in ``loc``."""
    con = duckdb.connect()
    # Views are bound again by every view built on them: read each file's footer once.
    con.execute("SET parquet_metadata_cache = true")
    store.register_filesystem(con, loc)
    _create_empty_tables(con)
    tables = set(TABLES) | set(state.tables if state else ())
    for table in sorted(tables):
        files = state.files(table) if state else []
        if not files:
            continue
        if not _TABLE_NAME.fullmatch(table):
            raise QueryError(f"snapshot manifest names a bad table {table!r}")
        paths = [loc.uri(loc.path(f)) for f in files]
        # An identifier checked against _TABLE_NAME, not a value: replace the empty table by the view.
        con.execute(f'DROP TABLE IF EXISTS "{table}"')
        rel = con.read_parquet(paths, hive_partitioning="/study_year=" in paths[0], union_by_name=True)
        rel.create_view(table)
    return con


def with_snapshot(loc: Location, work: Callable[[duckdb.DuckDBPyConnection], T], *, wait: float = 120.0) -> T:
    """Run ``work`` on one consistent snapshot in ``loc``, again if a refresh changed it meanwhile."""
    deadline = time.monotonic() + wait
    delay = 0.1
    attempt = 0
    while True:
        attempt += 1
        state = snapshot_state(loc)
        if state is None:
            log.warning("no Parquet snapshot at %s yet: the catalogue reads as empty", loc.url)
        con = open_snapshot(loc, state)
        error: Exception | None = None
        try:
            result = work(con)
        except (duckdb.Error, OSError) as exc:  # a file replaced or removed under the query
            error = exc
        finally:
            con.close()
        if state is None or _still_current(loc, state):
            if error is not None:
                raise error
            return result
        if time.monotonic() > deadline and attempt >= 2:  # at least one retry, however slow the first
            raise SnapshotBusyError(f"the Parquet snapshot at {loc.url} kept changing for {wait:.0f}s "
                                    "(a refresh is under way); try again, or use --live")
        log.info("snapshot changed during the query (attempt %d); running it again", attempt)
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def refresh(cfg: Any) -> dict[str, Any]:
    """Refresh ``cfg``'s snapshot from its catalogue (the writer's connection: run in the writer's pool)."""
    with db.opened(cfg.duckdb) as con:
        return refresh_snapshot(con, cfg.parquet)
