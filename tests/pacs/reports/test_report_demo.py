"""The capacity report of a demo-like archive, as a planner reads it after ``make demo``.

One module-scoped archive, made as the demo makes it (with fewer images per series, to be quick):
a small synthetic hospital (80 patients, 2022 to 2026, bad files and resends) really ingested,
the lifecycle run at the report's date, tiers sized to it as ``pacs.demo`` sizes them (online
70 %, offline 60 % full), and the report published. The archive runs a month past the report's
date, so the catalogue holds studies the report must not count yet. Checks read the published
files: ``summary.json``, the CSV tables, the charts' SVG and a headless-Chromium screenshot.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml
from helpers import query, write_config

from pacs import intake, synth
from pacs.config import load_config
from pacs.reports import capacity
from pacs.tiers.lifecycle import run_lifecycle

REPORT_DAY = dt.date(2026, 11, 1)
THROUGH = REPORT_DAY - dt.timedelta(days=1)
CHROMIUM = "/usr/bin/chromium"
FORECAST_TABLES = ("forecast_daily", "forecast_monthly", "what_if_retention")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("demo") / "archive"
    path = write_config(base, policy={"online_retention_years": 3},
                        ingest={"batch_size": 2000, "workers": 2, "fsync": False})
    cfg = load_config(path)
    synth.generate_archive(cfg.landing[0].root, seed=2026, patients=80, start=dt.date(2022, 1, 1),
                           end=dt.date(2026, 11, 30), count_scale=0.06, size_scale=0.1, bad=True, duplicates=20)
    intake.run_ingest(cfg)
    run_lifecycle(cfg, logical_date=REPORT_DAY)
    as_of = capacity.as_of_for(REPORT_DAY)
    online, offline = query(cfg, """
        SELECT sum(size_bytes) FILTER (WHERE online_uri IS NOT NULL),
               sum(size_bytes) FILTER (WHERE offline_uri IS NOT NULL)
        FROM image WHERE received_at < $as_of""", {"as_of": as_of})[0]
    raw = yaml.safe_load(path.read_text())
    raw["policy"]["watermarks"] = {"high": 0.85, "low": 0.75}
    raw["capacity"] = {"online_bytes": f"{int(online / 0.7)} B", "offline_bytes": f"{int(offline / 0.6)} B",
                       "price_per_gb_month": {"online": 0.10, "offline": 0.0125}}
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    capacity.run_report(cfg, as_of)
    folder = Path(cfg.reports.root) / "capacity" / REPORT_DAY.isoformat()
    later = query(cfg, "SELECT count(*) FROM image WHERE received_at >= $as_of", {"as_of": as_of})[0][0]
    return {"cfg": cfg, "folder": folder, "summary": json.loads((folder / "summary.json").read_text()),
            "later_images": later}


def _table(demo: dict[str, Any], name: str) -> pa.Table:
    return pacsv.read_csv(demo["folder"] / f"{name}.csv")


def _dates(table: pa.Table) -> dict[str, list[dt.date]]:
    """Every date column of a CSV table (read back as dates), nulls left out."""
    out = {}
    for field in table.schema:
        if pa.types.is_date(field.type) or pa.types.is_timestamp(field.type):
            out[field.name] = [v if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else v.date()
                               for v in table.column(field.name).to_pylist() if v is not None]
    return out


def test_no_table_reaches_past_the_report_date_and_the_forecast_starts_on_it(demo: dict[str, Any]) -> None:
    s = demo["summary"]
    assert (s["report_date"], s["history_through"]) == ("2026-11-01", "2026-10-31")
    assert demo["later_images"] > 0  # the catalogue holds what arrived after the report's date ...
    assert s["catalogue"]["received_later"]["images"] == demo["later_images"]  # ... and the report says so
    assert any("received at or after 2026-11-01 00:00 UTC" in note for note in s["notes"])
    for name in s["tables"]:
        if name in FORECAST_TABLES:
            continue
        for column, values in _dates(_table(demo, name)).items():
            assert not values or max(values) <= THROUGH, (name, column, max(values))
    for name in ("forecast_daily", "forecast_monthly"):
        values = next(iter(_dates(_table(demo, name)).values()))
        assert min(values) == REPORT_DAY.replace(day=1) if name == "forecast_monthly" else min(values) == REPORT_DAY
    monthly = _table(demo, "volume_monthly").to_pylist()
    assert max(r["period_start"] for r in monthly) == dt.date(2026, 10, 1)
    studies = query(demo["cfg"], "SELECT count(*) FROM study WHERE first_received_at < $a",
                    {"a": capacity.as_of_for(REPORT_DAY)})[0][0]
    assert s["catalogue"]["studies"] == studies


def test_utilisation_and_every_chart_have_data(demo: dict[str, Any]) -> None:
    s = demo["summary"]
    for tier in ("online", "offline"):
        assert s["tiers"][tier]["bytes"] > 0
        assert 50 <= s["tiers"][tier]["utilisation_pct"] <= 90, tier
    totals = [r for r in _table(demo, "volume_monthly").to_pylist() if r["dimension"] == "total"]
    with_bytes = [r["bytes"] for r in totals if r["bytes"] > 0]
    assert len(with_bytes) >= 40 and max(with_bytes) > 2 * min(with_bytes)  # 58 months, not a flat line
    what_if = _table(demo, "what_if_retention").to_pylist()
    now = [r["online_bytes_now"] for r in what_if]
    assert now == sorted(now) and now[0] > 0 and all(r["online_bytes_24_months"] > 0 for r in what_if)
    html = (demo["folder"] / "report.html").read_text()
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert len(svgs) == 5  # tiers, online forecast, ingest, what-if, modality mix
    for svg in svgs:
        assert not re.search(r">\s*(1e[−-]?\d|×\s*10)", svg), "an axis offset or scientific notation"
    # Byte axes read in the data's unit (megabytes for this archive), the capacity drawn on them.
    assert "MB online" in svgs[1] and "capacity " in svgs[1] and "MB per month" in svgs[2]
    assert "% of the tier" in svgs[0]


def test_the_forecast_never_vanishes_states_its_model_and_its_backtest(demo: dict[str, Any]) -> None:
    fc = demo["summary"]["forecast"]
    assert fc["status"] == "ok" and fc["model"].startswith("log-linear trend")
    assert fc["fit_mape_pct"] is not None
    history = [r["bytes"] for r in _table(demo, "volume_monthly").to_pylist()
               if r["dimension"] == "total" and dt.date(2025, 11, 1) <= r["period_start"] <= THROUGH]
    forecast_months = _table(demo, "forecast_monthly").to_pylist()
    assert len(forecast_months) == 24
    assert min(r["ingest_bytes"] for r in forecast_months) > 0.25 * np.mean(history)
    daily = _table(demo, "forecast_daily")
    assert min(daily.column("ingest_bytes").to_pylist()) >= 0
    offline = daily.column("offline_bytes").to_pylist()
    assert offline[-1] > offline[0]  # new studies get their offline copy
    bt = fc["backtest"]
    assert bt["status"] == "ok" and bt["first_day"] == "2025-11-01" and bt["months"] == 12
    for key in ("ingest_mape_pct", "naive_ingest_mape_pct", "online_mape_pct", "naive_online_mape_pct"):
        assert bt[key] is not None and bt[key] >= 0, key
    html = (demo["folder"] / "report.html").read_text()
    assert "Seasonal naive" in html and f"{bt['ingest_mape_pct']:.1f} %" in html and "quasi-Poisson" in html


def _near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> int:
    return int((np.abs(pixels[..., :3].astype(int) - np.array(rgb)).sum(axis=-1) < tol).sum())


def test_the_demo_report_renders_every_chart_in_headless_chromium(demo: dict[str, Any], tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    from PIL import Image

    png = tmp_path / "report.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium'}", f"--screenshot={png}", "--window-size=1200,3400",
           f"file://{demo['folder'] / 'report.html'}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(png).convert("RGB"))
    # Drawn, not flat: the online bar and forecast line (#1f6feb), the offline bar (#2a9d8f),
    # the monthly ingest bars (#9ecae1) and the forecast months (#d1495b at 55 % over white).
    assert _near(pixels, (0x1F, 0x6F, 0xEB)) > 5000
    assert _near(pixels, (0x2A, 0x9D, 0x8F)) > 3000
    assert _near(pixels, (0x9E, 0xCA, 0xE1)) > 3000
    assert _near(pixels, (0xE6, 0x8E, 0x99)) > 2000
    shutil.rmtree(tmp_path / "chromium", ignore_errors=True)
