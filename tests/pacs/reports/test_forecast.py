"""Tests for :mod:`pacs.reports.forecast`: the fill date on linear growth, seasonality, bands, policy dates."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from pacs.reports import forecast
from pacs.tiers.policy import Policy

FIRST = dt.date(2024, 1, 1)


def true_fill_index(online_now: float, a: float, b: float, start: int, threshold: float) -> int:
    """Day index (0 = first forecast day) when online_now + Σ_{k<=h} (a + b·(start+k)) first reaches threshold."""
    # Cumulative after h+1 days: (h+1)(a + b·start) + b·h(h+1)/2 — solve the quadratic in n = h+1.
    need = threshold - online_now
    c1 = a + b * start - b / 2
    n = (-c1 + math.sqrt(c1 * c1 + 2 * b * need)) / b
    return math.ceil(n) - 1


@pytest.mark.parametrize("noise", [0.0, 0.08])
def test_linear_growth_fill_date_within_5_percent(noise: float) -> None:
    rng = np.random.default_rng(3)
    days = 730
    a, b = 1.0e9, 2.0e6  # 1 GB/day growing by 2 MB/day every day
    t = np.arange(days)
    history = (a + b * t) * (1 + noise * rng.standard_normal(days))
    fit = forecast.fit_ingest(history, FIRST)
    assert fit is not None
    first = FIRST + dt.timedelta(days=days)
    assert fit.end == first
    horizon = forecast.horizon_days(first, 24)
    online_now = 4.0e11
    threshold = 1.5e12
    truth = true_fill_index(online_now, a, b, days, threshold)
    assert 300 < truth < 600  # the case is meaningful: about a year out
    mean, sd = fit.cumulative(first, horizon)
    proj = forecast.project_online(online_now, first, horizon, ingest_mean=np.diff(np.concatenate([[0.0], mean])),
                                   ingest_sd=sd, scheduled=np.zeros(horizon), shares=[])
    crossing = forecast.first_crossing(proj.mean, threshold, first)
    assert crossing is not None
    predicted = (crossing - first).days
    assert abs(predicted - truth) <= 0.05 * truth, (predicted, truth)
    if noise == 0.0:
        assert abs(predicted - truth) <= 1
    # The band brackets the expected crossing.
    early = forecast.first_crossing(proj.high, threshold, first)
    late = forecast.first_crossing(proj.low, threshold, first)
    assert early is not None and early <= crossing
    assert late is None or late >= crossing


def test_not_enough_history() -> None:
    assert forecast.fit_ingest(np.full(55, 1e9), FIRST) is None
    assert forecast.fit_ingest(np.zeros(400), FIRST) is None  # nothing ever ingested
    # Stray old studies do not count as history: 3 years of zeros, then 30 days of data.
    sparse = np.concatenate([[5e8], np.zeros(1095), np.full(30, 1e9)])
    assert forecast.usable_start(sparse) == 1096
    assert forecast.fit_ingest(sparse, FIRST) is None
    # ... but a quiet week inside the history, and quiet days at its end, are history.
    quiet = np.concatenate([np.zeros(5), np.ones(10), np.zeros(7), np.ones(50), np.zeros(40)])
    assert forecast.usable_start(quiet) == 5
    assert forecast.fit_ingest(np.full(56, 1e9), FIRST) is not None


def test_terms_follow_history_length() -> None:
    assert forecast.model_terms(60) == (True, 0)
    assert forecast.model_terms(400) == (True, 1)
    assert forecast.model_terms(800) == (True, forecast.YEARLY_HARMONICS)
    fit = forecast.fit_ingest(np.full(3000, 1e9) + np.arange(3000), FIRST)
    assert fit is not None and fit.days == forecast.FIT_WINDOW_DAYS and fit.history_days == 3000


def _seasonal(dates: list[dt.date]) -> np.ndarray:
    weekend = np.array([d.weekday() >= 5 for d in dates])
    doy = np.array([d.timetuple().tm_yday for d in dates])
    return 1e9 + 3e8 * np.cos(2 * np.pi * (doy - 15) / 365.25) - 7e8 * weekend


def test_weekly_and_yearly_seasonality_are_learned() -> None:
    days = 3 * 365
    y = _seasonal([FIRST + dt.timedelta(days=i) for i in range(days)])
    fit = forecast.fit_ingest(y, FIRST)
    assert fit is not None and fit.weekly and fit.harmonics == 3
    first = FIRST + dt.timedelta(days=days)
    fdates = [first + dt.timedelta(days=i) for i in range(365)]
    pred, truth = fit.predict(first, 365), _seasonal(fdates)
    assert np.max(np.abs(pred - truth)) < 0.01 * truth.mean()
    weekend = np.array([d.weekday() >= 5 for d in fdates])
    assert pred[weekend].mean() < 0.45 * pred[~weekend].mean()
    # Eight weeks give day-of-week effects but no yearly terms.
    short = forecast.fit_ingest(y[:60], FIRST)
    assert short is not None and short.weekly and short.harmonics == 0


def test_band_covers_the_realised_cumulative_ingest() -> None:
    """The 95 % band of cumulative ingest holds the realised outcome in most simulated futures."""
    rng = np.random.default_rng(11)
    days, horizon, hits, trials = 730, 365, 0, 60
    t = np.arange(days + horizon)
    for _ in range(trials):
        y = 1e9 + 1e6 * t + 2e8 * rng.standard_normal(days + horizon)
        fit = forecast.fit_ingest(y[:days], FIRST)
        assert fit is not None
        mean, sd = fit.cumulative(FIRST + dt.timedelta(days=days), horizon)
        realised = np.cumsum(y[days:])
        hits += abs(realised[-1] - mean[-1]) <= forecast.Z95 * sd[-1]
    assert hits >= 0.85 * trials


def test_due_dates_match_policy_cutoff() -> None:
    """A study is due on the first day its date falls before Policy.online_cutoff (brute force)."""
    policy = Policy()
    cases = [(dt.date(2020, 2, 29), 1.0), (dt.date(2021, 3, 15), 3.0), (dt.date(2019, 12, 31), 0.5),
             (dt.date(2016, 2, 29), 4.0), (dt.date(2022, 8, 31), 2.25), (dt.date(2023, 1, 1), 10.0)]
    basis = np.array([c[0] for c in cases], dtype="datetime64[D]")
    years = np.array([c[1] for c in cases])
    due = forecast.due_dates(basis, years, np.zeros(len(cases), bool), np.full(len(cases), np.datetime64("NaT")))
    for (day, y), got in zip(cases, due, strict=True):
        expected = day
        while not day < policy.online_cutoff(expected, y):
            expected += dt.timedelta(days=1)
        assert got.astype(dt.date) == expected, (day, y)


def test_holds_and_pins_in_due_dates() -> None:
    basis = np.array(["2020-01-10"] * 3, dtype="datetime64[D]")
    pins = np.array(["NaT", "NaT", "2024-06-30"], dtype="datetime64[D]")
    due = forecast.due_dates(basis, np.full(3, 3.0), np.array([False, True, False]), pins)
    assert due[0] == np.datetime64("2023-01-11")
    assert np.isnat(due[1])  # held: never
    assert due[2] == np.datetime64("2024-07-01")  # pinned through 30 June


def test_projection_subtracts_scheduled_and_aged_migrations() -> None:
    first, n = dt.date(2026, 1, 1), 800
    ingest = np.full(n, 1e9)
    scheduled = np.zeros(n)
    scheduled[10] = 5e11
    shares = [forecast.RetentionShare(fraction=0.5, years=1.0), forecast.RetentionShare(fraction=0.5, years=None)]
    proj = forecast.project_online(1e12, first, n, ingest_mean=ingest, ingest_sd=np.zeros(n), scheduled=scheduled,
                                   shares=shares)
    assert proj.mean[9] == pytest.approx(1e12 + 10e9)
    assert proj.mean[10] == pytest.approx(1e12 + 11e9 - 5e11)
    lag = round(365.25) + 1
    # After a year, half of each day's ingest (the 1-year share) leaves: net growth halves.
    assert proj.mean[lag + 10] - proj.mean[lag + 9] == pytest.approx(0.5e9)
    assert proj.migrated[lag] == pytest.approx(0.5e9)


def test_calendar_helpers() -> None:
    assert forecast.add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert forecast.horizon_days(dt.date(2026, 1, 1), 24) == 730
    days = np.array(["2024-02-29", "2023-05-31"], dtype="datetime64[D]")
    assert list(forecast.add_years(days, np.array([1.0, 1.0])).astype(str)) == ["2025-02-28", "2024-05-31"]
    assert forecast.first_crossing(np.array([1.0, 2.0, 3.0]), 2.5, FIRST) == FIRST + dt.timedelta(days=2)
    assert forecast.first_crossing(np.array([1.0, 2.0]), 9.0, FIRST) is None
