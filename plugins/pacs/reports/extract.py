"""Step 1 of the capacity report: the catalogue extract, and the date a report is computed at.

:func:`extract` reads small aggregates from the catalogue (``include/sql/report_extract.sql``):
images and bytes by day × modality × tier × institution, studies by day, and per-tier bytes of
studies grouped by what the lifecycle policy decides on. It reads the **live catalogue
read-only** by default: the report needs the tiers as they are now (the lifecycle moves studies
without refreshing the snapshot), the native file scans several times faster than Parquet, and
the read is one short scan: in Airflow the task runs in the single-slot pool ``pacs_catalogue``
so it never overlaps the merge, and outside Airflow :func:`pacs.catalogue.connect` waits while a
writer holds the lock. ``capacity.source: snapshot`` reads the Parquet snapshot instead (no lock
at all; figures as of the last refresh).

The report of a day covers images received before that day 00:00 UTC (:func:`as_of_for`); a DAG
run reports at its logical date, or at ``run_after`` when an Asset triggered it (:func:`run_as_of`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pacs import catalogue, store
from pacs.catalogue import sql
from pacs.config import Config
from pacs.dagkit import RunDateError, run_moment
from pacs.errors import ReportError
from pacs.reports.settings import CapacitySettings
from pacs.reports.tables import parquet_bytes
from pacs.store import Location
from pacs.tiers.policy import Policy

log = logging.getLogger(__name__)

EXTRACT_TABLES = ("image_cube", "study_cube", "study_groups")
_EXTRACT_STAGING = ("mixed_studies", "series_tier", "partial_offline")  # temp tables the extract's queries read


def as_of_for(day: dt.date) -> dt.datetime:
    """The report of ``day`` covers images received before ``day`` 00:00 UTC."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def run_as_of(logical_date: dt.datetime | None, run_after: dt.datetime | None) -> dt.datetime:
    """The moment a DAG run reports at: its logical date, or ``run_after`` for asset-triggered runs."""
    try:
        return run_moment(logical_date, run_after)
    except RunDateError as exc:
        raise ReportError(str(exc)) from exc


@dataclass
class Extract:
    """What the report reads from the catalogue: small Arrow tables and a few counts."""

    as_of: dt.datetime
    date_basis: str
    source: str
    image_cube: pa.Table
    study_cube: pa.Table
    study_groups: pa.Table
    patients: int
    seconds: float = 0.0
    later_images: int = 0
    """Images catalogued but received at or after ``as_of`` (counted by later reports)."""
    later_bytes: int = 0

    def meta(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "date_basis": self.date_basis, "source": self.source,
                "patients": self.patients, "seconds": self.seconds, "later_images": self.later_images,
                "later_bytes": self.later_bytes}

    def save(self, loc: Location, prefix: str) -> str:
        """Write the extract as Parquet files under ``prefix`` (for the next Airflow task)."""
        for name in EXTRACT_TABLES:
            store.put(loc, loc.path(f"{prefix}/{name}.parquet"), parquet_bytes(getattr(self, name)))
        store.put(loc, loc.path(f"{prefix}/extract.json"), json.dumps(self.meta()).encode())
        return prefix

    @classmethod
    def load(cls, loc: Location, prefix: str) -> Extract:
        with loc.fs.open(loc.path(f"{prefix}/extract.json"), "rb") as f:
            meta = json.load(f)
        tables = {}
        for name in EXTRACT_TABLES:
            with loc.fs.open(loc.path(f"{prefix}/{name}.parquet"), "rb") as f:
                tables[name] = pq.read_table(f)
        return cls(as_of=dt.datetime.fromisoformat(meta["as_of"]), date_basis=meta["date_basis"],
                   source=meta["source"], patients=int(meta["patients"]), seconds=float(meta["seconds"]),
                   later_images=int(meta.get("later_images", 0)), later_bytes=int(meta.get("later_bytes", 0)),
                   **tables)


def _extract_from(con: duckdb.DuckDBPyConnection, as_of: dt.datetime, basis: str, policy: Policy,
                  source: str) -> Extract:
    started = time.perf_counter()
    last_day = (as_of - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    params = {"as_of": as_of, "basis": basis, "last_day": last_day, "hold_patients": sorted(policy.hold_patients),
              "hold_studies": sorted(policy.hold_studies)}
    queries = sql.named_queries("report_extract")
    for name in _EXTRACT_STAGING:
        con.execute(queries[name], sql.params_for(queries[name], params))
    out: dict[str, Any] = {}
    for name in (*EXTRACT_TABLES, "patients", "received_later"):
        query = queries[name]
        out[name] = con.sql(query, params=sql.params_for(query, params)).to_arrow_table()
    seconds = time.perf_counter() - started
    patients = out.pop("patients").column(0)[0].as_py() or 0
    later = out.pop("received_later").to_pylist()[0]
    return Extract(as_of=as_of, date_basis=basis, source=source, patients=int(patients), seconds=seconds,
                   later_images=int(later["images"] or 0), later_bytes=int(later["bytes"] or 0), **out)


def _empty_catalogue() -> duckdb.DuckDBPyConnection:
    """An in-memory catalogue with the schema and no rows: an archive that has received nothing."""
    con = duckdb.connect()
    catalogue.ensure_schema(con)
    return con


def extract(cfg: Config, as_of: dt.datetime, *, source: str | None = None, policy: Policy | None = None,
            settings: CapacitySettings | None = None, timeout: float = 600.0) -> Extract:
    """Read the report's aggregates from the catalogue (see the module docstring for why live)."""
    settings = settings or cfg.capacity
    policy = policy or cfg.policy
    source = source or settings.source

    def work(con: duckdb.DuckDBPyConnection) -> Extract:
        catalogue.set_memory_limit(con, settings.memory_limit)
        return _extract_from(con, as_of, settings.date_basis, policy, source)

    if source == "snapshot":
        ex = catalogue.with_snapshot(cfg.parquet, work)
    else:
        if cfg.duckdb.exists():
            con = catalogue.connect(cfg.duckdb, read_only=True, timeout=timeout)
        else:
            log.warning("catalogue %s does not exist yet: reporting an empty archive", cfg.duckdb)
            con = _empty_catalogue()
        try:
            ex = work(con)
        finally:
            con.close()
    log.info("extract from %s: %d image groups, %d study groups in %.2fs", source, ex.image_cube.num_rows,
             ex.study_groups.num_rows, ex.seconds)
    return ex
