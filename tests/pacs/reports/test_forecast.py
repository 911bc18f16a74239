"""Tests for :mod:`pacs.reports.forecast`: fill dates of growing archives, seasonality, bands, policy dates."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pacs.reports import forecast
from pacs.tiers.policy import Policy

FIRST = dt.date(2024, 1, 1)


def fill_index(online_now: float, future: np.ndarray, threshold: float) -> int:
    """Day index (0 = first forecast day) when online_now plus the cumulative ``future`` ingest reaches threshold."""
    return int(np.argmax(online_now + np.cumsum(future) >= threshold))


def _growth(kind: str, n: int) -> np.ndarray:
    t = np.arange(n)
    if kind == "compound":  # 15 % a year, compounded (how the synthetic archives grow)
        return 1.0e9 * 1.15 ** (t / 365.25)
    return 1.0e9 * (1 + 0.15 * t / 365.25)  # a steady 15 % of the first year's volume added every year


@pytest.mark.parametrize("kind", ["compound", "linear"])
@pytest.mark.parametrize("noise", [0.0, 0.08])
def test_growth_fill_date_within_5_percent(kind: str, noise: float) -> None:
    rng = np.random.default_rng(3)
    days = 730
    truth = _growth(kind, days + 800)
    history = truth[:days] * (1 + noise * rng.standard_normal(days))
    fit = forecast.fit_ingest(history, FIRST)
    assert fit is not None
    first = FIRST + dt.timedelta(days=days)
    assert fit.end == first
    horizon = forecast.horizon_days(first, 24)
    online_now = 4.0e11
    threshold = online_now + truth[days:days + 450].sum()
    expected = fill_index(online_now, truth[days:], threshold)
    assert 300 < expected < 600  # the case is meaningful: more than a year out
    mean, sd = fit.cumulative(first, horizon)
    proj = forecast.project_online(online_now, first, horizon, ingest_mean=np.diff(np.concatenate([[0.0], mean])),
                                   ingest_sd=sd, scheduled=np.zeros(horizon), shares=[])
    crossing = forecast.first_crossing(proj.mean, threshold, first)
    assert crossing is not None
    predicted = (crossing - first).days
    assert abs(predicted - expected) <= 0.05 * expected, (predicted, expected)
    if noise == 0.0 and kind == "compound":
        assert abs(predicted - expected) <= 1
        assert fit.growth_per_year == pytest.approx(0.15, abs=0.002)
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


def test_a_small_archives_pauses_are_history() -> None:
    """A study every nine days or so, with a six-week pause: all of it is history."""
    rng = np.random.default_rng(4)
    y = (rng.random(1500) < 1 / 9) * rng.lognormal(16, 1, 1500)
    y[700:742] = 0.0
    first = int(np.flatnonzero(y)[0])
    assert forecast.usable_start(y) == first


def test_terms_follow_history_length() -> None:
    assert forecast.model_terms(60) == forecast.Terms(weekly=True, trend=False, yearly=False)
    assert forecast.model_terms(200) == forecast.Terms(weekly=True, trend=True, yearly=False)
    assert forecast.model_terms(800) == forecast.Terms(weekly=True, trend=True, yearly=True)
    fit = forecast.fit_ingest(np.full(3000, 1e9) + np.arange(3000), FIRST)
    assert fit is not None and fit.days == forecast.FIT_WINDOW_DAYS and fit.history_days == 3000


MONTHS = np.array([1.1, 1.08, 1.05, 1.0, 1.0, 0.95, 0.85, 0.75, 1.0, 1.05, 1.08, 0.95])
WEEKDAYS = np.array([1.2, 1.2, 1.2, 1.2, 1.2, 0.3, 0.2])


def _seasonal(dates: list[dt.date], growth: float = 0.06) -> np.ndarray:
    month = np.array([d.month for d in dates]) - 1
    weekday = np.array([d.weekday() for d in dates])
    years = np.array([(d - FIRST).days for d in dates]) / 365.25
    return 1e9 * (1 + growth) ** years * MONTHS[month] * WEEKDAYS[weekday]


def test_weekly_and_yearly_seasonality_are_learned() -> None:
    days = 3 * 365
    y = _seasonal([FIRST + dt.timedelta(days=i) for i in range(days)])
    fit = forecast.fit_ingest(y, FIRST)
    assert fit is not None and fit.weekly and fit.yearly
    first = FIRST + dt.timedelta(days=days)
    fdates = [first + dt.timedelta(days=i) for i in range(365)]
    pred, truth = fit.predict(first, 365), _seasonal(fdates)
    assert np.max(np.abs(pred / truth - 1)) < 0.01
    assert fit.growth_per_year == pytest.approx(0.06, abs=0.001)
    weekend = np.array([d.weekday() >= 5 for d in fdates])
    assert pred[weekend].mean() < 0.45 * pred[~weekend].mean()
    # Eight weeks give day-of-week effects but no trend and no yearly terms.
    short = forecast.fit_ingest(y[:60], FIRST)
    assert short is not None and short.weekly and not short.yearly and not short.terms.trend


def test_month_factors_are_left_out_when_the_months_are_noise() -> None:
    """A small archive without seasonality: twelve month factors would fit its noise, so it gets none."""
    rng = np.random.default_rng(8)
    days = 4 * 365
    y = (rng.random(days) < 0.3) * rng.lognormal(17, 1.2, days)
    fit = forecast.fit_ingest(y, FIRST)
    assert fit is not None and not fit.yearly
    assert "month-of-year" not in fit.describe()


@pytest.mark.parametrize("unlucky_end", [False, True])
def test_the_forecast_of_a_growing_archive_never_goes_negative_or_vanishes(unlucky_end: bool) -> None:
    """The failure a new user met: a noisy growing archive whose fitted linear trend turned down
    reached 0 B a month. The log-linear forecast stays positive; it grows with a growing archive
    and, when the last months happen to be poor, falls at most by the growth bound."""
    rng = np.random.default_rng(2026)
    days = 5 * 365
    t = np.arange(days)
    studies = rng.poisson(0.12 * 1.08 ** (t / 365.25))  # a study every eight days or so, growing 8 % a year
    y = np.array([rng.lognormal(15.5, 1.3, k).sum() for k in studies])
    if unlucky_end:
        y[-150:] *= 0.4
    fit = forecast.fit_ingest(y, FIRST)
    assert fit is not None
    first = FIRST + dt.timedelta(days=days)
    pred = fit.predict(first, 730)
    assert np.all(pred > 0)
    monthly = np.bincount(forecast.month_index(first, 730), weights=pred)[1:-1]  # complete months
    last_year = y[-365:].sum() / 12
    if unlucky_end:
        assert monthly.min() > (1 + forecast.GROWTH_BOUNDS[0]) ** 2 * 0.5 * last_year
    else:
        assert fit.growth_per_year > 0 and pred[365:].sum() > pred[:365].sum()
        assert monthly.min() > 0.5 * last_year
    mean, sd = fit.cumulative(first, 730)
    assert np.all(np.diff(mean) > 0) and np.all(sd > 0)


def test_a_young_archives_growth_is_bounded_and_says_so() -> None:
    days = 240  # four times the volume within eight months: not a rate to extrapolate for two years
    y = 1e9 * 4 ** (np.arange(days) / days)
    fit = forecast.fit_ingest(y, FIRST)
    assert fit is not None and fit.growth_bounded
    assert fit.growth_per_year == pytest.approx(forecast.GROWTH_BOUNDS[1])
    assert "(bounded)" in fit.describe()


def test_band_covers_the_realised_cumulative_ingest() -> None:
    """The 95 % band of cumulative ingest holds the realised outcome in most simulated futures."""
    rng = np.random.default_rng(11)
    days, horizon, hits, trials = 730, 365, 0, 100
    t = np.arange(days + horizon)
    for _ in range(trials):
        y = 1e9 * 1.1 ** (t / 365.25) * (1 + 0.2 * rng.standard_normal(days + horizon))
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
