"""The catalogue's DuckDB file: connections, named SQL, transactions and the schema.

One writer at a time: every task that writes runs in the Airflow pool ``pacs_catalogue``
(one slot), and :func:`connect` retries while another process holds DuckDB's file lock, so a
short-lived reader never breaks a writer. Analysts read the Parquet snapshot (or a read-only
connection), never the writer's file handle. :func:`set_memory_limit` is the one place that
bounds DuckDB's memory.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pacs.catalogue import sql
from pacs.errors import CatalogueBusyError, CatalogueMissingError

log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = "512MB"
"""DuckDB's memory bound for the catalogue (it spills to disk beyond it); ``$PACS_DUCKDB_MEMORY_LIMIT``
overrides it. The writer shares its worker with Airflow, and this holds for a 100,000-file backlog."""


def set_memory_limit(con: duckdb.DuckDBPyConnection, limit: str | None = None) -> None:
    """Bound a connection's memory: ``limit``, else ``$PACS_DUCKDB_MEMORY_LIMIT``, else 512 MB."""
    con.execute("SET memory_limit = $m", {"m": limit or os.environ.get("PACS_DUCKDB_MEMORY_LIMIT")
                                          or DEFAULT_MEMORY_LIMIT})


SCHEMA_VERSION = "1"


SCHEMA_FILES = ("schema", "schema_admin", "schema_lifecycle", "schema_snapshot", "schema_purge",
                "schema_departmental")


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def connect(path: str | os.PathLike[str], *, read_only: bool = False, timeout: float = 300.0,
            create: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the catalogue, waiting (with jittered backoff) while another process holds its lock."""
    path = Path(path)
    if read_only and not path.exists():
        raise CatalogueMissingError(f"catalogue {path} does not exist yet (run pacs_ingest first)")
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
    set_memory_limit(con)
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
    """Create the catalogue's tables and views that do not exist yet (idempotent)."""
    for name in SCHEMA_FILES:
        run(con, name)
    con.execute(
        "INSERT INTO catalogue_meta VALUES ('schema_version', $v) ON CONFLICT (key) DO NOTHING",
        {"v": SCHEMA_VERSION},
    )
    # A catalogue older than study_ingest (include/sql/schema.sql): filled from image once; the
    # two probes read one row each, so an open costs nothing more afterwards.
    if con.execute("SELECT NOT EXISTS (SELECT 1 FROM study_ingest) AND EXISTS (SELECT 1 FROM image)").fetchall()[0][0]:
        con.execute("INSERT INTO study_ingest SELECT DISTINCT study_instance_uid, ingested_at FROM image")
