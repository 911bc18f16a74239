"""Analysts' SQL over the catalogue: ``pacs query "SQL"``.

Owns how analysts read the catalogue without ever blocking or breaking the ingest merge; the
views are :mod:`pacs.analyst.views` and :mod:`pacs.analyst.deid`.

**Reads never touch the merge's file.** By default a query runs in a throw-away in-memory DuckDB
whose tables ``patient``, ``study``, ``series``, ``image``, ``quarantine`` and ``ingest_batch``
are views over the Parquet snapshot (``catalogue.parquet``), so it takes no lock on the live
catalogue: the merge runs whatever the analysts do. Every catalogue writer refreshes the
snapshot by writing new files (never rewriting one) and ``_snapshot.json`` last, so a query
reads exactly the files that manifest lists and is then checked: if the manifest changed (or a
file it was reading was removed by a later refresh), the query is run again on the new snapshot.
A result is therefore always one refresh's consistent state. ``--wait`` bounds how long a query
waits for the snapshot to stop changing.

``--live`` reads the live file instead, read-only, for figures newer than the last refresh: it
waits (with :func:`pacs.catalogue.connect`'s backoff) while the merge holds the file, and the
query is interrupted after ``--max-seconds`` (default 30 s) so it can delay a merge by at most
that long, far below the merge's own 300 s lock timeout.

**De-identified** (``--deidentified``): only the de-identified views, materialised into a fresh
database that holds nothing else (see :mod:`pacs.analyst.deid`). Without a key the command
refuses; there is no default key.
"""

from __future__ import annotations

import decimal
import io
import json
import logging
import threading
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pacs import catalogue
from pacs.analyst import deid
from pacs.analyst.views import add_views
from pacs.catalogue import with_snapshot
from pacs.config import Config
from pacs.errors import QueryError

log = logging.getLogger(__name__)

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


def run_query(cfg: Config, query: str, *, live: bool = False, deidentified: bool = False,
              key: bytes | None = None, timeout: float = 60.0, max_seconds: float | None = 30.0,
              wait: float = 120.0) -> pa.Table:
    """Run an analyst's query; see the module docstring for how it avoids the merge."""
    if deidentified:
        key = deid.require_key(key if key is not None else deid.pseudonym_key())
    if live:
        if not cfg.duckdb.exists():
            raise QueryError(f"the catalogue {cfg.duckdb} does not exist yet (run pacs_ingest first)")
        con = catalogue.connect(cfg.duckdb, read_only=True, timeout=timeout)
        try:
            if deidentified:
                assert key is not None
                timer = _interrupt_after(con, max_seconds)
                try:
                    add_views(con, key=key)
                    tables = deid.deidentified(con, deid.referenced_deid_views(query))
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
        needed = deid.referenced_deid_views(query)
        def materialise(c: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
            add_views(c, key=key)
            return deid.deidentified(c, needed)

        tables = with_snapshot(cfg.parquet, materialise, wait=wait)
    else:
        def work(c: duckdb.DuckDBPyConnection) -> pa.Table:
            add_views(c)
            return _run(c, query, None)

        return with_snapshot(cfg.parquet, work, wait=wait)
    safe = deid.deidentified_connection(tables)
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
