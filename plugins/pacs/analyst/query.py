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

import decimal
import hmac
import io
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pacs import catalogue
from pacs.catalogue import with_snapshot
from pacs.config import Config
from pacs.errors import QueryError

log = logging.getLogger(__name__)

KEY_ENV = "PACS_PSEUDONYM_KEY"
KEY_VARIABLE = "pacs_pseudonym_key"
MIN_KEY_LENGTH = 16
PSEUDONYM_HEX = 32  # 128 bits of the HMAC: collisions are negligible for any archive
ANALYST_VIEWS = ("study_patient", "daily_volume", "modality_mix", "study_tier_status", "study_tier_bytes")
DEID_VIEWS = ("deid_patient", "deid_study", "deid_series", "deid_daily_volume", "deid_modality_mix")


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
        tables = with_snapshot(cfg.parquet, lambda c: _deidentified(c, key, referenced_deid_views(query)), wait=wait)
    else:
        def work(c: duckdb.DuckDBPyConnection) -> pa.Table:
            add_views(c)
            return _run(c, query, None)

        return with_snapshot(cfg.parquet, work, wait=wait)
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
