"""The departmental tables hold exactly the fields the header reader lists, the merge fills them
from the staged columns alone, and a staged table written before those columns existed still
merges (its files catalogued, without departmental rows)."""

from __future__ import annotations

import duckdb
import pytest
from dept_files import ct_image
from helpers import ROOT
from helpers import query as _q

from pacs import journal
from pacs.catalogue import db, merge
from pacs.catalogue.checks import check
from pacs.catalogue.snapshot_refresh import TABLE_NAMES
from pacs.dicom.acquisition import ACQUISITION_TABLES
from pacs.dicom.columns import DEPARTMENTAL_COLUMNS, HEADER_COLUMNS
from pacs.intake import finalize_batches, merge_batches, process_batch, sweep_files
from pacs.intake.landing import sweep_lock
from pacs.intake.staged import STAGED_SCHEMA

DUCKDB_TYPE = {"number": "DOUBLE", "text": "VARCHAR", "integer": "INTEGER", "text_list": "VARCHAR[]"}
DEPARTMENTAL_TABLES = (*ACQUISITION_TABLES, "dose_report", "dose_event")


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, str]]:
    con = duckdb.connect()
    db.ensure_schema(con)
    out = {t: dict((r[0], r[1]) for r in con.execute(f"DESCRIBE {t}").fetchall()) for t in DEPARTMENTAL_TABLES}
    con.close()
    return out


@pytest.mark.parametrize("table", ACQUISITION_TABLES)
def test_each_acquisition_table_has_exactly_its_fields_and_the_merge_fills_them(table: str, tables) -> None:
    fields = {f.column: DUCKDB_TYPE[f.kind] for f in ACQUISITION_TABLES[table]}
    keys = {"sop_instance_uid", "series_instance_uid", "study_instance_uid", "invalid_values", "created_at",
            "updated_at"}
    assert {c: t for c, t in tables[table].items() if c not in keys} == fields
    merge_sql = (ROOT / "include" / "sql" / "merge_departmental.sql").read_text()
    insert = merge_sql[merge_sql.index(f"INSERT INTO {table} "):]
    insert = insert[: insert.index(";")]
    for column in fields:
        assert f"a.{column}" in insert, f"merge_departmental.sql does not fill {table}.{column}"
        assert f'"{column}": "{fields[column]}"' in merge_sql or f'"{column}": ["VARCHAR"]' in merge_sql, column


def test_the_staged_row_the_catalogue_and_the_snapshot_know_the_departmental_columns_and_tables() -> None:
    assert merge.DEPARTMENTAL_COLUMNS == DEPARTMENTAL_COLUMNS
    for name in DEPARTMENTAL_COLUMNS:
        assert name in HEADER_COLUMNS and name in STAGED_SCHEMA.names
    assert set(DEPARTMENTAL_TABLES) <= set(TABLE_NAMES)


def test_a_staged_table_without_the_departmental_columns_still_merges(cfg, landing) -> None:
    first = ct_image()
    landing.write(first)
    with sweep_lock(cfg.work):
        ids, _ = sweep_files(cfg, run_id="old", now=None, limit=None)
    for b in ids:
        process_batch(cfg, b)
        j = journal.ingest(cfg.work)
        staged = j.read_table(b, journal.STORED)
        j.write_table(b, journal.STORED, staged.drop_columns(list(DEPARTMENTAL_COLUMNS)))  # as written before
    out = merge_batches(cfg, ids, run_id="old")
    finalize_batches(cfg, ids)
    assert out["catalogued"] == 1, out
    assert _q(cfg, "SELECT count(*) FROM image")[0][0] == 1
    assert _q(cfg, "SELECT count(*) FROM ct_acquisition")[0][0] == 0
    assert check(cfg) == []
