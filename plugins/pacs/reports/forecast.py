"""Forecasts of daily ingest and of the online tier's usage under the lifecycle policy.

Owns the numbers behind the capacity report's forecast, with numpy only:

- :func:`fit_ingest` fits daily ingest bytes by least squares: a linear trend, day-of-week
  effects from 8 weeks of history, and yearly Fourier terms (one harmonic from one year of
  history, three from two years). Less than :data:`MIN_HISTORY_DAYS` gives ``None``: not enough
  history to forecast.
- :class:`IngestFit` predicts daily ingest and the cumulative ingest with its standard error
  (noise of each future day, inflated for autocorrelated residuals, plus the uncertainty of the
  fitted coefficients).
- :func:`add_years` and :func:`due_dates` turn study dates into the days the policy moves them
  offline (retention years, modality overrides, holds, recall pins).
- :func:`project_online` simulates online usage day by day: current online bytes plus
  forecast ingest minus the scheduled migrations of existing studies and of the forecast
  ingest itself once it ages past its retention; :func:`first_crossing` finds the day a level
  is reached.

Nothing here reads the catalogue or the clock: callers pass arrays and the run's date.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MIN_HISTORY_DAYS = 56
"""Eight weeks: fewer days of history give no forecast ("not enough history to forecast")."""
MAX_GAP_DAYS = 28
"""A longer run of days without ingest, followed by data, starts the history afresh."""
WEEKLY_MIN_DAYS = 56
YEARLY_ONE_HARMONIC_DAYS = 365
YEARLY_FULL_DAYS = 730
YEARLY_HARMONICS = 3
FIT_WINDOW_DAYS = 3 * 365
"""The trend follows the recent regime: at most the last three years are fitted."""
YEAR_DAYS = 365.25
Z95 = 1.959964


def model_terms(days: int) -> tuple[bool, int]:
    """(day-of-week effects?, yearly harmonics) that ``days`` of history support."""
    weekly = days >= WEEKLY_MIN_DAYS
    if days >= YEARLY_FULL_DAYS:
        return weekly, YEARLY_HARMONICS
    if days >= YEARLY_ONE_HARMONIC_DAYS:
        return weekly, 1
    return weekly, 0


def _design(origin: dt.date, first: dt.date, n: int, weekly: bool, harmonics: int) -> np.ndarray:
    """Design matrix of ``n`` consecutive days from ``first``; time is in years since ``origin``."""
    offset = (first - origin).days
    t = (np.arange(n, dtype=float) + offset) / YEAR_DAYS
    cols = [np.ones(n), t]
    if weekly:
        dow = (first.weekday() + np.arange(n)) % 7
        cols.extend((dow == k).astype(float) for k in range(1, 7))
    if harmonics:
        # Anchored to the calendar (day of the proleptic Gregorian ordinal), not to the history.
        angle = 2 * math.pi * (first.toordinal() + np.arange(n, dtype=float)) / YEAR_DAYS
        for k in range(1, harmonics + 1):
            cols.extend((np.sin(k * angle), np.cos(k * angle)))
    return np.column_stack(cols)


@dataclass(frozen=True)
class IngestFit:
    """A least-squares model of daily ingest bytes."""

    origin: dt.date
    """First day fitted."""
    days: int
    """Days fitted (ending the day before the first forecast day)."""
    history_days: int
    """Days of usable history (the fit uses at most :data:`FIT_WINDOW_DAYS` of them)."""
    weekly: bool
    harmonics: int
    coef: np.ndarray
    xtx_inv: np.ndarray
    sigma: float
    """Residual standard deviation of one day's ingest (bytes)."""
    rho: float
    """Lag-1 autocorrelation of the residuals (clipped to [0, 0.95])."""

    @property
    def end(self) -> dt.date:
        """The day after the last fitted day: the first day a forecast starts on by default."""
        return self.origin + dt.timedelta(days=self.days)

    @property
    def slope_per_year(self) -> float:
        """Trend: change of daily ingest bytes per year."""
        return float(self.coef[1])

    def describe(self) -> str:
        terms = ["linear trend"]
        if self.weekly:
            terms.append("day of week")
        if self.harmonics:
            terms.append(f"yearly seasonality ({self.harmonics} harmonic{'s' if self.harmonics > 1 else ''})")
        return f"{', '.join(terms)}; fitted on {self.days} days"

    def design(self, first: dt.date, n: int) -> np.ndarray:
        return _design(self.origin, first, n, self.weekly, self.harmonics)

    def predict(self, first: dt.date, n: int) -> np.ndarray:
        """Expected ingest bytes of ``n`` days from ``first`` (never negative)."""
        return np.clip(self.design(first, n) @ self.coef, 0.0, None)

    def cumulative(self, first: dt.date, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Expected cumulative ingest after each of ``n`` days from ``first``, and its standard error.

        The variance of a sum of ``h`` future days is ``h σ² (1+ρ)/(1-ρ)`` (AR(1) residuals) plus
        ``σ² sᵀ(XᵀX)⁻¹s`` with ``s`` the sum of their design rows (coefficient uncertainty).
        """
        x = self.design(first, n)
        mean = np.cumsum(np.clip(x @ self.coef, 0.0, None))
        s = np.cumsum(x, axis=0)
        param_var = np.einsum("ij,jk,ik->i", s, self.xtx_inv, s) * self.sigma**2
        h = np.arange(1, n + 1, dtype=float)
        noise_var = h * self.sigma**2 * (1 + self.rho) / (1 - self.rho)
        return mean, np.sqrt(noise_var + param_var)


def usable_start(daily: np.ndarray) -> int:
    """Index of the first day of usable history.

    History starts at the first day with ingest, or after the last gap of :data:`MAX_GAP_DAYS`
    or more days without ingest that data follows: a few stray studies dated years before the
    archive began must not count as history. (Days without ingest at the end do count.)
    """
    y = np.asarray(daily, dtype=float)
    nonzero = np.flatnonzero(y > 0)
    if not len(nonzero):
        return len(y)
    gaps = np.flatnonzero(np.diff(nonzero) > MAX_GAP_DAYS)
    return int(nonzero[gaps[-1] + 1]) if len(gaps) else int(nonzero[0])


def fit_ingest(daily: Sequence[float] | np.ndarray, first_day: dt.date, *,
               min_days: int = MIN_HISTORY_DAYS, window_days: int = FIT_WINDOW_DAYS) -> IngestFit | None:
    """Fit daily ingest bytes of consecutive days starting ``first_day`` (the last is complete).

    Returns None when fewer than ``min_days`` days of usable history exist.
    """
    y_all = np.asarray(daily, dtype=float)
    start = usable_start(y_all)
    history = len(y_all) - start
    if history < min_days:
        return None
    n = min(history, window_days)
    y = y_all[-n:]
    origin = first_day + dt.timedelta(days=len(y_all) - n)
    weekly, harmonics = model_terms(n)
    x = _design(origin, origin, n, weekly, harmonics)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    dof = max(n - x.shape[1], 1)
    sigma = float(np.sqrt(resid @ resid / dof))
    rho = 0.0
    if n > 2 and float(resid @ resid) > 0:
        rho = float(np.clip(resid[1:] @ resid[:-1] / (resid @ resid), 0.0, 0.95))
    xtx_inv = np.linalg.pinv(x.T @ x)
    fit = IngestFit(origin=origin, days=n, history_days=history, weekly=weekly, harmonics=harmonics,
                    coef=coef, xtx_inv=xtx_inv, sigma=sigma, rho=rho)
    log.info("ingest fit: %s; trend %+.3g bytes/day per year, residual sd %.3g bytes/day",
             fit.describe(), fit.slope_per_year, sigma)
    return fit


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
