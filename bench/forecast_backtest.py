"""Benchmark: the capacity report's ingest forecast, backtested on synthetic 6-year histories.

Each history is six years of daily ingest (2020-01-01 to 2025-12-31) of a synthetic hospital:
studies per day drawn from a Poisson law whose rate grows by ``growth`` a year, with the weekly
rhythm (weekends at 30 %), a yearly rhythm (busier winters, a summer-holiday dip, quiet last
week of December: the rhythm of :mod:`pacs.synth`) and a month-to-month operational wobble
(lognormal, 4 %); each study's modality from a realistic mix and its bytes lognormal around the
modality's size. Studies stay online three years (by study date).

:func:`pacs.reports.backtest.run` fits the report's model on the first five years, forecasts the
last twelve months and compares, as mean absolute percentage error (MAPE): monthly ingest bytes,
and the online tier's bytes at each month's end (the forecast projected through the policy from
the cut, as the report projects it, against what the policy kept online). The yardstick is the
seasonal-naive forecast (each month as the same month a year earlier, times the last year's
year-over-year change), projected the same way. Every scenario runs ``--seeds`` histories and
``--window`` variants of the fit window. It prints figures; it asserts nothing.

    .venv/bin/python bench/forecast_backtest.py            # 5 scenarios x 20 histories x 3 windows, ~10 s
    .venv/bin/python bench/forecast_backtest.py --small    # 3 histories each
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from common import code_version, final_json, machine_info, print_table, provenance

from pacs.reports import backtest, forecast

FIRST_DAY = dt.date(2020, 1, 1)
DAYS = (dt.date(2026, 1, 1) - FIRST_DAY).days
RETENTION_YEARS = 3.0
MONTHLY = (1.08, 1.08, 1.06, 1.02, 1.0, 0.96, 0.88, 0.82, 0.98, 1.04, 1.06, 1.0)
"""Studies per day by month, January first (as :data:`pacs.synth.modalities._YEARLY_FACTORS`)."""
MODALITIES = {  # share of studies, median bytes of a study
    "CR": (0.30, 20e6), "CT": (0.20, 150e6), "MR": (0.12, 60e6), "US": (0.18, 10e6), "DX": (0.12, 15e6),
    "MG": (0.08, 80e6),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    studies_per_weekday: float
    growth: float
    smooth: bool = False
    """A smooth yearly wave (winter peak, ±10 %) instead of :data:`MONTHLY` and the holidays."""
    step: float = 0.0
    """A lasting step up from 2023-07-01 (a new scanner), as a fraction of the volume."""


SCENARIOS = (
    Scenario("hospital", 180.0, 0.08),     # about 9 GB a weekday
    Scenario("fast_growth", 180.0, 0.25),
    Scenario("small_clinic", 12.0, 0.08),  # noisy: a dozen studies a weekday
    Scenario("smooth_season", 180.0, 0.08, smooth=True),
    Scenario("new_scanner", 180.0, 0.08, step=0.2),
)


def history(s: Scenario, seed: int) -> np.ndarray:
    """Six years of daily ingest bytes of scenario ``s``."""
    rng = np.random.default_rng(seed)
    days = np.datetime64(FIRST_DAY, "D") + np.arange(DAYS)
    dates = days.astype(dt.date)
    month = np.array([d.month for d in dates])
    weekend = np.array([d.weekday() >= 5 for d in dates])
    holidays = np.array([(d.month, d.day) >= (12, 24) or (d.month, d.day) == (1, 1) for d in dates])
    index = forecast.month_index(FIRST_DAY, DAYS)
    wobble = np.exp(rng.normal(0.0, 0.04, index[-1] + 1))[index]
    doy = np.array([d.timetuple().tm_yday for d in dates])
    yearly = (1 + 0.1 * np.cos(2 * np.pi * (doy - 15) / 365.25) if s.smooth
              else np.array(MONTHLY)[month - 1] * np.where(holidays, 0.5, 1.0))
    step = np.where(days >= np.datetime64("2023-07-01"), 1 + s.step, 1.0)
    rate = (s.studies_per_weekday * (1 + s.growth) ** (np.arange(DAYS) / 365.25) * yearly * step
            * np.where(weekend, 0.3, 1.0) * wobble)
    studies = rng.poisson(rate)
    shares = np.array([v[0] for v in MODALITIES.values()])
    medians = np.array([v[1] for v in MODALITIES.values()])
    kind = rng.choice(len(shares), size=int(studies.sum()), p=shares / shares.sum())
    size = medians[kind] * rng.lognormal(0.0, 0.5, len(kind))
    return np.bincount(np.repeat(np.arange(DAYS), studies), weights=size, minlength=DAYS)


def groups(daily: np.ndarray) -> backtest.OnlineGroups:
    """Each day's studies as one group that leaves the online tier after the retention."""
    basis = np.datetime64(FIRST_DAY, "D") + np.arange(len(daily))
    due = forecast.due_dates(basis, np.full(len(daily), RETENTION_YEARS), np.zeros(len(daily), bool),
                             np.full(len(daily), np.datetime64("NaT"), dtype="datetime64[D]"))
    return backtest.OnlineGroups(basis=basis, bytes=daily, due=due,
                                 shares=[forecast.RetentionShare(fraction=1.0, years=RETENTION_YEARS)])


def summarise(results: list[backtest.Backtest]) -> dict[str, Any]:
    def stats(values: list[float | None]) -> dict[str, float]:
        v = np.array([x for x in values if x is not None])
        return {"mean": round(float(v.mean()), 2), "median": round(float(np.median(v)), 2),
                "worst": round(float(v.max()), 2)}

    ingest, naive_ingest = [r.ingest_mape_pct for r in results], [r.naive_ingest_mape_pct for r in results]
    online, naive_online = [r.online_mape_pct for r in results], [r.naive_online_mape_pct for r in results]
    return {"histories": len(results), "ingest_mape_pct": stats(ingest), "naive_ingest_mape_pct": stats(naive_ingest),
            "online_mape_pct": stats(online), "naive_online_mape_pct": stats(naive_online),
            "ingest_wins": sum(a < b for a, b in zip(ingest, naive_ingest, strict=True) if a is not None and b),
            "online_wins": sum(a < b for a, b in zip(online, naive_online, strict=True) if a is not None and b),
            "model": results[0].model if results else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20, help="histories per scenario")
    p.add_argument("--window", type=int, nargs="*", default=[3, 4, 5], help="fit windows to compare, in years")
    p.add_argument("--small", action="store_true", help="3 histories per scenario")
    args = p.parse_args()
    seeds = 3 if args.small else args.seeds
    start, t0 = code_version(), time.perf_counter()
    out: dict[str, Any] = {}
    rows = []
    for s in SCENARIOS:
        data = [history(s, 1000 + k) for k in range(seeds)]
        for years in args.window:
            runs = [backtest.run(y, FIRST_DAY, groups=groups(y), window_days=int(years * 365)) for y in data]
            summary = summarise([r for r in runs if r is not None])
            out[f"{s.name}/{years}y"] = summary
            rows.append([s.name, f"{years} y" + (" (default)" if years * 365 == forecast.FIT_WINDOW_DAYS else ""),
                         summary["histories"], summary["ingest_mape_pct"]["mean"],
                         summary["ingest_mape_pct"]["worst"], summary["naive_ingest_mape_pct"]["mean"],
                         f"{summary['ingest_wins']}/{summary['histories']}", summary["online_mape_pct"]["mean"],
                         summary["online_mape_pct"]["worst"], summary["naive_online_mape_pct"]["mean"],
                         f"{summary['online_wins']}/{summary['histories']}"])
    print_table(["scenario", "fit window", "histories", "ingest MAPE %", "worst", "naive %", "model better",
                 "online MAPE %", "worst", "naive %", "model better"], rows,
                title="Backtest: fit on 2020-2024, forecast 2025 month by month (MAPE over 12 months)")
    default = next((y for y in args.window if y * 365 == forecast.FIT_WINDOW_DAYS), None)
    if default is not None:
        print(f"\nmodel ({SCENARIOS[0].name}, first history, {default}-year window): "
              f"{out[f'{SCENARIOS[0].name}/{default}y']['model']}")
    final_json({"bench": "forecast_backtest", "seconds": round(time.perf_counter() - t0, 2), "seeds": seeds,
                "retention_years": RETENTION_YEARS, "first_day": FIRST_DAY.isoformat(), "days": DAYS,
                "default_window_days": forecast.FIT_WINDOW_DAYS, "results": out, "machine": machine_info(),
                "code": provenance(start)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
