"""The capacity report: volume, growth, tier utilisation, forecast, retention what-if and cost.

Owns ``pacs_capacity_report`` and ``pacs report``, in three steps that run without a scheduler:

1. :func:`extract` reads small aggregates from the catalogue (``include/sql/report_extract.sql``):
   images and bytes by day × modality × tier × institution, studies by day, and per-tier bytes
   of studies grouped by what the lifecycle policy decides on. It reads the **live catalogue
   read-only** by default: the report needs the tiers as they are now (the lifecycle moves
   studies without refreshing the snapshot), the native file scans several times faster than
   Parquet, and the read is one short scan: in Airflow the task runs in the single-slot pool
   ``pacs_catalogue`` so it never overlaps the merge, and outside Airflow
   :func:`pacs.catalogue.connect` waits while a writer holds the lock. ``capacity.source:
   snapshot`` reads the Parquet snapshot instead (no lock at all; figures as of the last refresh).
2. :func:`build_report` computes every figure from the extract, at the run's date ``as_of``
   (never the clock): volume per day/week/month (``report_rollup.sql``), growth, utilisation
   against the configured capacities, the online forecast (:mod:`pacs.forecast`), what-if of
   1–5 years of online retention, and cost per tier.
3. :func:`write_report` publishes ``capacity/<date>/`` under the reports location — a
   self-contained HTML report (inline SVG charts, print CSS), every table as CSV and Parquet, and
   ``summary.json`` — and the same files under ``capacity/latest/``.

Definitions: a day is a UTC calendar day; a study's bytes count on its study date
(``capacity.date_basis: received_at`` counts them on arrival); ``as_of`` includes images received
before it; the forecast's history ends the day before the report date (the last complete day).
GB and TB are decimal (10⁹, 10¹² bytes), as storage is priced.

Configuration (``capacity:`` in the YAML file)::

    capacity:
      online_bytes: 20 TB              # online tier capacity (the policy's watermarks are fractions of it)
      offline_bytes: 500 TB            # optional: offline tier capacity
      price_per_gb_month: {online: 0.10, offline: 0.0125}
      currency: USD
      forecast_months: 24
      date_basis: study_date           # study_date | received_at
      source: live                     # live | snapshot
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import html
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pacs import catalogue, forecast, sql
from pacs.config import Config, ConfigError, Location, load_config, parse_size
from pacs.policy import Policy, load_policy
from pacs.runs import RunDateError, run_moment

log = logging.getLogger(__name__)

REPORT_FOLDER = "capacity"
LATEST = "latest"
WHAT_IF_YEARS = (1, 2, 3, 4, 5)
GB = 1e9
TB = 1e12
DAYS_PER_MONTH = 365.25 / 12
EXTRACT_TABLES = ("image_cube", "study_cube", "study_groups")
_EXTRACT_STAGING = ("mixed_studies", "series_tier", "partial_offline")  # temp tables the extract's queries read
_SETTING_KEYS = {"online_bytes", "offline_bytes", "price_per_gb_month", "currency", "forecast_months",
                 "date_basis", "source", "memory_limit"}


class ReportError(RuntimeError):
    """The report cannot be produced (the message says why and what to do)."""


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CapacitySettings:
    """The ``capacity:`` section of the configuration."""

    online_bytes: int | None = None
    offline_bytes: int | None = None
    price_online: float | None = None
    price_offline: float | None = None
    currency: str = "USD"
    forecast_months: int = 24
    date_basis: str = "study_date"
    source: str = "live"
    memory_limit: str = "1GB"

    def price(self, tier: str) -> float | None:
        return self.price_online if tier == "online" else self.price_offline

    def capacity(self, tier: str) -> int | None:
        return self.online_bytes if tier == "online" else self.offline_bytes


def _price(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a price per GB-month >= 0, got {value!r}")
    return float(value)


def load_settings(cfg: Config) -> CapacitySettings:
    """Validate ``cfg.capacity_raw``; an unknown or bad key raises :class:`ConfigError` naming it."""
    raw = cfg.capacity_raw or {}
    unknown = set(raw) - _SETTING_KEYS
    if unknown:
        raise ConfigError(f"capacity: unknown key(s) {sorted(unknown)}; allowed: {sorted(_SETTING_KEYS)}")
    prices = raw.get("price_per_gb_month") or {}
    if not isinstance(prices, dict) or set(prices) - {"online", "offline"}:
        raise ConfigError("capacity.price_per_gb_month: expected a mapping with 'online' and/or 'offline' prices")
    months = raw.get("forecast_months", 24)
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
        raise ConfigError(f"capacity.forecast_months: expected an integer from 1 to 120, got {months!r}")
    basis = raw.get("date_basis", "study_date")
    if basis not in ("study_date", "received_at"):
        raise ConfigError(f"capacity.date_basis: expected study_date or received_at, got {basis!r}")
    source = raw.get("source", "live")
    if source not in ("live", "snapshot"):
        raise ConfigError(f"capacity.source: expected live or snapshot, got {source!r}")
    currency = raw.get("currency", "USD")
    if not isinstance(currency, str) or not currency.strip():
        raise ConfigError(f"capacity.currency: expected a currency code, got {currency!r}")
    memory = raw.get("memory_limit", "1GB")
    memory_bytes = parse_size(memory, "capacity.memory_limit")
    return CapacitySettings(
        online_bytes=parse_size(raw.get("online_bytes"), "capacity.online_bytes"),
        offline_bytes=parse_size(raw.get("offline_bytes"), "capacity.offline_bytes"),
        price_online=_price(prices.get("online"), "capacity.price_per_gb_month.online"),
        price_offline=_price(prices.get("offline"), "capacity.price_per_gb_month.offline"),
        currency=currency.strip(),
        forecast_months=months,
        date_basis=basis,
        source=source,
        memory_limit=f"{max(int(memory_bytes or 0) // 2**20, 64)}MiB",
    )


# ---------------------------------------------------------------------------------------------
# dates
# ---------------------------------------------------------------------------------------------

def as_of_for(day: dt.date) -> dt.datetime:
    """The report of ``day`` covers images received before ``day`` 00:00 UTC."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def run_as_of(logical_date: dt.datetime | None, run_after: dt.datetime | None) -> dt.datetime:
    """The moment a DAG run reports at: its logical date, or ``run_after`` for asset-triggered runs."""
    try:
        return run_moment(logical_date, run_after)
    except RunDateError as exc:
        raise ReportError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# 1. extract
# ---------------------------------------------------------------------------------------------

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

    def meta(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "date_basis": self.date_basis, "source": self.source,
                "patients": self.patients, "seconds": self.seconds}

    def save(self, loc: Location, prefix: str) -> str:
        """Write the extract as Parquet files under ``prefix`` (for the next Airflow task)."""
        for name in EXTRACT_TABLES:
            _put(loc, f"{prefix}/{name}.parquet", _parquet_bytes(getattr(self, name)))
        _put(loc, f"{prefix}/extract.json", json.dumps(self.meta()).encode())
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
                   **tables)


def _extract_from(con: duckdb.DuckDBPyConnection, as_of: dt.datetime, basis: str, policy: Policy,
                  source: str) -> Extract:
    started = time.perf_counter()
    params = {"as_of": as_of, "basis": basis, "hold_patients": sorted(policy.hold_patients),
              "hold_studies": sorted(policy.hold_studies)}
    queries = sql.named_queries("report_extract")
    for name in _EXTRACT_STAGING:
        con.execute(queries[name], sql.params_for(queries[name], params))
    out: dict[str, Any] = {}
    for name in (*EXTRACT_TABLES, "patients"):
        query = queries[name]
        out[name] = con.sql(query, params=sql.params_for(query, params)).to_arrow_table()
    seconds = time.perf_counter() - started
    patients = out.pop("patients").column(0)[0].as_py() or 0
    return Extract(as_of=as_of, date_basis=basis, source=source, patients=int(patients), seconds=seconds, **out)


def _empty_catalogue() -> duckdb.DuckDBPyConnection:
    """An in-memory catalogue with the schema and no rows: an archive that has received nothing."""
    con = duckdb.connect()
    for name in catalogue.SCHEMA_FILES:
        catalogue.run(con, name)
    return con


def extract(cfg: Config, as_of: dt.datetime, *, source: str | None = None, policy: Policy | None = None,
            settings: CapacitySettings | None = None, timeout: float = 600.0) -> Extract:
    """Read the report's aggregates from the catalogue (see the module docstring for why live)."""
    settings = settings or load_settings(cfg)
    policy = policy or load_policy(cfg)
    source = source or settings.source
    if source == "snapshot":
        from pacs.query import with_snapshot

        def work(con: duckdb.DuckDBPyConnection) -> Extract:
            con.execute("SET memory_limit = $m", {"m": settings.memory_limit})
            return _extract_from(con, as_of, settings.date_basis, policy, source)

        ex = with_snapshot(cfg, work)
    else:
        if cfg.duckdb.exists():
            con = catalogue.connect(cfg.duckdb, read_only=True, timeout=timeout)
        else:
            log.warning("catalogue %s does not exist yet: reporting an empty archive", cfg.duckdb)
            con = _empty_catalogue()
        try:
            con.execute("SET memory_limit = $m", {"m": settings.memory_limit})
            ex = _extract_from(con, as_of, settings.date_basis, policy, source)
        finally:
            con.close()
    log.info("extract from %s: %d image groups, %d study groups in %.2fs", source, ex.image_cube.num_rows,
             ex.study_groups.num_rows, ex.seconds)
    return ex


# ---------------------------------------------------------------------------------------------
# 2. figures
# ---------------------------------------------------------------------------------------------

@dataclass
class CapacityReport:
    """Every figure of one report: tables (Arrow), the summary, charts and notes."""

    as_of: dt.datetime
    report_date: dt.date
    through: dt.date
    settings: CapacitySettings
    policy: Policy
    tables: dict[str, pa.Table]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    charts: dict[str, str] = field(default_factory=dict)
    projection: forecast.OnlineProjection | None = None
    fit: forecast.IngestFit | None = None
    history: tuple[dt.date, np.ndarray] | None = None


def _rollup(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]) -> pa.Table:
    query = sql.named_queries("report_rollup")[name]
    return con.sql(query, params=sql.params_for(query, params)).to_arrow_table()


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _dates(table: pa.Table, name: str) -> np.ndarray:
    """A date column as ``datetime64[D]`` (nulls as NaT), without pandas."""
    arr = table.column(name).combine_chunks().cast(pa.date32()).cast(pa.int32())
    days = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=float)  # nulls become NaN
    out = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[D]")
    ok = ~np.isnan(days)
    out[ok] = days[ok].astype(np.int64).astype("datetime64[D]")
    return out


@dataclass(frozen=True)
class _Groups:
    """The study groups as arrays, with each group's basis date and retention."""

    basis: np.ndarray
    modality_sets: list[tuple[str, ...]]
    modality_index: np.ndarray
    held: np.ndarray
    pinned: np.ndarray
    bytes: np.ndarray
    online_bytes: np.ndarray
    online_only_bytes: np.ndarray

    @classmethod
    def of(cls, t: pa.Table, policy: Policy) -> _Groups:
        study_date = _dates(t, "study_date")
        received = _dates(t, "received_date")
        basis = received if policy.age_basis == "received_at" else np.where(np.isnat(study_date), received, study_date)
        sets: dict[tuple[str, ...], int] = {}
        index = np.array([sets.setdefault(tuple(m or ()), len(sets)) for m in t.column("modalities").to_pylist()],
                         dtype=np.int64)
        return cls(basis=basis.astype("datetime64[D]"), modality_sets=list(sets), modality_index=index,
                   held=_col(t, "held").astype(bool), pinned=_dates(t, "pinned_until"),
                   bytes=_col(t, "bytes").astype(float), online_bytes=_col(t, "online_bytes").astype(float),
                   online_only_bytes=_col(t, "online_only_bytes").astype(float))

    def years(self, policy: Policy) -> np.ndarray:
        """Each group's years online: the longest rule for its modalities."""
        per_set = np.array([policy.retention_years(list(m)) for m in self.modality_sets] or [0.0])
        return per_set[self.modality_index] if len(self.modality_index) else np.zeros(0)

    def due(self, policy: Policy) -> np.ndarray:
        return forecast.due_dates(self.basis, self.years(policy), self.held, self.pinned)

    def shares(self, policy: Policy, through: dt.date) -> list[forecast.RetentionShare]:
        """How future ingest splits by retention, from the bytes of the last year (or all of it)."""
        recent = self.basis > np.datetime64(through - dt.timedelta(days=365), "D")
        mask = recent if self.bytes[recent].sum() > 0 else np.ones(len(self.bytes), dtype=bool)
        total = self.bytes[mask].sum()
        if total <= 0:
            return []
        years = self.years(policy)
        out: dict[float | None, float] = {}
        for y, held, b in zip(years[mask], self.held[mask], self.bytes[mask], strict=True):
            key = None if held else float(y)
            out[key] = out.get(key, 0.0) + b / total
        return [forecast.RetentionShare(fraction=f, years=y) for y, f in sorted(out.items(), key=lambda kv: str(kv[0]))]


def _daily_history(con: duckdb.DuckDBPyConnection, through: dt.date) -> tuple[dt.date, np.ndarray] | None:
    t = _rollup(con, "daily_bytes", {"through": through})
    if t.num_rows == 0:
        return None
    days = _dates(t, "day")
    first = days.min()
    n = int((np.datetime64(through, "D") - first).astype(int)) + 1
    y = np.zeros(n)
    y[(days - first).astype(int)] = _col(t, "bytes")
    return first.astype(dt.date), y


def _table(columns: dict[str, Any], schema: pa.Schema) -> pa.Table:
    return pa.table({name: pa.array(columns[name], type=schema.field(name).type) for name in schema.names},
                    schema=schema)


_TIER_SCHEMA = pa.schema([("tier", pa.string()), ("studies", pa.int64()), ("images", pa.int64()),
                          ("bytes", pa.int64()), ("capacity_bytes", pa.int64()), ("utilisation_pct", pa.float64()),
                          ("high_watermark_pct", pa.float64()), ("low_watermark_pct", pa.float64())])
_FORECAST_SCHEMA = pa.schema([("date", pa.date32()), ("ingest_bytes", pa.float64()),
                              ("migrated_bytes", pa.float64()), ("online_bytes", pa.float64()),
                              ("online_low_bytes", pa.float64()), ("online_high_bytes", pa.float64()),
                              ("offline_bytes", pa.float64())])
_MONTHLY_SCHEMA = pa.schema([("month", pa.date32()), ("online_bytes_end", pa.float64()),
                             ("online_low_bytes_end", pa.float64()), ("online_high_bytes_end", pa.float64()),
                             ("offline_bytes_end", pa.float64()), ("ingest_bytes", pa.float64()),
                             ("migrated_bytes", pa.float64()), ("online_cost", pa.float64()),
                             ("offline_cost", pa.float64())])
_WHAT_IF_SCHEMA = pa.schema([("online_retention_years", pa.int32()), ("online_bytes_now", pa.float64()),
                             ("utilisation_now_pct", pa.float64()), ("online_bytes_12_months", pa.float64()),
                             ("online_bytes_24_months", pa.float64()), ("utilisation_24_months_pct", pa.float64()),
                             ("high_watermark_crossing", pa.date32())])
_COST_SCHEMA = pa.schema([("tier", pa.string()), ("bytes_now", pa.int64()), ("price_per_gb_month", pa.float64()),
                          ("monthly_cost_now", pa.float64()), ("bytes_12_months", pa.float64()),
                          ("monthly_cost_12_months", pa.float64()), ("bytes_24_months", pa.float64()),
                          ("monthly_cost_24_months", pa.float64()), ("cost_next_24_months", pa.float64()),
                          ("currency", pa.string())])


def _pct(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return 100.0 * part / whole


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def build_report(cfg: Config, ex: Extract, *, policy: Policy | None = None,
                 settings: CapacitySettings | None = None, charts: bool = True) -> CapacityReport:
    """Every figure of the report at ``ex.as_of``, from the extract only."""
    settings = settings or load_settings(cfg)
    policy = policy or load_policy(cfg)
    as_of = ex.as_of
    report_date = as_of.date()
    through = report_date - dt.timedelta(days=1)
    first = report_date
    horizon = forecast.horizon_days(first, settings.forecast_months)
    notes: list[str] = []

    con = duckdb.connect()
    try:
        for name in EXTRACT_TABLES:
            con.register(name, getattr(ex, name))
        tables: dict[str, pa.Table] = {}
        for period in ("day", "week", "month"):
            tables[f"volume_{period}ly" if period != "day" else "volume_daily"] = _rollup(
                con, "volume", {"period": period})
        tables["growth"] = _rollup(con, "growth", {"through": through})
        tiers = _rollup(con, "tiers", {})
        totals = _rollup(con, "totals", {}).to_pylist()[0]
        history = _daily_history(con, through)
    finally:
        con.close()

    if not totals["images"]:
        notes.append(f"The catalogue holds no image received before {as_of.strftime('%Y-%m-%d %H:%M UTC')}.")

    # -- tier utilisation ------------------------------------------------------------------------
    capacity_online = policy.online_capacity_bytes or settings.online_bytes
    tier_rows = {r["tier"]: r for r in tiers.to_pylist()}
    high, low = policy.high_watermark, policy.low_watermark
    tier_cols: dict[str, list[Any]] = {n: [] for n in _TIER_SCHEMA.names}
    for tier in ("online", "offline"):
        r = tier_rows[tier]
        cap = capacity_online if tier == "online" else settings.offline_bytes
        for k in ("tier", "studies", "images", "bytes"):
            tier_cols[k].append(r[k])
        tier_cols["capacity_bytes"].append(cap)
        tier_cols["utilisation_pct"].append(_pct(r["bytes"], cap))
        tier_cols["high_watermark_pct"].append(100 * high if tier == "online" and high else None)
        tier_cols["low_watermark_pct"].append(100 * low if tier == "online" and low else None)
    tables["tier_utilisation"] = _table(tier_cols, _TIER_SCHEMA)
    online_now = float(tier_rows["online"]["bytes"])
    offline_now = float(tier_rows["offline"]["bytes"])
    if not capacity_online:
        notes.append("No online capacity is configured (capacity.online_bytes): utilisation and the "
                     "watermark crossing are not computed.")

    # -- forecast ---------------------------------------------------------------------------------
    groups = _Groups.of(ex.study_groups, policy)
    fc = _forecast_section(groups, history, policy, settings, first=first, through=through, horizon=horizon,
                           online_now=online_now, offline_now=offline_now, capacity_online=capacity_online,
                           notes=notes)
    forecast_info, projection, fit, threshold = fc.info, fc.projection, fc.fit, fc.threshold
    tables["forecast_daily"], tables["forecast_monthly"] = fc.daily, fc.monthly

    # -- what-if retention ------------------------------------------------------------------------
    tables["what_if_retention"] = _what_if(groups, policy, fit, first, horizon, through, capacity_online, threshold)

    # -- cost -------------------------------------------------------------------------------------
    tables["cost"] = _cost(settings, online_now, offline_now, tables["forecast_daily"], first)
    if settings.price_online is None and settings.price_offline is None:
        notes.append("No prices are configured (capacity.price_per_gb_month): costs are not computed.")

    growth = {r["window"]: r for r in tables["growth"].to_pylist()}
    summary = {
        "report": "capacity",
        "report_date": report_date.isoformat(),
        "as_of": as_of.isoformat(),
        "history_through": through.isoformat(),
        "source": ex.source,
        "date_basis": ex.date_basis,
        "catalogue": {"patients": ex.patients, "studies": totals["studies"], "images": totals["images"],
                      "bytes": totals["bytes"]},
        "tiers": {r["tier"]: {k: r[k] for k in ("studies", "images", "bytes", "capacity_bytes", "utilisation_pct")}
                  for r in tables["tier_utilisation"].to_pylist()},
        "watermarks": {"high": high, "low": low},
        "policy": {"online_retention_years": policy.online_retention_years, "age_basis": policy.age_basis,
                   "modality_overrides": dict(policy.modality_overrides),
                   "holds": len(policy.hold_patients) + len(policy.hold_studies)},
        "growth": {k: {f: v[f] for f in ("studies", "images", "bytes", "archive_growth_pct", "bytes_yoy_change_pct")}
                   for k, v in growth.items()},
        "forecast": forecast_info,
        "what_if_retention": tables["what_if_retention"].to_pylist(),
        "cost": {r["tier"]: r for r in tables["cost"].to_pylist()},
        "notes": notes,
        "tables": sorted(tables),
    }
    report = CapacityReport(as_of=as_of, report_date=report_date, through=through, settings=settings,
                            policy=policy, tables=tables, summary=_jsonable(summary), notes=notes,
                            projection=projection, fit=fit, history=history)
    if charts:
        report.charts = render_charts(report)
    return report


@dataclass(frozen=True)
class _ForecastResult:
    info: dict[str, Any]
    daily: pa.Table
    monthly: pa.Table
    projection: forecast.OnlineProjection | None
    fit: forecast.IngestFit | None
    threshold: float | None


def _forecast_section(groups: _Groups, history: tuple[dt.date, np.ndarray] | None, policy: Policy,
                      settings: CapacitySettings, *, first: dt.date, through: dt.date, horizon: int,
                      online_now: float, offline_now: float, capacity_online: int | None,
                      notes: list[str]) -> _ForecastResult:
    """The online forecast under the policy, its crossing of the high watermark, and offline growth."""
    high = policy.high_watermark
    fit = None
    if history is not None:
        fit = forecast.fit_ingest(history[1], history[0])
    history_days = 0 if history is None else len(history[1]) - forecast.usable_start(history[1])
    threshold = None
    threshold_label = None
    if capacity_online:
        threshold = (high or 1.0) * capacity_online
        threshold_label = f"high watermark ({100 * high:.0f} %)" if high else "capacity"
    forecast_info: dict[str, Any] = {"months": settings.forecast_months, "first_day": first.isoformat(),
                                     "history_days": int(history_days), "threshold_bytes": threshold,
                                     "threshold": threshold_label}
    due = groups.due(policy)
    overdue = float(groups.online_bytes[~np.isnat(due) & (due <= np.datetime64(first, "D"))].sum())
    forecast_info["overdue_online_bytes"] = overdue
    if overdue > 0:
        notes.append(f"{_fmt_bytes(overdue)} online are past their retention and are counted as moving "
                     "offline on the first forecast day (the next lifecycle run).")
    if fit is None:
        forecast_info.update(status="not_enough_history", message=(
            f"Not enough history to forecast: {history_days} day(s) of ingest history, at least "
            f"{forecast.MIN_HISTORY_DAYS} (8 weeks) are needed."))
        notes.insert(0, forecast_info["message"])
        return _ForecastResult(forecast_info, _FORECAST_SCHEMA.empty_table(), _MONTHLY_SCHEMA.empty_table(),
                               None, None, threshold)
    mean, sd = fit.cumulative(first, horizon)
    daily = np.diff(np.concatenate([[0.0], mean]))
    scheduled = forecast.per_day(due, groups.online_bytes, first, horizon)
    shares = groups.shares(policy, through)
    projection = forecast.project_online(online_now, first, horizon, ingest_mean=daily, ingest_sd=sd,
                                         scheduled=scheduled, shares=shares)
    aged = projection.migrated - scheduled
    offline = offline_now + np.cumsum(forecast.per_day(due, groups.online_only_bytes, first, horizon) + aged)
    daily_table = _table({
        "date": projection.dates.astype(dt.date), "ingest_bytes": projection.ingest,
        "migrated_bytes": projection.migrated, "online_bytes": projection.mean,
        "online_low_bytes": projection.low, "online_high_bytes": projection.high, "offline_bytes": offline,
    }, _FORECAST_SCHEMA)
    monthly_table = _monthly(daily_table, settings)
    crossing = {"date": None, "earliest": None, "latest": None, "already_above": False}
    if threshold is not None:
        crossing["already_above"] = online_now >= threshold
        crossing["date"] = _iso(forecast.first_crossing(projection.mean, threshold, first))
        crossing["earliest"] = _iso(forecast.first_crossing(projection.high, threshold, first))
        crossing["latest"] = _iso(forecast.first_crossing(projection.low, threshold, first))
    capacity_crossing = (_iso(forecast.first_crossing(projection.mean, capacity_online, first))
                         if capacity_online else None)
    forecast_info.update(
        status="ok", model=fit.describe(), trend_bytes_per_day_per_year=fit.slope_per_year,
        residual_sd_bytes_per_day=fit.sigma, band="95 %",
        online_bytes_12_months=projection.at(forecast.add_months(first, 12)),
        online_bytes_end=float(projection.mean[-1]), ingest_bytes_next_12_months=float(daily[:365].sum()),
        threshold_crossing=crossing, capacity_crossing=capacity_crossing,
        retention_shares=[dataclasses.asdict(s) for s in shares],
    )
    if threshold is not None:
        if crossing["already_above"]:
            forecast_info["message"] = f"Online usage is already above the {threshold_label}."
        elif crossing["date"]:
            later = crossing["latest"] or f"not within {settings.forecast_months} months"
            forecast_info["message"] = (f"Online usage reaches the {threshold_label} on {crossing['date']} "
                                        f"(95 % band: {crossing['earliest']} to {later}).")
        else:
            forecast_info["message"] = (f"Online usage stays below the {threshold_label}: not within "
                                        f"{settings.forecast_months} months.")
    else:
        forecast_info["message"] = "Forecast computed; no online capacity is configured to compare with."
    return _ForecastResult(forecast_info, daily_table, monthly_table, projection, fit, threshold)


def _monthly(daily: pa.Table, settings: CapacitySettings) -> pa.Table:
    """Month-end usage, the month's ingest and migrations, and the month's cost per tier."""
    dates = _dates(daily, "date")
    months = dates.astype("datetime64[M]")
    cols: dict[str, list[Any]] = {n: [] for n in _MONTHLY_SCHEMA.names}
    online, offline = _col(daily, "online_bytes"), _col(daily, "offline_bytes")
    low, high = _col(daily, "online_low_bytes"), _col(daily, "online_high_bytes")
    ingest, migrated = _col(daily, "ingest_bytes"), _col(daily, "migrated_bytes")
    per_day = 1 / GB / DAYS_PER_MONTH
    for m in np.unique(months):
        idx = np.flatnonzero(months == m)
        last = idx[-1]
        cols["month"].append(m.astype("datetime64[D]").astype(dt.date))
        cols["online_bytes_end"].append(online[last])
        cols["online_low_bytes_end"].append(low[last])
        cols["online_high_bytes_end"].append(high[last])
        cols["offline_bytes_end"].append(offline[last])
        cols["ingest_bytes"].append(ingest[idx].sum())
        cols["migrated_bytes"].append(migrated[idx].sum())
        cols["online_cost"].append(None if settings.price_online is None
                                   else online[idx].sum() * per_day * settings.price_online)
        cols["offline_cost"].append(None if settings.price_offline is None
                                    else offline[idx].sum() * per_day * settings.price_offline)
    return _table(cols, _MONTHLY_SCHEMA)


def _what_if(groups: _Groups, policy: Policy, fit: forecast.IngestFit | None, first: dt.date, horizon: int,
             through: dt.date, capacity: int | None, threshold: float | None) -> pa.Table:
    """Online bytes with 1–5 years of online retention (modality overrides, holds and pins still apply).

    "Now" counts every study the rule would keep online at the report date, wherever it is today.
    """
    cols: dict[str, list[Any]] = {n: [] for n in _WHAT_IF_SCHEMA.names}
    today = np.datetime64(first, "D")
    ingest_mean = ingest_sd = None
    if fit is not None:
        mean, ingest_sd = fit.cumulative(first, horizon)
        ingest_mean = np.diff(np.concatenate([[0.0], mean]))
    for years in WHAT_IF_YEARS:
        p = dataclasses.replace(policy, online_retention_years=float(years))
        due = groups.due(p)
        stays = np.isnat(due) | (due > today)
        now = float(groups.bytes[stays].sum())
        cols["online_retention_years"].append(years)
        cols["online_bytes_now"].append(now)
        cols["utilisation_now_pct"].append(_pct(now, capacity))
        if ingest_mean is None:
            for k in ("online_bytes_12_months", "online_bytes_24_months", "utilisation_24_months_pct",
                      "high_watermark_crossing"):
                cols[k].append(None)
            continue
        scheduled = forecast.per_day(np.where(stays, due, np.datetime64("NaT")), groups.bytes, first, horizon)
        proj = forecast.project_online(now, first, horizon, ingest_mean=ingest_mean, ingest_sd=ingest_sd,
                                       scheduled=scheduled, shares=groups.shares(p, through))
        at24 = float(proj.mean[-1])
        cols["online_bytes_12_months"].append(proj.at(forecast.add_months(first, 12)))
        cols["online_bytes_24_months"].append(at24)
        cols["utilisation_24_months_pct"].append(_pct(at24, capacity))
        cols["high_watermark_crossing"].append(
            forecast.first_crossing(proj.mean, threshold, first) if threshold is not None else None)
    return _table(cols, _WHAT_IF_SCHEMA)


def _cost(settings: CapacitySettings, online_now: float, offline_now: float, daily: pa.Table,
          first: dt.date) -> pa.Table:
    cols: dict[str, list[Any]] = {n: [] for n in _COST_SCHEMA.names}
    have = daily.num_rows > 0
    dates = _dates(daily, "date") if have else None
    for tier, now in (("online", online_now), ("offline", offline_now)):
        price = settings.price(tier)
        series = _col(daily, f"{tier}_bytes") if have else None
        at12 = at24 = None
        if series is not None and dates is not None:
            i12 = min(int((np.datetime64(forecast.add_months(first, 12), "D") - dates[0]).astype(int)), len(series) - 1)
            at12, at24 = float(series[i12]), float(series[-1])
        cols["tier"].append(tier)
        cols["bytes_now"].append(int(now))
        cols["price_per_gb_month"].append(price)
        cols["monthly_cost_now"].append(None if price is None else now / GB * price)
        cols["bytes_12_months"].append(at12)
        cols["monthly_cost_12_months"].append(None if price is None or at12 is None else at12 / GB * price)
        cols["bytes_24_months"].append(at24)
        cols["monthly_cost_24_months"].append(None if price is None or at24 is None else at24 / GB * price)
        cols["cost_next_24_months"].append(
            None if price is None or series is None else float(series.sum()) / GB / DAYS_PER_MONTH * price)
        cols["currency"].append(settings.currency)
    return _table(cols, _COST_SCHEMA)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit, size in (("PB", 1e15), ("TB", TB), ("GB", GB), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"


# ---------------------------------------------------------------------------------------------
# charts (matplotlib, object API: no pyplot state, safe in a worker)
# ---------------------------------------------------------------------------------------------

_PALETTE = ("#1f6feb", "#d1495b", "#2a9d8f", "#e9a03b", "#6f42c1", "#8d6e63", "#5c7080", "#00a6d6")


def _figure(width: float = 9.0, height: float = 3.6, left: float = 0.8) -> Any:
    """A figure with fixed margins in inches (a layout engine measures every text many times)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=left / width, right=1 - 0.2 / width, top=1 - 0.4 / height, bottom=0.55 / height)
    return fig


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pacs-capacity"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _style(ax: Any, ylabel: str) -> None:
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", color="#d0d7de", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)


def render_charts(report: CapacityReport) -> dict[str, str]:
    """The report's charts as inline SVG, keyed by name (a chart without data is left out)."""
    charts: dict[str, str] = {}
    if report.history is not None and report.history[1].sum() > 0:
        charts["ingest"] = _chart_ingest(report)
    if report.projection is not None:
        charts["online_forecast"] = _chart_forecast(report)
    charts["tiers"] = _chart_tiers(report)
    monthly = report.tables["volume_monthly"]
    if monthly.num_rows:
        charts["modality_mix"] = _chart_modality_mix(report)
    if report.summary["catalogue"]["bytes"]:
        charts["what_if"] = _chart_what_if(report)
    return charts


def _chart_ingest(report: CapacityReport) -> str:
    assert report.history is not None
    first, y = report.history
    days = np.datetime64(first, "D") + np.arange(len(y))
    keep = days > np.datetime64(report.through - dt.timedelta(days=730), "D")
    fig = _figure()
    ax = fig.subplots()
    ax.fill_between(days[keep], y[keep] / GB, step="mid", color="#9ecae1", linewidth=0, label="bytes per day")
    if keep.sum() >= 28:
        avg = np.convolve(y, np.ones(28) / 28, mode="full")[: len(y)]
        ax.plot(days[keep], avg[keep] / GB, color=_PALETTE[0], linewidth=1.6, label="28-day mean")
    if report.projection is not None:
        ingest = report.projection.ingest
        smooth = np.convolve(ingest, np.ones(28) / 28, mode="valid") if len(ingest) >= 28 else ingest
        ax.plot(report.projection.dates[len(ingest) - len(smooth):], smooth / GB, color=_PALETTE[1], linewidth=1.6,
                linestyle="--", label="forecast (28-day mean)")
    _style(ax, "GB per day")
    ax.set_title("Daily ingest: the last two years and the forecast", loc="left", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _svg(fig)


def _chart_forecast(report: CapacityReport) -> str:
    proj = report.projection
    assert proj is not None
    fig = _figure(height=4.0)
    ax = fig.subplots()
    dates = proj.dates
    ax.fill_between(dates, proj.low / TB, proj.high / TB, color=_PALETTE[0], alpha=0.18, linewidth=0,
                    label="95 % band")
    ax.plot(dates, proj.mean / TB, color=_PALETTE[0], linewidth=2.0, label="online usage (expected)")
    cap = report.tables["tier_utilisation"].to_pylist()[0]["capacity_bytes"]
    pol = report.policy
    if cap:
        ax.axhline(cap / TB, color="#24292f", linewidth=1.2, label=f"capacity {_fmt_bytes(cap)}")
        if pol.high_watermark:
            ax.axhline(pol.high_watermark * cap / TB, color=_PALETTE[1], linewidth=1.2, linestyle="--",
                       label=f"high watermark {100 * pol.high_watermark:.0f} %")
        if pol.low_watermark and pol.low_watermark != pol.high_watermark:
            ax.axhline(pol.low_watermark * cap / TB, color=_PALETTE[3], linewidth=1.0, linestyle=":",
                       label=f"low watermark {100 * pol.low_watermark:.0f} %")
    crossing = (report.summary["forecast"].get("threshold_crossing") or {}).get("date")
    if crossing:
        day = np.datetime64(crossing, "D")
        ax.axvline(day, color=_PALETTE[1], linewidth=0.8)
        ax.annotate(f"crosses {crossing}", (day, proj.at(dt.date.fromisoformat(crossing)) / TB),
                    xytext=(6, -14), textcoords="offset points", fontsize=8, color=_PALETTE[1])
    _style(ax, "TB online")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Online tier: {report.settings.forecast_months}-month forecast under the current policy",
                 loc="left", fontsize=11)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _svg(fig)


def _chart_tiers(report: CapacityReport) -> str:
    rows = report.tables["tier_utilisation"].to_pylist()
    fig = _figure(height=2.2, left=0.9)
    ax = fig.subplots()
    names = [r["tier"] for r in rows]
    used = [r["bytes"] / TB for r in rows]
    caps = [(r["capacity_bytes"] or 0) / TB for r in rows]
    y = np.arange(len(rows))
    ax.barh(y, caps, color="#eaeef2", edgecolor="#8c959f", height=0.6, label="capacity")
    ax.barh(y, used, color=[_PALETTE[0], _PALETTE[2]], height=0.6, label="used")
    for i, r in enumerate(rows):
        pct = r["utilisation_pct"]
        label = _fmt_bytes(r["bytes"]) + (f" ({pct:.1f} %)" if pct is not None else " (no capacity set)")
        ax.annotate(label, (max(used[i], 0), i), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8)
    if report.policy.high_watermark and caps[0]:
        ax.plot([report.policy.high_watermark * caps[0]] * 2, [-0.35, 0.35], color=_PALETTE[1], linewidth=1.5)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("TB")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Tier utilisation", loc="left", fontsize=11)
    return _svg(fig)


def _chart_modality_mix(report: CapacityReport) -> str:
    t = report.tables["volume_monthly"].to_pylist()
    rows = [r for r in t if r["dimension"] == "modality"]
    months = sorted({r["period_start"] for r in rows})[-36:]
    mods = sorted({r["value"] for r in rows})
    index = {m: i for i, m in enumerate(months)}
    data = np.zeros((len(mods), len(months)))
    for r in rows:
        if r["period_start"] in index:
            data[mods.index(r["value"]), index[r["period_start"]]] += r["bytes"] / TB
    fig = _figure()
    ax = fig.subplots()
    # Stacked steps, one polygon per modality (hundreds of bar patches make slow, heavy SVG).
    x = np.append(np.array(months, dtype="datetime64[M]"), np.datetime64(months[-1], "M") + 1).astype("datetime64[D]")
    bottom = np.zeros(len(months) + 1)
    for i, m in enumerate(mods):
        top = bottom + np.append(data[i], data[i][-1])
        ax.fill_between(x, bottom, top, step="post", color=_PALETTE[i % len(_PALETTE)], linewidth=0, label=m)
        bottom = top
    _style(ax, "TB per month")
    ax.set_title("Bytes per month by modality (last 36 months)", loc="left", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=min(len(mods), 8))
    return _svg(fig)


def _chart_what_if(report: CapacityReport) -> str:
    rows = report.tables["what_if_retention"].to_pylist()
    fig = _figure(height=3.0)
    ax = fig.subplots()
    x = np.arange(len(rows))
    series = [("online_bytes_now", "now"), ("online_bytes_12_months", "in 12 months"),
              ("online_bytes_24_months", "in 24 months")]
    width = 0.26
    for i, (key, label) in enumerate(series):
        vals = [(r[key] or 0) / TB for r in rows]
        ax.bar(x + (i - 1) * width, vals, width=width, color=_PALETTE[i], label=label)
    cap = report.tables["tier_utilisation"].to_pylist()[0]["capacity_bytes"]
    if cap:
        ax.axhline(cap / TB, color="#24292f", linewidth=1.0, label="capacity")
    ax.set_xticks(x, [f"{r['online_retention_years']} y" for r in rows])
    ax.set_xlabel("online retention")
    _style(ax, "TB online")
    ax.set_title("What if: online bytes by years of online retention", loc="left", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _svg(fig)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #24292f; margin: 0 auto; max-width: 1100px; padding: 24px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.meta { color: #57606a; margin-bottom: 16px; }
.notice { border-left: 4px solid #d4a72c; background: #fff8c5; padding: 10px 14px; margin: 12px 0; }
.notice.strong { border-color: #cf222e; background: #ffebe9; font-weight: 600; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 12px; }
.card .k { color: #57606a; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.card .v { font-size: 20px; font-weight: 600; }
figure { margin: 12px 0; } figure svg { width: 100%; height: auto; }
table { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #d0d7de; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f8fa; }
.files a { margin-right: 10px; } .small { font-size: 12px; color: #57606a; }
@media print {
  @page { size: A4; margin: 14mm; }
  body { max-width: none; padding: 0; font-size: 11px; }
  section, figure, table, .cards { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .files { display: none; }
  a { color: inherit; text-decoration: none; }
}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _money(value: Any, currency: str) -> str:
    return "–" if value is None else f"{value:,.2f} {_esc(currency)}"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _card(key: str, value: str) -> str:
    return f'<div class="card"><div class="k">{_esc(key)}</div><div class="v">{value}</div></div>'


def render_html(report: CapacityReport, files: Sequence[str] = ()) -> str:
    """The self-contained HTML report (inline CSS and SVG; no external URL)."""
    s = report.summary
    fc = s["forecast"]
    cur = report.settings.currency
    tiers = {r["tier"]: r for r in report.tables["tier_utilisation"].to_pylist()}
    online = tiers["online"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>PACS capacity report {report.report_date.isoformat()}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>PACS capacity report — {report.report_date.isoformat()}</h1>",
        f'<div class="meta">As of {_esc(report.as_of.strftime("%Y-%m-%d %H:%M UTC"))} · history through '
        f"{report.through.isoformat()} · source: {_esc(s['source'])} catalogue · days by "
        f"{_esc(s['date_basis'].replace('_', ' '))}</div>",
    ]
    if fc["status"] != "ok":
        parts.append(f'<div class="notice strong">{_esc(fc["message"])}</div>')
    for note in report.notes:
        if note != fc.get("message"):
            parts.append(f'<div class="notice">{_esc(note)}</div>')
    crossing = (fc.get("threshold_crossing") or {})
    if fc["status"] != "ok":
        cross_text = "no forecast"
    elif crossing.get("already_above"):
        cross_text = "already above"
    elif crossing.get("date"):
        cross_text = _esc(crossing["date"])
    elif fc.get("threshold"):
        cross_text = f"not within {report.settings.forecast_months} months"
    else:
        cross_text = "no capacity set"
    cost_rows = {r["tier"]: r for r in report.tables["cost"].to_pylist()}
    monthly_now = [cost_rows[t]["monthly_cost_now"] for t in ("online", "offline")]
    monthly_total = None if all(v is None for v in monthly_now) else sum(v or 0 for v in monthly_now)
    g365 = s["growth"].get("last_365_days", {})
    parts.append('<section><div class="cards">')
    parts.append(_card("Archive", f"{_fmt_bytes(s['catalogue']['bytes'])}<div class='small'>"
                                  f"{_num(s['catalogue']['studies'])} studies · {_num(s['catalogue']['images'])} images"
                                  "</div>"))
    util = online["utilisation_pct"]
    parts.append(_card("Online tier", f"{_fmt_bytes(online['bytes'])}<div class='small'>"
                                      + (f"{util:.1f} % of {_fmt_bytes(online['capacity_bytes'])}" if util is not None
                                         else "no capacity configured") + "</div>"))
    parts.append(_card(f"Reaches {fc.get('threshold') or 'threshold'}", cross_text))
    parts.append(_card("Ingest, last 365 days", _fmt_bytes(g365.get("bytes")) + "<div class='small'>"
                       + (f"{g365['bytes_yoy_change_pct']:+.1f} % year over year"
                          if g365.get("bytes_yoy_change_pct") is not None else "no year-earlier data") + "</div>"))
    parts.append(_card("Storage cost per month", _money(monthly_total, cur)))
    parts.append("</div></section>")

    # tier utilisation
    parts.append("<section><h2>Tier utilisation</h2>")
    if "tiers" in report.charts:
        parts.append(f"<figure>{report.charts['tiers']}</figure>")
    parts.append(_html_table(
        ["Tier", "Studies", "Images", "Bytes", "Capacity", "Utilisation", "High / low watermark"],
        [[_esc(r["tier"]), _num(r["studies"]), _num(r["images"]), _fmt_bytes(r["bytes"]),
          _fmt_bytes(r["capacity_bytes"]) if r["capacity_bytes"] else "not set",
          f"{r['utilisation_pct']:.1f} %" if r["utilisation_pct"] is not None else "–",
          (f"{r['high_watermark_pct']:.0f} % / {r['low_watermark_pct']:.0f} %"
           if r["high_watermark_pct"] is not None else "–")]
         for r in report.tables["tier_utilisation"].to_pylist()]))
    parts.append('<p class="small">Bytes held: every image with a copy in the tier (a study being migrated '
                 "counts in both).</p></section>")

    # forecast
    parts.append(f"<section><h2>Online forecast ({report.settings.forecast_months} months)</h2>")
    parts.append(f"<p><strong>{_esc(fc['message'])}</strong></p>")
    if fc["status"] == "ok":
        parts.append(f"<figure>{report.charts.get('online_forecast', '')}</figure>")
        parts.append(f'<p class="small">Model: daily ingest by least squares — {_esc(fc["model"])}; '
                     f"trend {_fmt_bytes(fc['trend_bytes_per_day_per_year'])}/day per year; residual sd "
                     f"{_fmt_bytes(fc['residual_sd_bytes_per_day'])}/day. Online usage = today's online bytes + "
                     "forecast ingest − studies the policy moves offline as they pass their retention (holds and "
                     "recall pins stay). The band is 95 % of the cumulative ingest's uncertainty. Once usage passes "
                     "the high watermark the lifecycle moves studies offline before their retention (down "
                     "to the low watermark): the crossing date is when the configured retention stops "
                     "fitting.</p>")
        rows = report.tables["forecast_monthly"].to_pylist()
        pick = [r for i, r in enumerate(rows) if i % 3 == 2 or i == len(rows) - 1]
        parts.append(_html_table(
            ["Month", "Online (expected)", "95 % band", "Offline", "Ingest in month", "Moved offline in month"],
            [[_esc(r["month"].strftime("%Y-%m")), _fmt_bytes(r["online_bytes_end"]),
              f"{_fmt_bytes(r['online_low_bytes_end'])} – {_fmt_bytes(r['online_high_bytes_end'])}",
              _fmt_bytes(r["offline_bytes_end"]), _fmt_bytes(r["ingest_bytes"]), _fmt_bytes(r["migrated_bytes"])]
             for r in pick]))
    if "ingest" in report.charts:
        parts.append(f"<figure>{report.charts['ingest']}</figure>")
    parts.append("</section>")

    # what-if
    parts.append("<section><h2>What if: years of online retention</h2>")
    if "what_if" in report.charts:
        parts.append(f"<figure>{report.charts['what_if']}</figure>")
    parts.append(_html_table(
        ["Online retention", "Online now", "Utilisation now", "In 12 months", "In 24 months",
         "Utilisation in 24 months", "Reaches threshold"],
        [[f"{r['online_retention_years']} years", _fmt_bytes(r["online_bytes_now"]),
          f"{r['utilisation_now_pct']:.1f} %" if r["utilisation_now_pct"] is not None else "–",
          _fmt_bytes(r["online_bytes_12_months"]), _fmt_bytes(r["online_bytes_24_months"]),
          f"{r['utilisation_24_months_pct']:.1f} %" if r["utilisation_24_months_pct"] is not None else "–",
          _crossing_text(r["high_watermark_crossing"], report.report_date)]
         for r in report.tables["what_if_retention"].to_pylist()]))
    overrides = ", ".join(f"{m} {y:g} y" for m, y in sorted(report.policy.modality_overrides.items()))
    parts.append('<p class="small">Every study the rule would keep online at the report date, wherever it is '
                 "today; modality overrides" + (f" ({_esc(overrides)})" if overrides else "")
                 + ", holds and recall pins still apply.</p></section>")

    # growth
    parts.append("<section><h2>Growth</h2>")
    parts.append(_html_table(
        ["Window", "From", "To", "Studies", "Images", "Bytes", "Per day", "Archive growth",
         "Bytes vs a year earlier", "Studies vs a year earlier"],
        [[_esc(r["window"].replace("_", " ")), _esc(r["start_date"]), _esc(r["end_date"]), _num(r["studies"]),
          _num(r["images"]), _fmt_bytes(r["bytes"]), _fmt_bytes(r["bytes_per_day"]),
          f"{r['archive_growth_pct']:+.2f} %" if r["archive_growth_pct"] is not None else "–",
          f"{r['bytes_yoy_change_pct']:+.1f} %" if r["bytes_yoy_change_pct"] is not None else "–",
          f"{r['studies_yoy_change_pct']:+.1f} %" if r["studies_yoy_change_pct"] is not None else "–"]
         for r in report.tables["growth"].to_pylist()]))
    parts.append("</section>")

    # volume
    parts.append("<section><h2>Volume</h2>")
    if "modality_mix" in report.charts:
        parts.append(f"<figure>{report.charts['modality_mix']}</figure>")
    parts.append(_volume_tables(report))
    parts.append("</section>")

    # cost
    parts.append("<section><h2>Cost per tier</h2>")
    parts.append(_html_table(
        ["Tier", "Bytes now", "Price per GB-month", "Per month now", "In 12 months", "Per month in 12 months",
         "In 24 months", "Per month in 24 months", f"Next {report.settings.forecast_months} months"],
        [[_esc(r["tier"]), _fmt_bytes(r["bytes_now"]),
          _money(r["price_per_gb_month"], cur), _money(r["monthly_cost_now"], cur),
          _fmt_bytes(r["bytes_12_months"]), _money(r["monthly_cost_12_months"], cur),
          _fmt_bytes(r["bytes_24_months"]), _money(r["monthly_cost_24_months"], cur),
          _money(r["cost_next_24_months"], cur)]
         for r in report.tables["cost"].to_pylist()]))
    parts.append('<p class="small">The offline tier grows by what the policy moves offline; GB = 10⁹ bytes.</p>'
                 "</section>")

    if files:
        links = " ".join(f'<a href="{_esc(f)}">{_esc(f)}</a>' for f in files)
        parts.append(f'<section class="files"><h2>Tables</h2><p>{links}</p></section>')
    parts.append('<p class="small">Generated by pacs_capacity_report. Counts and bytes only: no patient data.</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _crossing_text(day: dt.date | None, first: dt.date) -> str:
    if day is None:
        return "–"
    return "already above" if day <= first else _esc(day.isoformat())


def _volume_tables(report: CapacityReport) -> str:
    """The last 12 months by modality and by institution (the full tables are in the CSV files)."""
    rows = report.tables["volume_monthly"].to_pylist()
    if not rows:
        return "<p>No images catalogued yet.</p>"
    months = sorted({r["period_start"] for r in rows})[-12:]
    out = []
    for dim, title in (("modality", "Modality"), ("institution", "Institution"), ("tier", "Tier")):
        sel = [r for r in rows if r["dimension"] == dim and r["period_start"] in months]
        values = sorted({r["value"] for r in sel})
        agg = {v: [0, 0, 0] for v in values}
        for r in sel:
            a = agg[r["value"]]
            a[0] += r["studies"]
            a[1] += r["images"]
            a[2] += r["bytes"]
        total_bytes = sum(a[2] for a in agg.values()) or 1
        out.append(f"<h3>By {dim}, {months[0].strftime('%Y-%m')} to {months[-1].strftime('%Y-%m')}</h3>")
        out.append(_html_table(
            [title, "Studies", "Images", "Bytes", "Share of bytes"],
            [[_esc(v), _num(agg[v][0]), _num(agg[v][1]), _fmt_bytes(agg[v][2]),
              f"{100 * agg[v][2] / total_bytes:.1f} %"]
             for v in sorted(values, key=lambda v: -agg[v][2])]))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# 3. outputs
# ---------------------------------------------------------------------------------------------

def _parquet_bytes(table: pa.Table) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue().to_pybytes()


def _csv_bytes(table: pa.Table) -> bytes:
    buf = pa.BufferOutputStream()
    pacsv.write_csv(table, buf)
    return buf.getvalue().to_pybytes()


def _put(loc: Location, key: str, data: bytes) -> str:
    """Write one file under ``loc``; local files are replaced atomically."""
    path = loc.path(key)
    if loc.is_local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        loc.fs.pipe_file(path, data)
    return path


def write_report(report: CapacityReport, loc: Location) -> dict[str, Any]:
    """Publish the report under ``capacity/<date>/`` and ``capacity/latest/``; summary.json last."""
    files: dict[str, bytes] = {}
    for name, table in sorted(report.tables.items()):
        files[f"{name}.csv"] = _csv_bytes(table)
        files[f"{name}.parquet"] = _parquet_bytes(table)
    files["report.html"] = render_html(report, files=sorted(files)).encode()
    summary = dict(report.summary, files=sorted([*files, "summary.json"]))
    files["summary.json"] = json.dumps(summary, indent=1, sort_keys=False).encode()
    folders = [f"{REPORT_FOLDER}/{report.report_date.isoformat()}", f"{REPORT_FOLDER}/{LATEST}"]
    for folder in folders:
        for name in sorted(files, key=lambda n: n == "summary.json"):
            _put(loc, f"{folder}/{name}", files[name])
    log.info("capacity report %s written to %s (%d files)", report.report_date, loc.url, len(files))
    return {"location": loc.url, "folders": folders, "report": loc.path(f"{folders[0]}/report.html"),
            "files": sorted(files), "bytes": sum(len(b) for b in files.values())}


def key_figures(report: CapacityReport) -> dict[str, Any]:
    """Counts for the report Asset's extra (no patient data)."""
    s = report.summary
    fc = s["forecast"]
    return {
        "report_date": s["report_date"],
        "studies": s["catalogue"]["studies"],
        "images": s["catalogue"]["images"],
        "bytes": s["catalogue"]["bytes"],
        "online_bytes": s["tiers"]["online"]["bytes"],
        "online_utilisation_pct": s["tiers"]["online"]["utilisation_pct"],
        "forecast": fc["status"],
        "threshold_crossing": (fc.get("threshold_crossing") or {}).get("date"),
    }


def run_report(cfg: Config, as_of: dt.datetime, *, out: Location | None = None,
               source: str | None = None) -> dict[str, Any]:
    """Extract, compute and publish in this process (CLI, tests, benchmark)."""
    settings = load_settings(cfg)
    policy = load_policy(cfg)
    ex = extract(cfg, as_of, source=source, policy=policy, settings=settings)
    report = build_report(cfg, ex, policy=policy, settings=settings)
    written = write_report(report, out or cfg.reports)
    return {**written, "summary": key_figures(report), "extract_seconds": ex.seconds}


# ---------------------------------------------------------------------------------------------
# CLI: pacs report
# ---------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pacs report", description="The capacity report (see pacs.capacity).")
    p.add_argument("--config", help="configuration file (default: $PACS_CONFIG or config/pacs.yaml)")
    p.add_argument("--date", type=dt.date.fromisoformat,
                   help="report date YYYY-MM-DD: images received before that day 00:00 UTC (default: today)")
    p.add_argument("--out-location", help="where to write (a folder or s3:// URL; default: the reports location)")
    p.add_argument("--source", choices=("live", "snapshot"), help="read the live catalogue or the Parquet snapshot")
    p.add_argument("--json", action="store_true", help="print the key figures as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _out_location(url: str) -> Location:
    """``--out-location``: a folder (relative to the working directory) or an fsspec URL."""
    if "://" in url and not url.startswith("file://"):
        return Location(name="report output", url=url)
    return Location(name="report output", url=os.path.abspath(url.removeprefix("file://")))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    day = args.date or dt.datetime.now(dt.UTC).date()  # a shell user's default; DAG runs pass their date
    out = _out_location(args.out_location) if args.out_location else None
    result = run_report(cfg, as_of_for(day), out=out, source=args.source)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        s = result["summary"]
        print(f"Capacity report {s['report_date']}: {result['report']}")
        print(f"  archive {_fmt_bytes(s['bytes'])} in {s['studies']:,} studies; online {_fmt_bytes(s['online_bytes'])}"
              + (f" ({s['online_utilisation_pct']:.1f} % of capacity)" if s["online_utilisation_pct"] is not None
                 else ""))
        print(f"  forecast: {s['forecast']}" + (f", reaches the threshold on {s['threshold_crossing']}"
                                                if s["threshold_crossing"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
