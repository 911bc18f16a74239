"""Analysts' SQL over the catalogue: ``pacs query "SQL"``.

Owns how analysts read the catalogue without ever blocking or breaking the ingest merge, the
analysts' views (``include/sql/views.sql``) and the de-identified views
(``include/sql/views_deid.sql``).

**Reads never touch the merge's file.** By default a query runs in a throw-away in-memory DuckDB
whose tables ``patient``, ``study``, ``series``, ``image``, ``quarantine`` and ``ingest_batch``
are views over the Parquet snapshot (``catalogue.parquet``), so it takes no lock on the live
catalogue: the merge runs whatever the analysts do. The snapshot is refreshed after each merge
one partition file at a time (each replaced atomically) and ``_snapshot.json`` last, so a query
reads exactly the files that manifest lists and is then checked: if the manifest changed, or a
listed file is newer than the manifest (a refresh was under way), the query is run again on the
new snapshot. A result is therefore always one refresh's consistent state. ``--wait`` bounds how
long a query waits for a refresh to finish.

``--live`` reads the live file instead, read-only, for figures newer than the last refresh: it
waits (with :func:`pacs.catalogue.connect`'s backoff) while the merge holds the file, and the
query is interrupted after ``--max-seconds`` (default 30 s) so it can delay a merge by at most
that long, far below the merge's own 300 s lock timeout.

**De-identified** (``--deidentified``): the views of ``views_deid.sql`` use a keyed pseudonym
(HMAC-SHA256, key from ``$PACS_PSEUDONYM_KEY``, or the Airflow Variable ``pacs_pseudonym_key``
inside an Airflow task) and are materialised into a fresh database that holds only them: no raw
table, no pseudonym function (so a known patient ID cannot be hashed to find its key), and no
file access (``enable_external_access = false``, configuration locked). Without a key the command
refuses; there is no default key.
"""

from __future__ import annotations

import argparse
import decimal
import hmac
import io
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pacs import catalogue
from pacs.config import Config, Location, load_config

log = logging.getLogger(__name__)

T = TypeVar("T")

KEY_ENV = "PACS_PSEUDONYM_KEY"
KEY_VARIABLE = "pacs_pseudonym_key"
MIN_KEY_LENGTH = 16
PSEUDONYM_HEX = 32  # 128 bits of the HMAC: collisions are negligible for any archive
TABLES = ("patient", "study", "series", "image", "quarantine", "ingest_batch")
ANALYST_VIEWS = ("study_patient", "daily_volume", "modality_mix", "study_tier_status", "study_tier_bytes")
_TABLE_NAME = re.compile(r"[a-z][a-z0-9_]*")
DEID_VIEWS = ("deid_patient", "deid_study", "deid_series", "deid_daily_volume", "deid_modality_mix")


class QueryError(RuntimeError):
    """The query cannot run as asked (the message says why)."""


class SnapshotBusyError(QueryError):
    """The snapshot kept changing (a refresh was under way) for longer than the wait."""


# ---------------------------------------------------------------------------------------------
# pseudonyms
# ---------------------------------------------------------------------------------------------

def pseudonym_key() -> bytes | None:
    """The pseudonym key: ``$PACS_PSEUDONYM_KEY``, or inside an Airflow task the Variable
    ``pacs_pseudonym_key``; None when neither is set."""
    value = os.environ.get(KEY_ENV)
    if not value and os.environ.get("AIRFLOW_CTX_DAG_ID"):
        from airflow.sdk import Variable

        value = Variable.get(KEY_VARIABLE, default=None)
    return value.encode() if value else None


def require_key(key: bytes | None) -> bytes:
    if not key:
        raise QueryError(f"--deidentified needs the pseudonym key: set {KEY_ENV} (or the Airflow Variable "
                         f"{KEY_VARIABLE}); there is no default key, so nothing was read")
    if len(key) < MIN_KEY_LENGTH:
        raise QueryError(f"{KEY_ENV} is too short ({len(key)} bytes); use at least {MIN_KEY_LENGTH} random bytes, "
                         "e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`")
    return key


def pseudonym(key: bytes, kind: str, value: str) -> str:
    """The pseudonymous key of an identifier: HMAC-SHA256(key, kind NUL value), 32 hex digits."""
    return hmac.digest(key, f"{kind}\x00{value}".encode(), "sha256").hex()[:PSEUDONYM_HEX]


def _register_pseudonym(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    def fn(kind: pa.Array, value: pa.Array) -> pa.Array:
        out = [None if v is None else pseudonym(key, k, v)
               for k, v in zip(kind.to_pylist(), value.to_pylist(), strict=True)]
        return pa.array(out, type=pa.string())

    con.create_function("pacs_pseudonym", fn, ["VARCHAR", "VARCHAR"], "VARCHAR", type="arrow",
                        null_handling="special", side_effects=False)


# ---------------------------------------------------------------------------------------------
# the Parquet snapshot, read consistently
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SnapshotState:
    """One refresh of the snapshot: its manifest and the files it lists."""

    manifest: bytes
    modified: float
    partitions: tuple[str, ...]

    def files(self, table: str) -> list[str]:
        return [f"{p}/data.parquet" for p in self.partitions if p == table or p.startswith(f"{table}/")]


def _modified(info: dict[str, Any]) -> float:
    value = info.get("mtime", info.get("LastModified", info.get("last_modified", info.get("created"))))
    if value is None:
        return 0.0
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def snapshot_state(loc: Location) -> SnapshotState | None:
    """The snapshot's current manifest (None when no snapshot was ever written)."""
    path = loc.path(catalogue.SNAPSHOT_MANIFEST)
    try:
        info = loc.fs.info(path)
        with loc.fs.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    parts = tuple(sorted(json.loads(data).get("partitions", {})))
    return SnapshotState(manifest=data, modified=_modified(info), partitions=parts)


def _still_current(loc: Location, state: SnapshotState) -> bool:
    """Whether ``state`` is still the snapshot: same manifest, and no listed file written after it."""
    now = snapshot_state(loc)
    if now is None or now.manifest != state.manifest:
        return False
    for part in state.partitions:
        try:
            if _modified(loc.fs.info(loc.path(f"{part}/data.parquet"))) > now.modified:
                return False
        except FileNotFoundError:
            return False
    return True


def _create_empty_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The catalogue's tables, empty: what a table with no snapshot file reads as."""
    catalogue.run(con, "schema")


def open_snapshot(cfg: Config, state: SnapshotState | None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose catalogue tables are views over the files of ``state``."""
    loc = cfg.parquet
    con = duckdb.connect()
    # Views are bound again by every view built on them: read each file's footer once.
    con.execute("SET parquet_metadata_cache = true")
    if not loc.is_local:
        con.register_filesystem(loc.fs)
    _create_empty_tables(con)
    tables = set(TABLES) | {p.split("/", 1)[0] for p in (state.partitions if state else ())}
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


def with_snapshot(cfg: Config, work: Callable[[duckdb.DuckDBPyConnection], T], *, wait: float = 120.0) -> T:
    """Run ``work`` on one consistent snapshot, again if a refresh changed it meanwhile."""
    loc = cfg.parquet
    deadline = time.monotonic() + wait
    delay = 0.1
    attempt = 0
    while True:
        attempt += 1
        state = snapshot_state(loc)
        if state is None:
            log.warning("no Parquet snapshot at %s yet: the catalogue reads as empty", loc.url)
        con = open_snapshot(cfg, state)
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
        if time.monotonic() > deadline:
            raise SnapshotBusyError(f"the Parquet snapshot at {loc.url} kept changing for {wait:.0f}s "
                                    "(a refresh is under way); try again, or use --live")
        log.info("snapshot changed during the query (attempt %d); running it again", attempt)
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


# ---------------------------------------------------------------------------------------------
# views and queries
# ---------------------------------------------------------------------------------------------

def add_views(con: duckdb.DuckDBPyConnection, *, key: bytes | None = None) -> None:
    """The analysts' views, and the de-identified ones when a pseudonym key is given."""
    catalogue.run(con, "views")
    if key is not None:
        _register_pseudonym(con, key)
        catalogue.run(con, "views_deid")


def _interrupt_after(con: duckdb.DuckDBPyConnection, seconds: float | None) -> threading.Timer | None:
    if not seconds:
        return None
    timer = threading.Timer(seconds, con.interrupt)
    timer.daemon = True
    timer.start()
    return timer


def _run(con: duckdb.DuckDBPyConnection, query: str, max_seconds: float | None) -> pa.Table:
    timer = _interrupt_after(con, max_seconds)
    try:
        return con.sql(query).to_arrow_table()
    except duckdb.InterruptException as exc:
        raise QueryError(f"the query ran longer than {max_seconds:g}s and was stopped (--max-seconds)") from exc
    finally:
        if timer is not None:
            timer.cancel()


def referenced_deid_views(query: str) -> list[str]:
    """The de-identified views a query names (a superset: a name inside a string counts too)."""
    return [v for v in DEID_VIEWS if re.search(rf"\b{v}\b", query, re.IGNORECASE)]


def _deidentified(con: duckdb.DuckDBPyConnection, key: bytes, needed: Sequence[str]) -> dict[str, pa.Table]:
    """The de-identified views as Arrow tables: those ``needed`` in full, the others empty.

    Hashing is the cost (about a million pseudonyms per few seconds), so only what the query
    reads is computed; the others keep their columns for DESCRIBE and SHOW TABLES.
    """
    add_views(con, key=key)
    return {name: (con.table(name) if name in needed else con.table(name).limit(0)).to_arrow_table()
            for name in DEID_VIEWS}


def deidentified_connection(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    """A fresh database holding only the de-identified tables, with file access switched off."""
    con = duckdb.connect()
    for name, table in tables.items():
        con.from_arrow(table).create(name)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run_query(cfg: Config, query: str, *, live: bool = False, deidentified: bool = False,
              key: bytes | None = None, timeout: float = 60.0, max_seconds: float | None = 30.0,
              wait: float = 120.0) -> pa.Table:
    """Run an analyst's query; see the module docstring for how it avoids the merge."""
    if deidentified:
        key = require_key(key if key is not None else pseudonym_key())
    if live:
        if not cfg.duckdb.exists():
            raise QueryError(f"the catalogue {cfg.duckdb} does not exist yet (run pacs_ingest first)")
        con = catalogue.connect(cfg.duckdb, read_only=True, timeout=timeout)
        try:
            if deidentified:
                assert key is not None
                timer = _interrupt_after(con, max_seconds)
                try:
                    tables = _deidentified(con, key, referenced_deid_views(query))
                finally:
                    if timer is not None:
                        timer.cancel()
            else:
                add_views(con)
                return _run(con, query, max_seconds)
        finally:
            con.close()
    elif deidentified:
        assert key is not None
        tables = with_snapshot(cfg, lambda c: _deidentified(c, key, referenced_deid_views(query)), wait=wait)
    else:
        def work(c: duckdb.DuckDBPyConnection) -> pa.Table:
            add_views(c)
            return _run(c, query, None)

        return with_snapshot(cfg, work, wait=wait)
    safe = deidentified_connection(tables)
    try:
        return _run(safe, query, max_seconds)
    finally:
        safe.close()


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------

def _cell(value: Any, width: int = 40) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(table: pa.Table, max_rows: int = 100) -> str:
    """An aligned text table of the first ``max_rows`` rows."""
    names = table.column_names
    rows = [[_cell(v) for v in row.values()] for row in table.slice(0, max_rows).to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
               for f in table.schema]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    out = [line(list(names)), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    more = table.num_rows - len(rows)
    out.append(f"({table.num_rows:,} row{'s' if table.num_rows != 1 else ''}"
               + (f", first {len(rows)} shown; use --format csv or --out for all" if more > 0 else "") + ")")
    return "\n".join(out)


def _json_value(value: Any) -> Any:
    """JSON for what json cannot encode: sums (DuckDB HUGEINT/DECIMAL) as numbers, the rest as text."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def write_output(table: pa.Table, fmt: str, out: str | None, *, max_rows: int = 100) -> str | None:
    """Write the result as ``fmt`` to ``out`` (a file path), or return the text for stdout."""
    if fmt == "parquet":
        if not out:
            raise QueryError("--format parquet needs --out FILE")
        pq.write_table(table, out, compression="zstd")
        return None
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        data = buf.getvalue()
    elif fmt == "json":
        data = (json.dumps(table.to_pylist(), indent=1, default=_json_value) + "\n").encode()
    else:
        data = (format_table(table, max_rows=max_rows) + "\n").encode()
    if out:
        with open(out, "wb") as f:
            f.write(data)
        return None
    return data.decode()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pacs query", description="Analysts' SQL over the catalogue (see pacs.query).",
        epilog=f"views: {', '.join(ANALYST_VIEWS)}; de-identified: {', '.join(DEID_VIEWS)}")
    p.add_argument("sql", help="the query (SQL; tables patient, study, series, image, quarantine, ingest_batch)")
    p.add_argument("--config", help="configuration file (default: $PACS_CONFIG or config/pacs.yaml)")
    p.add_argument("--format", choices=("table", "csv", "parquet", "json"), default=None,
                   help="output format (default: table, or from the --out file's extension)")
    p.add_argument("--out", help="write the result to this file")
    p.add_argument("--live", action="store_true",
                   help="read the live catalogue read-only (newer than the snapshot; waits while the merge writes)")
    p.add_argument("--deidentified", action="store_true",
                   help=f"only the de-identified views (needs {KEY_ENV})")
    p.add_argument("--timeout", type=float, default=60.0, help="--live: seconds to wait for the catalogue (60)")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="--live and --deidentified: stop a query running longer than this (30)")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a snapshot refresh to finish (120)")
    p.add_argument("--max-rows", type=int, default=100, help="rows shown by --format table (100)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fmt = args.format
    if fmt is None:
        ext = os.path.splitext(args.out or "")[1].lower().lstrip(".")
        fmt = ext if ext in ("csv", "parquet", "json") else "table"
    try:
        cfg = load_config(args.config)
        table = run_query(cfg, args.sql, live=args.live, deidentified=args.deidentified, timeout=args.timeout,
                          max_seconds=args.max_seconds, wait=args.wait)
        text = write_output(table, fmt, args.out, max_rows=args.max_rows)
    except (QueryError, catalogue.CatalogueBusyError, duckdb.Error, OSError) as exc:
        print(f"pacs query: {exc}", file=sys.stderr)
        return 2
    if text is not None:
        sys.stdout.write(text)
    elif args.out:
        print(f"{table.num_rows:,} rows written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
