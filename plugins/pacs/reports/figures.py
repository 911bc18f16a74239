"""Step 2 of the capacity report: every figure, computed from the extract at the run's date.

:func:`build_report` computes, at ``as_of`` (never the clock): volume per day/week/month
(``include/sql/report_rollup.sql``), growth, utilisation against the configured capacities, the
online forecast (:mod:`pacs.reports.forecast`), its crossing of the high watermark and its
backtest on the archive's own last year (:mod:`pacs.reports.backtest`), what-if of
1–5 years of online retention, and cost per tier. Each section is one function here; the result
is a :class:`CapacityReport` of Arrow tables, a JSON-ready summary, notes and (optionally) charts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from pacs.catalogue import sql
from pacs.config import Config
from pacs.reports import backtest, forecast
from pacs.reports.charts import render_charts
from pacs.reports.extract import EXTRACT_TABLES, Extract
from pacs.reports.settings import CapacitySettings
from pacs.reports.tables import col, dates, table_of
from pacs.reports.units import DAYS_PER_MONTH, GB, fmt_bytes
from pacs.tiers.policy import Policy

WHAT_IF_YEARS = (1, 2, 3, 4, 5)

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
    backtest: backtest.Backtest | None = None


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------

def build_report(cfg: Config, ex: Extract, *, policy: Policy | None = None,
                 settings: CapacitySettings | None = None, charts: bool = True) -> CapacityReport:
    """Every figure of the report at ``ex.as_of``, from the extract only."""
    settings = settings or cfg.capacity
    policy = policy or cfg.policy
    report_date = ex.as_of.date()
    through = report_date - dt.timedelta(days=1)
    first = report_date
    horizon = forecast.horizon_days(first, settings.forecast_months)
    notes: list[str] = []

    rolled = _rollups(ex, through)
    tables = rolled.tables
    if not rolled.totals["images"]:
        notes.append(f"The catalogue holds no image received before {ex.as_of.strftime('%Y-%m-%d %H:%M UTC')}.")
    if ex.later_images:
        notes.append(f"The catalogue also holds {ex.later_images:,} image(s) ({fmt_bytes(ex.later_bytes)}) received "
                     f"at or after {ex.as_of.strftime('%Y-%m-%d %H:%M UTC')}: reports of later dates count them "
                     "(pacs summary counts them already).")

    capacity_online = policy.online_capacity_bytes or settings.online_bytes
    tables["tier_utilisation"] = _tier_utilisation(rolled.tiers, policy, capacity_online, settings.offline_bytes)
    online_now = float(rolled.tiers["online"]["bytes"])
    offline_now = float(rolled.tiers["offline"]["bytes"])
    if not capacity_online:
        notes.append("No online capacity is configured (capacity.online_bytes): utilisation and the "
                     "watermark crossing are not computed.")

    groups = _Groups.of(ex.study_groups, policy)
    fc = _forecast_section(groups, rolled.history, policy, settings, first=first, through=through, horizon=horizon,
                           online_now=online_now, offline_now=offline_now, capacity_online=capacity_online,
                           notes=notes)
    tables["forecast_daily"], tables["forecast_monthly"] = fc.daily, fc.monthly
    tested = _backtest(rolled.history, groups, policy, fc.info)
    tables["what_if_retention"] = _what_if(groups, policy, fc.fit, first, horizon, through, capacity_online,
                                           fc.threshold)
    tables["cost"] = _cost(settings, online_now, offline_now, tables["forecast_daily"], first)
    if settings.price_online is None and settings.price_offline is None:
        notes.append("No prices are configured (capacity.price_per_gb_month): costs are not computed.")

    summary = _summary(ex, policy, tables, rolled.totals, fc.info, notes, through=through)
    report = CapacityReport(as_of=ex.as_of, report_date=report_date, through=through, settings=settings,
                            policy=policy, tables=tables, summary=_jsonable(summary), notes=notes,
                            projection=fc.projection, fit=fc.fit, history=rolled.history, backtest=tested)
    if charts:
        report.charts = render_charts(report)
    return report


def _summary(ex: Extract, policy: Policy, tables: dict[str, pa.Table], totals: dict[str, Any],
             forecast_info: dict[str, Any], notes: list[str], *, through: dt.date) -> dict[str, Any]:
    """``summary.json``: the key figures of every section, the notes and the names of the tables."""
    growth = {r["window"]: r for r in tables["growth"].to_pylist()}
    return {
        "report": "capacity",
        "report_date": ex.as_of.date().isoformat(),
        "as_of": ex.as_of.isoformat(),
        "history_through": through.isoformat(),
        "source": ex.source,
        "date_basis": ex.date_basis,
        "catalogue": {"patients": ex.patients, "studies": totals["studies"], "images": totals["images"],
                      "bytes": totals["bytes"],
                      "received_later": {"images": ex.later_images, "bytes": ex.later_bytes}},
        "tiers": {r["tier"]: {k: r[k] for k in ("studies", "images", "bytes", "capacity_bytes", "utilisation_pct")}
                  for r in tables["tier_utilisation"].to_pylist()},
        "watermarks": {"high": policy.high_watermark, "low": policy.low_watermark},
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


# ---------------------------------------------------------------------------------------------
# volume, growth, tiers: SQL over the extract
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rollups:
    """What the SQL rollups give: the volume and growth tables, tier rows, totals, daily history."""

    tables: dict[str, pa.Table]
    tiers: dict[str, dict[str, Any]]
    totals: dict[str, Any]
    history: tuple[dt.date, np.ndarray] | None


def _rollups(ex: Extract, through: dt.date) -> _Rollups:
    """Run ``report_rollup.sql`` over the extract's tables in a private in-memory DuckDB."""
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
    return _Rollups(tables=tables, tiers={r["tier"]: r for r in tiers.to_pylist()}, totals=totals, history=history)


def _rollup(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any]) -> pa.Table:
    query = sql.named_queries("report_rollup")[name]
    return con.sql(query, params=sql.params_for(query, params)).to_arrow_table()


def _daily_history(con: duckdb.DuckDBPyConnection, through: dt.date) -> tuple[dt.date, np.ndarray] | None:
    t = _rollup(con, "daily_bytes", {"through": through})
    if t.num_rows == 0:
        return None
    days = dates(t, "day")
    first = days.min()
    n = int((np.datetime64(through, "D") - first).astype(int)) + 1
    y = np.zeros(n)
    y[(days - first).astype(int)] = col(t, "bytes")
    return first.astype(dt.date), y


def _tier_utilisation(tier_rows: dict[str, dict[str, Any]], policy: Policy, capacity_online: int | None,
                      capacity_offline: int | None) -> pa.Table:
    """Studies, images and bytes per tier against its capacity (and the online watermarks)."""
    high, low = policy.high_watermark, policy.low_watermark
    cols: dict[str, list[Any]] = {n: [] for n in _TIER_SCHEMA.names}
    for tier in ("online", "offline"):
        r = tier_rows[tier]
        cap = capacity_online if tier == "online" else capacity_offline
        for k in ("tier", "studies", "images", "bytes"):
            cols[k].append(r[k])
        cols["capacity_bytes"].append(cap)
        cols["utilisation_pct"].append(_pct(r["bytes"], cap))
        cols["high_watermark_pct"].append(100 * high if tier == "online" and high else None)
        cols["low_watermark_pct"].append(100 * low if tier == "online" and low else None)
    return table_of(cols, _TIER_SCHEMA)


# ---------------------------------------------------------------------------------------------
# study groups: what the policy decides on
# ---------------------------------------------------------------------------------------------

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
        study_date = dates(t, "study_date")
        received = dates(t, "received_date")
        basis = received if policy.age_basis == "received_at" else np.where(np.isnat(study_date), received, study_date)
        sets: dict[tuple[str, ...], int] = {}
        index = np.array([sets.setdefault(tuple(m or ()), len(sets)) for m in t.column("modalities").to_pylist()],
                         dtype=np.int64)
        return cls(basis=basis.astype("datetime64[D]"), modality_sets=list(sets), modality_index=index,
                   held=col(t, "held").astype(bool), pinned=dates(t, "pinned_until"),
                   bytes=col(t, "bytes").astype(float), online_bytes=col(t, "online_bytes").astype(float),
                   online_only_bytes=col(t, "online_only_bytes").astype(float))

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


# ---------------------------------------------------------------------------------------------
# the online forecast
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _ForecastResult:
    info: dict[str, Any]
    daily: pa.Table
    monthly: pa.Table
    projection: forecast.OnlineProjection | None
    fit: forecast.IngestFit | None
    threshold: float | None


def _threshold(policy: Policy, capacity_online: int | None) -> tuple[float | None, str | None]:
    """The level the forecast is compared with: the high watermark of the capacity, else the capacity."""
    if not capacity_online:
        return None, None
    high = policy.high_watermark
    label = f"high watermark ({100 * high:.0f} %)" if high else "capacity"
    return (high or 1.0) * capacity_online, label


def _forecast_section(groups: _Groups, history: tuple[dt.date, np.ndarray] | None, policy: Policy,
                      settings: CapacitySettings, *, first: dt.date, through: dt.date, horizon: int,
                      online_now: float, offline_now: float, capacity_online: int | None,
                      notes: list[str]) -> _ForecastResult:
    """The online forecast under the policy, its crossing of the high watermark, and offline growth."""
    fit = forecast.fit_ingest(history[1], history[0]) if history is not None else None
    history_days = 0 if history is None else len(history[1]) - forecast.usable_start(history[1])
    threshold, threshold_label = _threshold(policy, capacity_online)
    info: dict[str, Any] = {"months": settings.forecast_months, "first_day": first.isoformat(),
                            "history_days": int(history_days), "threshold_bytes": threshold,
                            "threshold": threshold_label}
    due = groups.due(policy)
    overdue = float(groups.online_bytes[~np.isnat(due) & (due <= np.datetime64(first, "D"))].sum())
    info["overdue_online_bytes"] = overdue
    if overdue > 0:
        notes.append(f"{fmt_bytes(overdue)} online are past their retention and are counted as moving "
                     "offline on the first forecast day (the next lifecycle run).")
    if fit is None:
        info.update(status="not_enough_history", message=(
            f"Not enough history to forecast: {history_days} day(s) of ingest history, at least "
            f"{forecast.MIN_HISTORY_DAYS} (8 weeks) are needed."))
        notes.insert(0, info["message"])
        return _ForecastResult(info, _FORECAST_SCHEMA.empty_table(), _MONTHLY_SCHEMA.empty_table(),
                               None, None, threshold)
    mean, sd = fit.cumulative(first, horizon)
    daily = np.diff(np.concatenate([[0.0], mean]))
    scheduled = forecast.per_day(due, groups.online_bytes, first, horizon)
    shares = groups.shares(policy, through)
    projection = forecast.project_online(online_now, first, horizon, ingest_mean=daily, ingest_sd=sd,
                                         scheduled=scheduled, shares=shares)
    offline = offline_now + np.cumsum(_to_offline(groups, policy, projection, scheduled, due, first))
    daily_table = table_of({
        "date": projection.dates.astype(dt.date), "ingest_bytes": projection.ingest,
        "migrated_bytes": projection.migrated, "online_bytes": projection.mean,
        "online_low_bytes": projection.low, "online_high_bytes": projection.high, "offline_bytes": offline,
    }, _FORECAST_SCHEMA)
    crossing = _crossing(projection, threshold, online_now, first)
    capacity_crossing = (_iso(forecast.first_crossing(projection.mean, capacity_online, first))
                         if capacity_online else None)
    info.update(
        status="ok", model=fit.describe(), growth_pct_per_year=100 * fit.growth_per_year,
        fit_mape_pct=fit.fit_mape_pct, fitted_months=fit.months, band="95 %",
        online_bytes_12_months=projection.at(forecast.add_months(first, 12)),
        online_bytes_end=float(projection.mean[-1]), ingest_bytes_next_12_months=float(daily[:365].sum()),
        threshold_crossing=crossing, capacity_crossing=capacity_crossing,
        retention_shares=[dataclasses.asdict(s) for s in shares],
    )
    info["message"] = _forecast_message(crossing, threshold_label, settings.forecast_months)
    return _ForecastResult(info, daily_table, _monthly(daily_table, settings), projection, fit, threshold)


def _to_offline(groups: _Groups, policy: Policy, projection: forecast.OnlineProjection, scheduled: np.ndarray,
                due: np.ndarray, first: dt.date) -> np.ndarray:
    """Bytes gaining an offline copy each forecast day: with ``offline_copy: immediate`` whatever is
    online only now at the next run, then each day's ingest; else studies as they leave online."""
    if policy.offline_copy == "immediate":
        out = projection.ingest.copy()
        out[0] += float(groups.online_only_bytes.sum())
        return out
    aged = projection.migrated - scheduled
    return forecast.per_day(due, groups.online_only_bytes, first, len(aged)) + aged


def _backtest(history: tuple[dt.date, np.ndarray] | None, groups: _Groups, policy: Policy,
              info: dict[str, Any]) -> backtest.Backtest | None:
    """The model's backtest on the archive's own last 12 complete months (into ``info["backtest"]``)."""
    cut = None if history is None else backtest.cut_day(history[0], len(history[1]))
    tested = None
    if history is not None and cut is not None:
        online = backtest.OnlineGroups(basis=groups.basis, bytes=groups.bytes, due=groups.due(policy),
                                       shares=groups.shares(policy, cut - dt.timedelta(days=1)))
        tested = backtest.run(history[1], history[0], groups=online)
    need = backtest.MIN_FIT_MONTHS + backtest.MONTHS
    info["backtest"] = (tested.figures() if tested is not None else
                        {"status": "not_enough_history",
                         "message": f"No backtest: it needs {need} months of history "
                                    f"({backtest.MIN_FIT_MONTHS} to fit, {backtest.MONTHS} to compare)."})
    return tested


def _crossing(projection: forecast.OnlineProjection, threshold: float | None, online_now: float,
              first: dt.date) -> dict[str, Any]:
    """When the expected usage (and the 95 % band's edges) first reach ``threshold``."""
    crossing: dict[str, Any] = {"date": None, "earliest": None, "latest": None, "already_above": False}
    if threshold is not None:
        crossing["already_above"] = online_now >= threshold
        crossing["date"] = _iso(forecast.first_crossing(projection.mean, threshold, first))
        crossing["earliest"] = _iso(forecast.first_crossing(projection.high, threshold, first))
        crossing["latest"] = _iso(forecast.first_crossing(projection.low, threshold, first))
    return crossing


def _forecast_message(crossing: dict[str, Any], threshold_label: str | None, months: int) -> str:
    """The forecast's one-line conclusion (no threshold label: no capacity is configured)."""
    if threshold_label is None:
        return "Forecast computed; no online capacity is configured to compare with."
    if crossing["already_above"]:
        return f"Online usage is already above the {threshold_label}."
    if crossing["date"]:
        later = crossing["latest"] or f"not within {months} months"
        return (f"Online usage reaches the {threshold_label} on {crossing['date']} "
                f"(95 % band: {crossing['earliest']} to {later}).")
    return f"Online usage stays below the {threshold_label}: not within {months} months."


def _monthly(daily: pa.Table, settings: CapacitySettings) -> pa.Table:
    """Month-end usage, the month's ingest and migrations, and the month's cost per tier."""
    months = dates(daily, "date").astype("datetime64[M]")
    cols: dict[str, list[Any]] = {n: [] for n in _MONTHLY_SCHEMA.names}
    online, offline = col(daily, "online_bytes"), col(daily, "offline_bytes")
    low, high = col(daily, "online_low_bytes"), col(daily, "online_high_bytes")
    ingest, migrated = col(daily, "ingest_bytes"), col(daily, "migrated_bytes")
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
    return table_of(cols, _MONTHLY_SCHEMA)


# ---------------------------------------------------------------------------------------------
# what-if retention, cost
# ---------------------------------------------------------------------------------------------

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
    return table_of(cols, _WHAT_IF_SCHEMA)


def _cost(settings: CapacitySettings, online_now: float, offline_now: float, daily: pa.Table,
          first: dt.date) -> pa.Table:
    """Cost per tier per month now, in 12 and 24 months, and over the forecast."""
    cols: dict[str, list[Any]] = {n: [] for n in _COST_SCHEMA.names}
    have = daily.num_rows > 0
    days = dates(daily, "date") if have else None
    for tier, now in (("online", online_now), ("offline", offline_now)):
        price = settings.price(tier)
        series = col(daily, f"{tier}_bytes") if have else None
        at12 = at24 = None
        if series is not None and days is not None:
            i12 = min(int((np.datetime64(forecast.add_months(first, 12), "D") - days[0]).astype(int)), len(series) - 1)
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
    return table_of(cols, _COST_SCHEMA)


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------

def _pct(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return 100.0 * part / whole


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


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
