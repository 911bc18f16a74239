"""The one column table: the header reader, the staged rows, the catalogue's DDL and the merge
all carry exactly the columns it lists, with its types."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from helpers import ROOT

from pacs.catalogue import db
from pacs.dicom.columns import COLUMNS, HEADER_COLUMNS, HEADER_FIELDS
from pacs.intake.staged import STAGED_SCHEMA

DUCKDB_TYPE = {pa.string(): "VARCHAR", pa.date32(): "DATE", pa.int32(): "INTEGER"}


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, str]]:
    con = duckdb.connect()
    db.ensure_schema(con)
    out = {t: dict((r[0], r[1]) for r in con.execute(f"DESCRIBE {t}").fetchall())
           for t in ("patient", "study", "series", "image")}
    con.close()
    return out


@pytest.mark.parametrize("column", COLUMNS, ids=[c.name for c in COLUMNS])
def test_each_column_is_read_staged_and_catalogued_with_its_type(column, tables) -> None:
    assert HEADER_FIELDS[column.keyword] == (column.name, column.kind)
    assert column.name in HEADER_COLUMNS
    assert STAGED_SCHEMA.field(column.name).type == column.arrow
    assert tables[column.table].get(column.name) == DUCKDB_TYPE[column.arrow], \
        f"{column.table}.{column.name} in include/sql/schema.sql"
    merge = (ROOT / "include" / "sql" / "merge_apply.sql").read_text()
    assert column.name in merge, f"merge_apply.sql does not upsert {column.name}"


def test_the_catalogue_has_no_header_column_the_table_does_not_list(tables) -> None:
    """A header-derived column added to the DDL alone would never be filled."""
    listed = {c.name for c in COLUMNS} | {"transfer_syntax_uid"}
    header_like = {name for t in tables.values() for name in t if name in STAGED_SCHEMA.names}
    assert header_like - listed - {"sha256", "size_bytes", "received_at", "batch_id"} == set()
