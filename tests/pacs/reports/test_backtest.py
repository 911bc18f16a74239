"""Tests for :mod:`pacs.reports.backtest`: where it cuts, what it compares, the seasonal-naive yardstick.

Expected figures are computed here by brute force over calendar months and the policy's own
cut-off (:meth:`pacs.tiers.policy.Policy.online_cutoff`), independently of the module.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pacs.reports import backtest, forecast
from pacs.tiers.policy import Policy

FIRST = dt.date(2020, 1, 1)
DAYS = (dt.date(2026, 1, 1) - FIRST).days
MONTHS = np.array([1.1, 1.08, 1.05, 1.0, 1.0, 0.95, 0.85, 0.75, 1.0, 1.05, 1.08, 0.95])
WEEKDAYS = np.array([1.2, 1.2, 1.2, 1.2, 1.2, 0.3, 0.2])


def _days(first: dt.date, n: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(n)]


def _history(noise: float = 0.0, seed: int = 1) -> np.ndarray:
    """Six years of daily bytes growing 8 % a year, with month and weekday factors."""
    rng = np.random.default_rng(seed)
    days = _days(FIRST, DAYS)
    month = np.array([d.month for d in days]) - 1
    weekday = np.array([d.weekday() for d in days])
    y = 5e9 * 1.08 ** (np.arange(DAYS) / 365.25) * MONTHS[month] * WEEKDAYS[weekday]
    return y * np.exp(noise * rng.standard_normal(DAYS))


def _by_month(y: np.ndarray, first: dt.date) -> dict[tuple[int, int], float]:
    out: dict[tuple[int, int], float] = {}
    for d, v in zip(_days(first, len(y)), y, strict=True):
        out[(d.year, d.month)] = out.get((d.year, d.month), 0.0) + float(v)
    return out


def _groups(y: np.ndarray, years: float = 3.0) -> backtest.OnlineGroups:
    basis = np.datetime64(FIRST, "D") + np.arange(len(y))
    due = forecast.due_dates(basis, np.full(len(y), years), np.zeros(len(y), bool),
                             np.full(len(y), np.datetime64("NaT"), dtype="datetime64[D]"))
    return backtest.OnlineGroups(basis=basis, bytes=y, due=due,
                                 shares=[forecast.RetentionShare(fraction=1.0, years=years)])


def test_the_cut_is_the_start_of_the_last_twelve_complete_months_after_two_years() -> None:
    assert backtest.cut_day(FIRST, DAYS) == dt.date(2025, 1, 1)
    # History ending on 30 December: December is incomplete, so the twelve months end in November.
    assert backtest.cut_day(FIRST, DAYS - 2) == dt.date(2024, 12, 1)
    three_years = (dt.date(2023, 1, 1) - FIRST).days
    assert backtest.cut_day(FIRST, three_years) == dt.date(2022, 1, 1)
    assert backtest.cut_day(FIRST, three_years - 1) is None  # 35 complete months
    assert backtest.run(_history()[:three_years - 1], FIRST) is None


def test_a_noise_free_history_is_forecast_almost_exactly_and_naive_is_same_month_last_year_plus_trend() -> None:
    y = _history()
    bt = backtest.run(y, FIRST, groups=_groups(y))
    assert bt is not None and bt.cut == dt.date(2025, 1, 1)
    months = _by_month(y, FIRST)
    actual = [months[(2025, m)] for m in range(1, 13)]
    change = sum(months[(2024, m)] for m in range(1, 13)) / sum(months[(2023, m)] for m in range(1, 13))
    naive = [months[(2024, m)] * change for m in range(1, 13)]
    assert bt.ingest == pytest.approx(actual, rel=1e-9)
    assert bt.ingest_naive == pytest.approx(naive, rel=1e-9)
    naive_error = 100 * float(np.mean([abs(n - a) / a for n, a in zip(naive, actual, strict=True)]))
    assert bt.naive_ingest_mape_pct == pytest.approx(naive_error)
    assert bt.ingest_mape_pct is not None and bt.ingest_mape_pct < 0.5
    assert bt.ingest_mape_pct < bt.naive_ingest_mape_pct
    assert bt.online_mape_pct is not None and bt.online_mape_pct < 0.5
    figures = bt.figures()
    assert figures["status"] == "ok" and figures["first_day"] == "2025-01-01" and figures["months"] == 12


def test_online_bytes_are_what_the_policy_keeps_online_at_each_month_end() -> None:
    y = _history()
    bt = backtest.run(y, FIRST, groups=_groups(y))
    assert bt is not None and bt.online is not None
    policy = Policy()
    days = _days(FIRST, DAYS)
    for month_start, got in zip(bt.months.astype(dt.date), bt.online, strict=True):
        end = forecast.add_months(month_start, 1) - dt.timedelta(days=1)
        cutoff = policy.online_cutoff(end, 3.0)
        expected = sum(float(v) for d, v in zip(days, y, strict=True) if cutoff <= d <= end)
        assert got == pytest.approx(expected, rel=1e-9), month_start


def test_a_noisy_hospital_is_forecast_within_ten_percent_and_better_than_seasonal_naive() -> None:
    y = _history(noise=0.25, seed=7)
    bt = backtest.run(y, FIRST, groups=_groups(y))
    assert bt is not None
    assert bt.ingest_mape_pct is not None and bt.naive_ingest_mape_pct is not None
    assert bt.ingest_mape_pct < 10 and bt.ingest_mape_pct < bt.naive_ingest_mape_pct
    assert bt.online_mape_pct is not None and bt.online_mape_pct < 10


def test_mape_skips_months_without_data() -> None:
    assert backtest.mape_pct(np.array([100.0, 0.0, 50.0]), np.array([110.0, 5.0, 40.0])) == pytest.approx(15.0)
    assert backtest.mape_pct(np.zeros(3), np.ones(3)) is None
