"""Forecasts of ingest and of the online tier's usage under the lifecycle policy.

Owns the numbers behind the capacity report's forecast, with numpy only:

- :func:`fit_ingest` models the expected ingest bytes of a day as
  ``weekday factor × month-of-year factor × exp(level + growth × t)``: a log-linear trend (the
  forecast is never negative, and a growing archive's never falls), yearly seasonality (one
  factor per calendar month: holidays make it a step more than a wave) and the weekly rhythm.
  Level, growth and month factors are fitted by quasi-Poisson regression
  (iteratively reweighted least squares, log link) on monthly totals, each month weighted by the
  days of history it holds, so partial months and a small archive's many empty days count for
  what they are; the weekday factors come from the daily history. The terms follow the history's
  length (:func:`model_terms`), month factors only where they beat the noise (quasi-AIC: a small
  archive's months are mostly noise); growth is bounded to :data:`GROWTH_BOUNDS` a year (a bound
  that applies is stated); less than :data:`MIN_HISTORY_DAYS` of history gives ``None``.
  ``bench/forecast_backtest.py`` compares the choices on synthetic histories.
- :class:`IngestFit` predicts daily ingest and the cumulative ingest with its standard error
  (monthly noise from the fit's dispersion, inflated for autocorrelated months, plus the
  uncertainty of the fitted coefficients).
- :func:`add_years` and :func:`due_dates` turn study dates into the days the policy moves them
  offline (retention years, modality overrides, holds, recall pins).
- :func:`project_online` simulates online usage day by day: current online bytes plus
  forecast ingest minus the scheduled migrations of existing studies and of the forecast
  ingest itself once it ages past its retention; :func:`first_crossing` finds the day a level
  is reached.

How well the model forecasts is measured by :mod:`pacs.reports.backtest`. Nothing here reads the
catalogue or the clock: callers pass arrays and the run's date.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

MIN_HISTORY_DAYS = 56
"""Eight weeks: fewer days of history give no forecast ("not enough history to forecast")."""
MAX_GAP_DAYS = 28
GAP_FACTOR = 16
"""A run of days without ingest longer than :data:`MAX_GAP_DAYS` and than ``GAP_FACTOR`` times
the archive's usual pause (the median days between days with ingest), followed by data, starts
the history afresh: stray studies dated long before the archive began are not history."""
WEEKLY_MIN_DAYS = 56
TREND_MIN_DAYS = 182
YEARLY_MIN_DAYS = 730
FIT_WINDOW_DAYS = 4 * 365
"""The fit follows the recent regime: at most the last four years are fitted."""
GROWTH_BOUNDS = (-0.5, 1.0)
"""The fitted growth is kept within −50 % and +100 % a year (a young archive's first months)."""
YEAR_DAYS = 365.25
Z95 = 1.959964


class Terms(NamedTuple):
    """The model's terms: weekday factors, a growth trend, month-of-year factors."""

    weekly: bool
    trend: bool
    yearly: bool


def model_terms(days: int) -> Terms:
    """The terms ``days`` of history support: weekday factors from 8 weeks, growth from half a
    year, month-of-year factors from two years (each month seen twice, apart from the growth)."""
    return Terms(days >= WEEKLY_MIN_DAYS, days >= TREND_MIN_DAYS, days >= YEARLY_MIN_DAYS)


def _design(origin: dt.date, first: dt.date, n: int, trend: bool, yearly: bool) -> np.ndarray:
    """Design matrix of ``n`` consecutive days from ``first``; time is in years since ``origin``."""
    cols = [np.ones(n)]
    if trend:
        cols.append((np.arange(n, dtype=float) + (first - origin).days) / YEAR_DAYS)
    if yearly:
        # February to December against January, by the calendar (not by the history's start).
        month = (np.datetime64(first, "D") + np.arange(n)).astype("datetime64[M]").astype(np.int64) % 12
        cols.extend((month == m).astype(float) for m in range(1, 12))
    return np.column_stack(cols)


def month_index(first: dt.date, n: int) -> np.ndarray:
    """The calendar month of each of ``n`` days from ``first`` (0: ``first``'s month)."""
    months = (np.datetime64(first, "D") + np.arange(n)).astype("datetime64[M]")
    return (months - np.datetime64(first, "M")).astype(np.int64)


def _weekday_factors(y: np.ndarray, first: dt.date) -> np.ndarray:
    """Mean bytes of each weekday (Monday first) over the mean of all seven: factors averaging 1."""
    weekday = (first.weekday() + np.arange(len(y))) % 7
    means = np.bincount(weekday, weights=y, minlength=7) / np.maximum(np.bincount(weekday, minlength=7), 1)
    return means / means.mean() if means.sum() > 0 else np.ones(7)


@dataclass(frozen=True)
class _Glm:
    coef: np.ndarray
    xtwx_inv: np.ndarray
    mu: np.ndarray
    free: int
    """Coefficients fitted (not held)."""


def _quasi_poisson(x: np.ndarray, y: np.ndarray, exposure: np.ndarray, fixed: dict[int, float]) -> _Glm:
    """``E[y] = exposure × exp(x β)`` by iteratively reweighted least squares; columns in ``fixed`` are held."""
    free = [j for j in range(x.shape[1]) if j not in fixed]
    offset = np.log(exposure) + sum((x[:, j] * v for j, v in fixed.items()), np.zeros(len(y)))
    xf = x[:, free]
    b = np.zeros(len(free))
    b[0] = math.log(max(y.sum(), 1e-12) / np.exp(offset).sum())
    for _ in range(100):
        eta = np.clip(xf @ b + offset, -50.0, 50.0)
        mu = np.exp(eta)
        z = eta - offset + (y - mu) / mu
        xtw = xf.T * mu
        new = np.linalg.lstsq(xtw @ xf, xtw @ z, rcond=None)[0]
        done = bool(np.max(np.abs(new - b)) < 1e-10)
        b = new
        if done:
            break
    mu = np.exp(np.clip(xf @ b + offset, -50.0, 50.0))
    coef = np.zeros(x.shape[1])
    coef[free] = b
    for j, v in fixed.items():
        coef[j] = v
    inv = np.zeros((x.shape[1], x.shape[1]))
    inv[np.ix_(free, free)] = np.linalg.pinv((xf.T * mu) @ xf)
    return _Glm(coef, inv, mu, len(free))


@dataclass(frozen=True)
class IngestFit:
    """A fitted model of daily ingest bytes (see the module docstring)."""

    origin: dt.date
    """First day fitted."""
    days: int
    """Days fitted (ending the day before the first forecast day)."""
    history_days: int
    """Days of usable history (the fit uses at most :data:`FIT_WINDOW_DAYS` of them)."""
    terms: Terms
    coef: np.ndarray
    """Level, growth (log, per year) and month factors (log), on bytes per day over ``scale``."""
    cov: np.ndarray
    """Covariance of ``coef`` (dispersion included; zero for a bounded growth)."""
    scale: float
    weekday: np.ndarray
    """Seven weekday factors, Monday first (ones without the weekly term)."""
    dispersion: float
    """Variance of a month's bytes over its expected bytes, in units of ``scale``."""
    rho: float
    """Lag-1 autocorrelation of the monthly residuals (clipped to [0, 0.95])."""
    months: int
    """Monthly totals fitted."""
    fit_mape_pct: float | None
    """Mean absolute percentage error of the fit on the complete months fitted."""
    growth_bounded: bool = False

    @property
    def end(self) -> dt.date:
        """The day after the last fitted day: the first day a forecast starts on by default."""
        return self.origin + dt.timedelta(days=self.days)

    @property
    def weekly(self) -> bool:
        return self.terms.weekly

    @property
    def yearly(self) -> bool:
        return self.terms.yearly

    @property
    def growth_per_year(self) -> float:
        """The trend: yearly relative change of expected ingest (0.08: +8 % a year)."""
        return math.expm1(float(self.coef[1])) if self.terms.trend else 0.0

    def describe(self) -> str:
        """The model in one line: its terms and what it was fitted on."""
        if self.terms.trend:
            bounded = " (bounded)" if self.growth_bounded else ""
            terms = [f"log-linear trend ({100 * self.growth_per_year:+.1f} % a year{bounded})"]
        else:
            terms = ["constant level"]
        if self.yearly:
            terms.append("month-of-year factors")
        if self.weekly:
            terms.append("day of week")
        return f"{', '.join(terms)}; quasi-Poisson fit on {self.months} monthly totals ({self.days:,} days)"

    def design(self, first: dt.date, n: int) -> np.ndarray:
        return _design(self.origin, first, n, self.terms.trend, self.yearly)

    def predict(self, first: dt.date, n: int) -> np.ndarray:
        """Expected ingest bytes of ``n`` days from ``first`` (never negative)."""
        weekday = self.weekday[(first.weekday() + np.arange(n)) % 7]
        return self.scale * weekday * np.exp(np.clip(self.design(first, n) @ self.coef, -50.0, 50.0))

    def cumulative(self, first: dt.date, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Expected cumulative ingest after each of ``n`` days from ``first``, and its standard error.

        The noise of ``h`` future days' bytes ``S`` is ``φ · scale · S · (1+ρ)/(1-ρ)`` (quasi-Poisson
        dispersion, AR(1) months); the coefficients' uncertainty adds ``gᵀ Σ g`` with ``g`` the
        gradient of ``S`` (the sum of each day's bytes times its design row) and ``Σ`` their covariance.
        """
        x = self.design(first, n)
        mu = self.predict(first, n)
        mean = np.cumsum(mu)
        g = np.cumsum(mu[:, None] * x, axis=0)
        param_var = np.einsum("ij,jk,ik->i", g, self.cov, g)
        noise_var = self.dispersion * self.scale * mean * (1 + self.rho) / (1 - self.rho)
        return mean, np.sqrt(noise_var + param_var)


def usable_start(daily: np.ndarray) -> int:
    """Index of the first day of usable history.

    History starts at the first day with ingest, or after the last gap (see :data:`GAP_FACTOR`)
    that data follows: a few stray studies dated years before the archive began must not count
    as history. (Days without ingest at the end do count.)
    """
    y = np.asarray(daily, dtype=float)
    nonzero = np.flatnonzero(y > 0)
    if not len(nonzero):
        return len(y)
    steps = np.diff(nonzero)
    limit = max(MAX_GAP_DAYS, GAP_FACTOR * float(np.median(steps))) if len(steps) else MAX_GAP_DAYS
    gaps = np.flatnonzero(steps > limit)
    return int(nonzero[gaps[-1] + 1]) if len(gaps) else int(nonzero[0])


def fit_ingest(daily: Sequence[float] | np.ndarray, first_day: dt.date, *,
               min_days: int = MIN_HISTORY_DAYS, window_days: int = FIT_WINDOW_DAYS) -> IngestFit | None:
    """Fit daily ingest bytes of consecutive days starting ``first_day`` (the last is complete).

    Returns None when fewer than ``min_days`` days of usable history exist.
    """
    y_all = np.asarray(daily, dtype=float)
    history = len(y_all) - usable_start(y_all)
    if history < min_days:
        return None
    n = min(history, window_days)
    y = y_all[-n:]
    origin = first_day + dt.timedelta(days=len(y_all) - n)
    terms = model_terms(n)
    weekday = _weekday_factors(y, origin) if terms.weekly else np.ones(7)
    m = _Monthly.of(y, origin, terms, weekday)
    glm, terms, bounded = _select(m, terms)
    p = glm.free
    resid = (m.y - glm.mu) / np.sqrt(glm.mu)
    dispersion = float(resid @ resid / max(len(m.y) - p, 1))
    rho = float(np.clip(resid[1:] @ resid[:-1] / (resid @ resid), 0.0, 0.95)) if resid @ resid > 0 else 0.0
    fit_mape = float(np.mean(np.abs(m.y - glm.mu)[m.full] / glm.mu[m.full])) * 100 if m.full.any() else None
    fit = IngestFit(origin=origin, days=n, history_days=history, terms=terms, coef=glm.coef,
                    cov=dispersion * glm.xtwx_inv, scale=m.scale, weekday=weekday, dispersion=dispersion, rho=rho,
                    months=len(m.y), fit_mape_pct=fit_mape, growth_bounded=bounded)
    log.info("ingest fit: %s; dispersion %.3g, monthly fit error %s %%", fit.describe(), dispersion,
             "–" if fit_mape is None else f"{fit_mape:.1f}")
    return fit


@dataclass(frozen=True)
class _Monthly:
    """The history as monthly totals (over ``scale``), their exposure (days, weighted by weekday)
    and design rows (the mean of their days' rows, weighted as their bytes are)."""

    x: np.ndarray
    y: np.ndarray
    exposure: np.ndarray
    scale: float
    full: np.ndarray
    """Months whose every day lies in the history."""

    @classmethod
    def of(cls, y: np.ndarray, origin: dt.date, terms: Terms, weekday: np.ndarray) -> _Monthly:
        n = len(y)
        w = weekday[(origin.weekday() + np.arange(n)) % 7]
        x_day = _design(origin, origin, n, terms.trend, terms.yearly)
        month = month_index(origin, n)
        exposure = np.bincount(month, weights=w)
        totals = np.bincount(month, weights=y)
        keep = exposure > 0
        x = np.column_stack([np.bincount(month, weights=w * x_day[:, j]) for j in range(x_day.shape[1])])[keep]
        scale = float(totals.sum() / exposure.sum())
        full = np.bincount(month) == _month_lengths(origin, int(month[-1]) + 1)
        return cls(x=x / exposure[keep, None], y=totals[keep] / scale, exposure=exposure[keep], scale=scale,
                   full=full[keep])


def _deviance(y: np.ndarray, mu: np.ndarray) -> float:
    """Poisson deviance of ``y`` against ``mu``."""
    ratio = np.where(y > 0, y / mu, 1.0)
    return float(2 * np.sum(y * np.log(ratio) - (y - mu)))


def _select(m: _Monthly, terms: Terms) -> tuple[_Glm, Terms, bool]:
    """Fit; keep month factors only when they earn their 11 parameters (quasi-AIC: the deviance they
    save, over the dispersion, exceeds 22 — a small archive's noisy months do not); bound the growth."""
    glm = _quasi_poisson(m.x, m.y, m.exposure, {})
    if terms.yearly:
        base = 1 + terms.trend
        reduced = _quasi_poisson(m.x[:, :base], m.y, m.exposure, {})
        resid = (m.y - glm.mu) / np.sqrt(glm.mu)
        dispersion = float(resid @ resid / max(len(m.y) - glm.free, 1)) or 1e-12
        if (_deviance(m.y, reduced.mu) - _deviance(m.y, glm.mu)) / dispersion <= 2 * 11:
            terms, glm = terms._replace(yearly=False), reduced
            m = dataclasses.replace(m, x=m.x[:, :base])
    bounded = False
    if terms.trend:
        lo, hi = (math.log1p(b) for b in GROWTH_BOUNDS)
        if not lo <= glm.coef[1] <= hi:
            glm, bounded = _quasi_poisson(m.x, m.y, m.exposure, {1: float(np.clip(glm.coef[1], lo, hi))}), True
    return glm, terms, bounded


def _month_lengths(first: dt.date, months: int) -> np.ndarray:
    """Days in each of ``months`` calendar months from ``first``'s month."""
    start = np.datetime64(first, "M") + np.arange(months + 1)
    return np.diff(start.astype("datetime64[D]")).astype(np.int64)

# ---------------------------------------------------------------------------------------------
# policy dates
# ---------------------------------------------------------------------------------------------

def add_years(days: np.ndarray, years: np.ndarray | float) -> np.ndarray:
    """Dates (``datetime64[D]``) plus fractional years, as :meth:`pacs.tiers.policy.Policy.online_cutoff` counts them.

    Whole years move the calendar date (29 February becomes 28 February); the fraction adds
    ``round(fraction × 365.25)`` days.
    """
    days = np.asarray(days, dtype="datetime64[D]")
    years = np.broadcast_to(np.asarray(years, dtype=float), days.shape)
    whole = np.floor(years).astype(int)
    frac_days = np.round((years - whole) * YEAR_DAYS).astype(int)
    months = days.astype("datetime64[M]")
    day_of_month = (days - months).astype(int)  # 0-based
    shifted = months + 12 * whole
    # Clamp to the month's last day (only 29 February can overflow).
    month_len = ((shifted + 1).astype("datetime64[D]") - shifted.astype("datetime64[D]")).astype(int)
    out = shifted.astype("datetime64[D]") + np.minimum(day_of_month, month_len - 1)
    return out + frac_days


def due_dates(basis: np.ndarray, years: np.ndarray, held: np.ndarray, pinned_until: np.ndarray) -> np.ndarray:
    """The first day each study group is due offline (``NaT`` when held: never).

    A study dated ``b`` with ``y`` years of retention is due on the first day ``L`` with
    ``b < online_cutoff(L, y)``, i.e. the day after ``b + y``; a recall pin keeps it online
    through ``pinned_until``.
    """
    due = add_years(basis, years) + np.timedelta64(1, "D")
    pinned = np.asarray(pinned_until, dtype="datetime64[D]")
    has_pin = ~np.isnat(pinned)
    due = np.where(has_pin & (pinned + np.timedelta64(1, "D") > due), pinned + np.timedelta64(1, "D"), due)
    return np.where(np.asarray(held, dtype=bool), np.datetime64("NaT"), due).astype("datetime64[D]")


def per_day(dates: np.ndarray, weights: np.ndarray, first: dt.date, n: int) -> np.ndarray:
    """Sum of ``weights`` by day over ``n`` days from ``first``; dates before ``first`` count on day 0.

    ``NaT`` and dates after the horizon are dropped.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    idx = (dates - np.datetime64(first, "D")).astype("timedelta64[D]").astype(np.int64)
    keep = ~np.isnat(dates) & (idx < n)
    idx = np.clip(idx[keep], 0, None)
    return np.bincount(idx, weights=np.asarray(weights, dtype=float)[keep], minlength=n)[:n]


# ---------------------------------------------------------------------------------------------
# online usage
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetentionShare:
    """A share of future ingest and how long it stays online (``None``: held, never moves)."""

    fraction: float
    years: float | None


@dataclass(frozen=True)
class OnlineProjection:
    """Online usage day by day over the horizon (index 0 = the first forecast day, end of day)."""

    first: dt.date
    ingest: np.ndarray
    migrated: np.ndarray
    """Bytes leaving the online tier each day (existing studies and aged forecast ingest)."""
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def dates(self) -> np.ndarray:
        return np.datetime64(self.first, "D") + np.arange(len(self.mean))

    def at(self, day: dt.date) -> float:
        i = min(max((day - self.first).days, 0), len(self.mean) - 1)
        return float(self.mean[i])


def project_online(online_now: float, first: dt.date, n: int, *, ingest_mean: np.ndarray,
                   ingest_sd: np.ndarray, scheduled: np.ndarray, shares: Sequence[RetentionShare],
                   z: float = Z95) -> OnlineProjection:
    """Online bytes at the end of each of ``n`` days from ``first``.

    ``ingest_mean`` is the expected ingest of each day and ``ingest_sd`` the standard error of
    the cumulative ingest; ``scheduled`` the bytes of existing studies leaving on each day. Forecast
    ingest leaves after its share's retention. The band is ``± z`` standard errors of cumulative
    ingest (migrations of existing studies are known, not uncertain).
    """
    ingest_mean = np.asarray(ingest_mean, dtype=float)[:n]
    aged = np.zeros(n)
    for share in shares:
        if share.years is None or share.fraction <= 0:
            continue
        lag = round(share.years * YEAR_DAYS) + 1
        if lag < n:
            aged[lag:] += share.fraction * ingest_mean[: n - lag]
    migrated = np.asarray(scheduled, dtype=float)[:n] + aged
    mean = online_now + np.cumsum(ingest_mean) - np.cumsum(migrated)
    band = z * np.asarray(ingest_sd, dtype=float)[:n]
    return OnlineProjection(first=first, ingest=ingest_mean, migrated=migrated, mean=mean,
                            low=np.clip(mean - band, 0.0, None), high=mean + band)


def first_crossing(series: np.ndarray, level: float, first: dt.date) -> dt.date | None:
    """The first day ``series`` reaches ``level`` (None when it never does)."""
    hits = np.flatnonzero(np.asarray(series) >= level)
    if not len(hits):
        return None
    return first + dt.timedelta(days=int(hits[0]))


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later (clamped to the month's last day)."""
    m = day.month - 1 + months
    year, month = day.year + m // 12, m % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def horizon_days(first: dt.date, months: int) -> int:
    """Days from ``first`` to the same day ``months`` later."""
    return (add_months(first, months) - first).days
