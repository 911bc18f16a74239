"""How well the ingest model would have forecast an archive's last year: the backtest.

:func:`run` cuts a daily ingest history at the start of its last ``months`` complete calendar
months, fits :func:`pacs.reports.forecast.fit_ingest` on the history before the cut, forecasts
those months and compares them with what happened, as mean absolute percentage errors (MAPE):

- **monthly ingest bytes**, and
- **the online tier's bytes at each month's end** (when the study groups are given): what the
  policy keeps online (every study dated up to that day and not yet due offline) against the
  forecast's projection from the cut — the online bytes then, plus forecast ingest, minus the
  studies then online as they come due, minus forecast ingest as it ages
  (:func:`pacs.reports.forecast.project_online`, as the report projects).

The same comparison runs for the **seasonal-naive** forecast, the yardstick a model must beat:
each month as the same month a year earlier, times the year-over-year change of the last year
before the cut ("same month last year plus trend"). ``bench/forecast_backtest.py`` runs the
backtest on synthetic histories; the report runs it on the archive's own history when at least
:data:`MIN_FIT_MONTHS` months of it lie before the cut. Nothing here reads the catalogue or the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pacs.reports import forecast

MIN_FIT_MONTHS = 24
"""Two years before the cut: seasonal-naive needs both, the model's yearly terms need them."""
MONTHS = 12


@dataclass(frozen=True)
class OnlineGroups:
    """Study groups as the policy sees them: basis date, bytes, first day due offline (NaT: never),
    and how future ingest splits by retention."""

    basis: np.ndarray
    bytes: np.ndarray
    due: np.ndarray
    shares: Sequence[forecast.RetentionShare]


@dataclass(frozen=True)
class Backtest:
    """Monthly actual and forecast figures of the held-out months, and their errors."""

    cut: dt.date
    """The first forecast day (the first day of the held-out months)."""
    model: str
    months: np.ndarray
    """First day of each held-out month (``datetime64[D]``)."""
    ingest: np.ndarray
    ingest_model: np.ndarray
    ingest_naive: np.ndarray
    online: np.ndarray | None = None
    online_model: np.ndarray | None = None
    online_naive: np.ndarray | None = None

    @property
    def ingest_mape_pct(self) -> float | None:
        return mape_pct(self.ingest, self.ingest_model)

    @property
    def naive_ingest_mape_pct(self) -> float | None:
        return mape_pct(self.ingest, self.ingest_naive)

    @property
    def online_mape_pct(self) -> float | None:
        return None if self.online is None or self.online_model is None else mape_pct(self.online, self.online_model)

    @property
    def naive_online_mape_pct(self) -> float | None:
        return None if self.online is None or self.online_naive is None else mape_pct(self.online, self.online_naive)

    def figures(self) -> dict[str, object]:
        """The errors and what they were measured on, for ``summary.json``."""
        return {"status": "ok", "first_day": self.cut.isoformat(), "months": len(self.months), "model": self.model,
                "ingest_mape_pct": self.ingest_mape_pct, "naive_ingest_mape_pct": self.naive_ingest_mape_pct,
                "online_mape_pct": self.online_mape_pct, "naive_online_mape_pct": self.naive_online_mape_pct}


def mape_pct(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """Mean absolute percentage error over the months with an actual value above zero."""
    a, p = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    ok = a > 0
    return float(np.mean(np.abs(p[ok] - a[ok]) / a[ok]) * 100) if ok.any() else None


def cut_day(first_day: dt.date, days: int, months: int = MONTHS) -> dt.date | None:
    """The first day of the last ``months`` complete calendar months of ``days`` days of history
    from ``first_day``, or None when fewer than :data:`MIN_FIT_MONTHS` months lie before it."""
    end = first_day + dt.timedelta(days=days)  # the day after the last day of history
    cut = forecast.add_months(end.replace(day=1), -months)
    return cut if forecast.add_months(cut, -MIN_FIT_MONTHS) >= first_day else None


def seasonal_naive(before: np.ndarray, months: int = MONTHS) -> np.ndarray:
    """Each of the next ``months`` months as the same month a year earlier, times the change of the
    last 12 months over the 12 before (``before``: monthly totals, at least 24, the last complete)."""
    last, previous = before[-12:], before[-24:-12]
    change = last.sum() / previous.sum() if previous.sum() > 0 else 1.0
    return np.array([last[k % 12] for k in range(months)]) * change


def online_at(g: OnlineGroups, days: np.ndarray) -> np.ndarray:
    """Bytes the policy keeps online at the end of each of ``days``: dated up to it, not yet due."""
    out = np.zeros(len(days))
    for i, day in enumerate(np.asarray(days, dtype="datetime64[D]")):
        stays = np.isnat(g.due) | (g.due > day)
        out[i] = g.bytes[(g.basis <= day) & stays].sum()
    return out


def _projected(g: OnlineGroups, cut: dt.date, ingest: np.ndarray) -> np.ndarray:
    """Online bytes at the end of each day from ``cut`` as the report projects them with ``ingest``."""
    n = len(ingest)
    day0 = np.datetime64(cut, "D")
    online = (g.basis < day0) & (np.isnat(g.due) | (g.due >= day0))
    scheduled = forecast.per_day(np.where(online, g.due, np.datetime64("NaT")), g.bytes, cut, n)
    return forecast.project_online(float(g.bytes[online].sum()), cut, n, ingest_mean=ingest,
                                   ingest_sd=np.zeros(n), scheduled=scheduled, shares=g.shares).mean


def run(daily: Sequence[float] | np.ndarray, first_day: dt.date, *, months: int = MONTHS,
        groups: OnlineGroups | None = None, window_days: int = forecast.FIT_WINDOW_DAYS) -> Backtest | None:
    """Backtest the ingest model on the last ``months`` complete months of ``daily`` (bytes of
    consecutive days from ``first_day``); None when the history is too short (:func:`cut_day`)."""
    y = np.asarray(daily, dtype=float)
    start = forecast.usable_start(y)
    cut = cut_day(first_day + dt.timedelta(days=start), len(y) - start, months)
    if cut is None:
        return None
    k = (cut - first_day).days
    fit = forecast.fit_ingest(y[:k], first_day, window_days=window_days)
    if fit is None:
        return None
    n = (forecast.add_months(cut, months) - cut).days
    index = forecast.month_index(cut, n)
    model_daily = fit.predict(cut, n)
    two_years = (cut - forecast.add_months(cut, -24)).days
    before = np.bincount(forecast.month_index(cut - dt.timedelta(days=two_years), two_years),
                         weights=y[k - two_years:k])
    naive = seasonal_naive(before, months)
    lengths = np.bincount(index)
    naive_daily = (naive / lengths)[index]
    starts = np.datetime64(cut, "M") + np.arange(months)
    result = Backtest(cut=cut, model=fit.describe(), months=starts.astype("datetime64[D]"),
                      ingest=np.bincount(index, weights=y[k:k + n]),
                      ingest_model=np.bincount(index, weights=model_daily), ingest_naive=naive)
    if groups is None:
        return result
    ends = np.cumsum(lengths) - 1
    return Backtest(**{**result.__dict__,
                       "online": online_at(groups, np.datetime64(cut, "D") + ends),
                       "online_model": _projected(groups, cut, model_daily)[ends],
                       "online_naive": _projected(groups, cut, naive_daily)[ends]})
