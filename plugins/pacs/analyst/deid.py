"""De-identification: keyed pseudonyms and the de-identified views analysts may read.

The views of ``include/sql/views_deid.sql`` replace identifiers by a keyed pseudonym
(HMAC-SHA256, key from ``$PACS_PSEUDONYM_KEY``, or the Airflow Variable ``pacs_pseudonym_key``
inside an Airflow task) and are materialised into a fresh database that holds only them: no raw
table, no pseudonym function (so a known patient ID cannot be hashed to find its key), and no
file access (``enable_external_access = false``, configuration locked). Without a key nothing
is read; there is no default key.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from pacs.errors import QueryError

KEY_ENV = "PACS_PSEUDONYM_KEY"
KEY_VARIABLE = "pacs_pseudonym_key"
MIN_KEY_LENGTH = 16
PSEUDONYM_HEX = 32  # 128 bits of the HMAC: collisions are negligible for any archive
DEID_VIEWS = ("deid_patient", "deid_study", "deid_series", "deid_daily_volume", "deid_modality_mix",
              "deid_rejections", "deid_ct_acquisition", "deid_mr_acquisition", "deid_dx_exposure",
              "deid_us_acquisition", "deid_dose_event", "deid_dose_per_study", "deid_ct_dose_by_protocol")


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


def register_pseudonym(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    def fn(kind: pa.Array, value: pa.Array) -> pa.Array:
        out = [None if v is None else pseudonym(key, k, v)
               for k, v in zip(kind.to_pylist(), value.to_pylist(), strict=True)]
        return pa.array(out, type=pa.string())

    con.create_function("pacs_pseudonym", fn, ["VARCHAR", "VARCHAR"], "VARCHAR", type="arrow",
                        null_handling="special", side_effects=False)


def referenced_deid_views(query: str) -> list[str]:
    """The de-identified views a query names (a superset: a name inside a string counts too)."""
    return [v for v in DEID_VIEWS if re.search(rf"\b{v}\b", query, re.IGNORECASE)]


def deidentified(con: duckdb.DuckDBPyConnection, needed: Sequence[str]) -> dict[str, pa.Table]:
    """The de-identified views of ``con`` (made by :func:`pacs.analyst.views.add_views` with the key)
    as Arrow tables: those ``needed`` in full, the others empty.

    Hashing is the cost (about a million pseudonyms per few seconds), so only what the query
    reads is computed; the others keep their columns for DESCRIBE and SHOW TABLES.
    """
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
