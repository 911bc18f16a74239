"""Arrow helpers of the report: columns as numpy arrays, tables from columns, Parquet and CSV bytes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def col(table: pa.Table, name: str) -> np.ndarray:
    """A column as a numpy array."""
    return table.column(name).to_numpy(zero_copy_only=False)


def dates(table: pa.Table, name: str) -> np.ndarray:
    """A date column as ``datetime64[D]`` (nulls as NaT), without pandas."""
    arr = table.column(name).combine_chunks().cast(pa.date32()).cast(pa.int32())
    days = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=float)  # nulls become NaN
    out = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[D]")
    ok = ~np.isnan(days)
    out[ok] = days[ok].astype(np.int64).astype("datetime64[D]")
    return out


def table_of(columns: dict[str, Any], schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` from one sequence per column."""
    return pa.table({name: pa.array(columns[name], type=schema.field(name).type) for name in schema.names},
                    schema=schema)


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as a zstd-compressed Parquet file."""
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue().to_pybytes()


def csv_bytes(table: pa.Table) -> bytes:
    """``table`` as CSV with a header row."""
    buf = pa.BufferOutputStream()
    pacsv.write_csv(table, buf)
    return buf.getvalue().to_pybytes()
