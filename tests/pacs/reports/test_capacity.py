"""Tests for :mod:`pacs.reports.capacity`: figures equal SQL truth, forecasts, outputs, HTML in Chromium.

Catalogues are built row by row in DuckDB by the tests (no DICOM files needed), with the parts
the report must get right: several modalities and institutions, multi-modality studies, studies
without a date, studies partly offline, images received after the report's date, holds, pins
and modality overrides. The truth is computed here with independent SQL over the raw tables.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from helpers import write_config

from pacs import catalogue
from pacs.config import ConfigError, load_config
from pacs.reports import capacity

AS_OF = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
UTC = dt.UTC
CHROMIUM = "/usr/bin/chromium"


# ---------------------------------------------------------------------------------------------
# a catalogue built by the test
# ---------------------------------------------------------------------------------------------

def insert_catalogue(path: Path, studies: list[dict[str, Any]]) -> None:
    """Write patient/study/series/image rows (with exact aggregates) for ``studies``.

    Each study: uid, patient_id, study_date (or None), institution (or None), pinned_until,
    series: list of (modality, images) where images are (size, received_at, tier, offline: bool).
    """
    now = dt.datetime(2025, 7, 2, tzinfo=UTC)
    patients: dict[str, dict[str, Any]] = {}
    study_rows, series_rows, image_rows = [], [], []
    for s in studies:
        mods = sorted({m for m, _ in s["series"]})
        all_images = [img for _, imgs in s["series"] for img in imgs]
        received = [img[1] for img in all_images]
        study_rows.append({
            "study_instance_uid": s["uid"], "patient_id": s["patient_id"], "study_date": s["study_date"],
            "institution_name": s["institution"], "patient_age": s.get("patient_age"), "modalities_in_study": mods,
            "series_count": len(s["series"]), "image_count": len(all_images),
            "size_bytes": sum(i[0] for i in all_images),
            "online_image_count": sum(i[2] == "online" for i in all_images),
            "offline_image_count": sum(bool(i[3]) for i in all_images),
            "first_received_at": min(received), "last_received_at": max(received),
            "tier_state": s.get("tier_state", "online"), "pinned_until": s.get("pinned_until"),
            "accession_number": f"ACC{s['uid'][-6:]}", "created_at": now, "updated_at": now,
        })
        p = patients.setdefault(s["patient_id"], {
            "patient_id": s["patient_id"], "patient_name": f"DOE^{s['patient_id']}",
            "patient_birth_date": s.get("birth"), "patient_sex": s.get("sex", "O"),
            "study_count": 0, "created_at": now, "updated_at": now})
        p["study_count"] += 1
        for n, (modality, imgs) in enumerate(s["series"]):
            se_uid = f"{s['uid']}.{n + 1}"
            series_rows.append({"series_instance_uid": se_uid, "study_instance_uid": s["uid"], "modality": modality,
                                "image_count": len(imgs), "size_bytes": sum(i[0] for i in imgs),
                                "first_received_at": min(i[1] for i in imgs),
                                "last_received_at": max(i[1] for i in imgs), "created_at": now, "updated_at": now})
            for k, (size, rec, tier, offline) in enumerate(imgs):
                sop = f"{se_uid}.{k + 1}"
                image_rows.append({
                    "sop_instance_uid": sop, "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                    "series_instance_uid": se_uid, "study_instance_uid": s["uid"], "sha256": "0" * 64,
                    "size_bytes": size, "tier": tier, "uri": f"/{tier}/{sop}",
                    "online_uri": f"/online/{sop}" if tier == "online" else None,
                    "offline_uri": f"s3://off/{sop}" if offline else None,
                    "received_at": rec, "ingested_at": rec, "batch_id": "b1", "updated_at": now,
                })
    con = catalogue.connect(path)
    try:
        for table, rows in (("patient", list(patients.values())), ("study", study_rows), ("series", series_rows),
                            ("image", image_rows)):
            if not rows:
                continue
            arrow = pa.Table.from_pylist(rows)
            con.register("rows", arrow)
            cols = ", ".join(arrow.column_names)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM rows")
            con.unregister("rows")
    finally:
        con.close()


def random_studies(seed: int = 5) -> list[dict[str, Any]]:
    """About 2.5 years of studies ending the day before AS_OF, with every awkward case."""
    rng = random.Random(seed)
    out = []
    start = dt.date(2023, 1, 1)
    days = (AS_OF.date() - start).days
    modalities = ["CT", "MR", "CR", "MG"]
    for i in range(700):
        day = start + dt.timedelta(days=rng.randrange(days))
        uid = f"1.2.3.{i + 1}"
        old = day < dt.date(2023, 7, 1)
        state = "offline" if old else rng.choice(["online", "online", "online", "migrating"])
        series = []
        mods = [rng.choice(modalities)]
        if rng.random() < 0.08:
            mods.append(rng.choice([m for m in modalities if m != mods[0]]))
        for m in mods:
            for _ in range(rng.randint(1, 2)):
                imgs = []
                for _ in range(rng.randint(1, 4)):
                    rec = dt.datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + dt.timedelta(
                        minutes=rng.randrange(60 * 30))  # some arrive the next day
                    if state == "offline":
                        tier, off = "offline", True
                    elif state == "migrating":
                        tier, off = rng.choice([("online", True), ("online", False), ("offline", True)])
                    else:
                        tier, off = "online", rng.random() < 0.1
                    imgs.append((rng.randint(100_000, 20_000_000), rec, tier, off))
                series.append((m, imgs))
        out.append({"uid": uid, "patient_id": f"P{rng.randrange(150):04d}", "study_date": day,
                    "institution": rng.choice(["North General", "South Clinic", None]), "series": series,
                    "tier_state": state, "birth": dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(20000)),
                    "sex": rng.choice("MF")})
    # A study without a date (counts on the day it arrived), one received after AS_OF (not in the
    # report), one received partly after AS_OF and partly offline, a pinned one, a held one.
    rec = dt.datetime(2025, 3, 3, 9, tzinfo=UTC)
    out.append({"uid": "9.1", "patient_id": "P0001", "study_date": None, "institution": "North General",
                "series": [("CT", [(5_000_000, rec, "online", False)] * 1)]})
    late = AS_OF + dt.timedelta(hours=3)
    out.append({"uid": "9.2", "patient_id": "P0002", "study_date": dt.date(2025, 6, 30), "institution": "South Clinic",
                "series": [("MR", [(7_000_000, late, "online", False), (3_000_000, late, "online", False)])]})
    before = AS_OF - dt.timedelta(hours=5)
    out.append({"uid": "9.3", "patient_id": "P0003", "study_date": dt.date(2025, 6, 30), "institution": None,
                "tier_state": "migrating",
                "series": [("CT", [(4_000_000, before, "online", True), (6_000_000, before, "offline", True),
                                   (8_000_000, late, "online", True), (9_000_000, before, "online", False)])]})
    out.append({"uid": "9.4", "patient_id": "P0004", "study_date": dt.date(2021, 5, 5), "institution": "North General",
                "pinned_until": dt.date(2025, 12, 31),
                "series": [("CR", [(11_000_000, dt.datetime(2025, 2, 1, tzinfo=UTC), "online", True)])]})
    out.append({"uid": "9.5", "patient_id": "P0099", "study_date": dt.date(2020, 1, 2), "institution": "South Clinic",
                "series": [("MG", [(13_000_000, dt.datetime(2020, 1, 2, 10, tzinfo=UTC), "online", True)])]})
    return out


POLICY = {"online_retention_years": 2, "modality_overrides": {"MG": 4},
          "hold": {"patients": ["P0099"], "studies": ["1.2.3.7"]}, "watermarks": {"high": 0.85, "low": 0.75}}
CAPACITY = {"online_bytes": "20 GB", "offline_bytes": "100 GB",
            "price_per_gb_month": {"online": 0.10, "offline": 0.0125}, "currency": "EUR"}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The catalogue of random_studies(), built once for the module (tests only read it)."""
    cfg = load_config(write_config(tmp_path_factory.mktemp("small") / "archive", policy=POLICY, capacity=CAPACITY))
    insert_catalogue(cfg.duckdb, random_studies())
    return cfg


@pytest.fixture(scope="module")
def small_report(small: Any) -> tuple[Any, capacity.CapacityReport]:
    return small, capacity.build_report(small, capacity.extract(small, AS_OF), charts=False)


@pytest.fixture(scope="module")
def written(small: Any) -> tuple[Any, dict[str, Any]]:
    """The report of ``small`` published once under its reports location."""
    return small, capacity.run_report(small, AS_OF)


def truth(cfg: Any, query: str, **params: Any) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(cfg.duckdb), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(query, params).fetchall()
    finally:
        con.close()


# Images before AS_OF with the day they count on: the study date, else the study's arrival day.
IMAGES = """
    SELECT i.*, se.modality, coalesce(st.institution_name, '(not recorded)') AS institution,
           coalesce(st.study_date, CAST(st.first_received_at AT TIME ZONE 'UTC' AS DATE)) AS day
    FROM image i JOIN series se USING (series_instance_uid)
    JOIN study st ON st.study_instance_uid = i.study_instance_uid
    WHERE i.received_at < $as_of
"""


def rows_of(table: pa.Table, dimension: str) -> dict[tuple[Any, str], tuple[int, int, int]]:
    return {(r["period_start"], r["value"]): (r["studies"], r["images"], r["bytes"])
            for r in table.to_pylist() if r["dimension"] == dimension}


# ---------------------------------------------------------------------------------------------
# figures equal SQL truth
# ---------------------------------------------------------------------------------------------

def test_volume_equals_sql_truth(small_report: tuple[Any, capacity.CapacityReport]) -> None:
    cfg, rep = small_report
    monthly = rows_of(rep.tables["volume_monthly"], "modality")
    images = truth(cfg, f"""
        SELECT CAST(date_trunc('month', day) AS DATE), modality, count(*), sum(size_bytes)
        FROM ({IMAGES}) GROUP BY ALL""", as_of=AS_OF)
    assert len(images) > 50
    for month, modality, n, b in images:
        assert monthly[(month, modality)][1:] == (n, b), (month, modality)
    studies = truth(cfg, """
        SELECT CAST(date_trunc('month', coalesce(st.study_date,
                                                 CAST(st.first_received_at AT TIME ZONE 'UTC' AS DATE))) AS DATE) AS m,
               se.modality, count(DISTINCT st.study_instance_uid)
        FROM study st JOIN series se USING (study_instance_uid)
        WHERE st.first_received_at < $as_of GROUP BY ALL""", as_of=AS_OF)
    for month, modality, n in studies:
        assert monthly[(month, modality)][0] == n, (month, modality)
    assert sum(v[1] for v in monthly.values()) == sum(r[2] for r in images)

    daily = rows_of(rep.tables["volume_daily"], "total")
    day_truth = truth(cfg, f"SELECT day, count(*), sum(size_bytes) FROM ({IMAGES}) GROUP BY ALL", as_of=AS_OF)
    assert {k[0]: v[1:] for k, v in daily.items() if v[1]} == {d: (n, b) for d, n, b in day_truth}
    study_days = truth(cfg, """
        SELECT coalesce(study_date, CAST(first_received_at AT TIME ZONE 'UTC' AS DATE)), count(*) FROM study
        WHERE first_received_at < $as_of GROUP BY ALL""", as_of=AS_OF)
    assert {k[0]: v[0] for k, v in daily.items() if v[0]} == dict(study_days)

    weekly = rows_of(rep.tables["volume_weekly"], "institution")
    week_truth = truth(cfg, f"""
        SELECT CAST(date_trunc('week', day) AS DATE), institution, count(*), sum(size_bytes)
        FROM ({IMAGES}) GROUP BY ALL""", as_of=AS_OF)
    for week, inst, n, b in week_truth:
        assert week.weekday() == 0
        assert weekly[(week, inst)][1:] == (n, b)
    tier = rows_of(rep.tables["volume_monthly"], "tier")
    tier_truth = truth(cfg, f"""
        SELECT CAST(date_trunc('month', day) AS DATE), tier, count(*), sum(size_bytes)
        FROM ({IMAGES}) GROUP BY ALL""", as_of=AS_OF)
    for month, t, n, b in tier_truth:
        assert tier[(month, t)][1:] == (n, b)


def test_tiers_growth_and_totals_equal_sql_truth(small_report: tuple[Any, capacity.CapacityReport]) -> None:
    cfg, rep = small_report
    tiers = {r["tier"]: r for r in rep.tables["tier_utilisation"].to_pylist()}
    for tier, column in (("online", "online_uri"), ("offline", "offline_uri")):
        studies, images, nbytes = truth(cfg, f"""
            SELECT count(DISTINCT study_instance_uid), count(*), sum(size_bytes) FROM image
            WHERE received_at < $as_of AND {column} IS NOT NULL""", as_of=AS_OF)[0]
        assert (tiers[tier]["studies"], tiers[tier]["images"], tiers[tier]["bytes"]) == (studies, images, nbytes)
    assert tiers["online"]["capacity_bytes"] == 20 * 10**9
    assert tiers["online"]["utilisation_pct"] == pytest.approx(100 * tiers["online"]["bytes"] / 20e9)
    assert tiers["online"]["high_watermark_pct"] == 85
    assert tiers["offline"]["capacity_bytes"] == 100 * 10**9

    through = AS_OF.date() - dt.timedelta(days=1)
    growth = {r["window"]: r for r in rep.tables["growth"].to_pylist()}
    for name, days in (("last_30_days", 30), ("last_90_days", 90), ("last_365_days", 365)):
        start = through - dt.timedelta(days=days - 1)
        b, before, year_before = truth(cfg, f"""
            SELECT coalesce(sum(size_bytes) FILTER (WHERE day BETWEEN $start AND $through), 0),
                   coalesce(sum(size_bytes) FILTER (WHERE day < $start), 0),
                   coalesce(sum(size_bytes) FILTER (WHERE day BETWEEN $start - 365 AND $through - 365), 0)
            FROM ({IMAGES})""", as_of=AS_OF, start=start, through=through)[0]
        g = growth[name]
        assert (g["start_date"], g["end_date"], g["bytes"]) == (start, through, b)
        assert g["archive_bytes_before"] == before
        assert g["bytes_year_before"] == year_before  # 2024 is a leap year: 365 days back, not 1 calendar year
        assert g["archive_growth_pct"] == pytest.approx(100 * b / before)
        if year_before:
            assert g["bytes_yoy_change_pct"] == pytest.approx(100 * (b - year_before) / year_before)

    studies, images, nbytes = truth(cfg, "SELECT count(DISTINCT study_instance_uid), count(*), sum(size_bytes) "
                                         "FROM image WHERE received_at < $as_of", as_of=AS_OF)[0]
    assert rep.summary["catalogue"]["studies"] == studies == 704  # 705 studies, one received after AS_OF
    assert (rep.summary["catalogue"]["images"], rep.summary["catalogue"]["bytes"]) == (images, nbytes)


def test_growth_windows_count_365_days(small_report: tuple[Any, capacity.CapacityReport]) -> None:
    """Year over year compares with the same number of days a year (365 days) earlier."""
    cfg, rep = small_report
    through = AS_OF.date() - dt.timedelta(days=1)
    g = {r["window"]: r for r in rep.tables["growth"].to_pylist()}["last_30_days"]
    first, last = through - dt.timedelta(days=29 + 365), through - dt.timedelta(days=365)
    expected = truth(cfg, f"SELECT coalesce(sum(size_bytes), 0) FROM ({IMAGES}) WHERE day BETWEEN $a AND $b",
                     as_of=AS_OF, a=first, b=last)[0][0]
    assert g["bytes_year_before"] == expected


def test_what_if_equals_policy_applied_study_by_study(small_report: tuple[Any, capacity.CapacityReport]) -> None:
    cfg, rep = small_report
    policy = cfg.policy
    rows = truth(cfg, """
        SELECT st.study_instance_uid, st.patient_id, st.study_date,
               CAST(st.first_received_at AT TIME ZONE 'UTC' AS DATE), st.modalities_in_study, st.pinned_until,
               sum(i.size_bytes)
        FROM study st JOIN image i USING (study_instance_uid) WHERE i.received_at < $as_of GROUP BY ALL""", as_of=AS_OF)
    today = AS_OF.date()
    what_if = {r["online_retention_years"]: r for r in rep.tables["what_if_retention"].to_pylist()}
    assert sorted(what_if) == [1, 2, 3, 4, 5]
    for years in (1, 2, 3, 4, 5):
        expected = 0
        for uid, patient, study_date, received, mods, pinned, nbytes in rows:
            basis = study_date or received
            keep_years = max([years] + [policy.modality_overrides.get(m, 0) for m in mods])
            held = uid in policy.hold_studies or patient in policy.hold_patients
            pinned_now = pinned is not None and pinned >= today
            online = held or pinned_now or not basis < policy.online_cutoff(today, keep_years)
            expected += nbytes if online else 0
        assert what_if[years]["online_bytes_now"] == expected, years
        assert what_if[years]["utilisation_now_pct"] == pytest.approx(100 * expected / 20e9)
    assert what_if[1]["online_bytes_now"] < what_if[5]["online_bytes_now"]


def test_cost_per_tier(small_report: tuple[Any, capacity.CapacityReport]) -> None:
    _, rep = small_report
    cost = {r["tier"]: r for r in rep.tables["cost"].to_pylist()}
    tiers = {r["tier"]: r for r in rep.tables["tier_utilisation"].to_pylist()}
    assert cost["online"]["monthly_cost_now"] == pytest.approx(tiers["online"]["bytes"] / 1e9 * 0.10)
    assert cost["offline"]["monthly_cost_now"] == pytest.approx(tiers["offline"]["bytes"] / 1e9 * 0.0125)
    assert cost["online"]["currency"] == "EUR"
    daily = rep.tables["forecast_daily"]
    assert daily.num_rows == 730  # 2025-07-01 to 2027-06-30: 24 months
    offline = daily.column("offline_bytes").to_numpy()
    assert cost["offline"]["cost_next_24_months"] == pytest.approx(offline.sum() / 1e9 * 0.0125 / (365.25 / 12))
    assert np.all(np.diff(offline) >= 0)  # the offline tier keeps everything
    monthly = rep.tables["forecast_monthly"].to_pylist()
    assert monthly[0]["month"] == dt.date(2025, 7, 1)
    assert sum(m["offline_cost"] for m in monthly) == pytest.approx(cost["offline"]["cost_next_24_months"])


def test_forecast_starts_from_online_bytes_and_moves_due_studies(
        small_report: tuple[Any, capacity.CapacityReport]) -> None:
    _, rep = small_report
    fc = rep.summary["forecast"]
    assert fc["status"] == "ok" and fc["history_days"] > 800
    daily = rep.tables["forecast_daily"].to_pylist()
    online_now = rep.summary["tiers"]["online"]["bytes"]
    first = daily[0]
    assert first["date"] == AS_OF.date()
    assert first["online_bytes"] == pytest.approx(online_now + first["ingest_bytes"] - first["migrated_bytes"])
    # The pinned study (11 MB, study of 2021) leaves the day after its pin ends.
    jan1 = next(r for r in daily if r["date"] == dt.date(2026, 1, 1))
    assert jan1["migrated_bytes"] >= 11_000_000
    # Studies on hold never leave: the held MG study of 2020 stays in every forecast day.
    assert all(r["online_bytes"] > 0 for r in daily)
    assert fc["overdue_online_bytes"] >= 0


def test_outputs_latest_and_summary(written: tuple[Any, dict[str, Any]]) -> None:
    small, result = written
    root = Path(small.reports.root) / "capacity"
    dated, latest = root / "2025-07-01", root / "latest"
    names = sorted(p.name for p in dated.iterdir())
    assert names == sorted(p.name for p in latest.iterdir())
    for table in ("volume_daily", "volume_weekly", "volume_monthly", "tier_utilisation", "growth", "forecast_daily",
                  "forecast_monthly", "what_if_retention", "cost"):
        assert f"{table}.csv" in names and f"{table}.parquet" in names
        assert pacsv.read_csv(dated / f"{table}.csv").num_rows == pq.read_table(dated / f"{table}.parquet").num_rows
    summary = json.loads((dated / "summary.json").read_text())
    assert summary == json.loads((latest / "summary.json").read_text())
    assert summary["report_date"] == "2025-07-01" and summary["forecast"]["status"] == "ok"
    assert "report.html" in summary["files"]
    html = (dated / "report.html").read_text()
    assert html.count("<svg") >= 4
    for external in ("<script", "<link", 'src="http', "url(http", "@import"):
        assert external not in html
    assert "@media print" in html
    assert "DOE^" not in html and "ACC" not in html  # counts only, no patient data
    assert result["summary"]["studies"] == 704


def test_snapshot_source_gives_the_same_figures(small_report: tuple[Any, capacity.CapacityReport]) -> None:
    small, live = small_report
    with catalogue.opened(small.duckdb) as con:
        catalogue.refresh_snapshot(con, small.parquet)
    snap = capacity.build_report(small, capacity.extract(small, AS_OF, source="snapshot"), charts=False)
    for name in ("volume_monthly", "tier_utilisation", "growth"):
        assert live.tables[name].equals(snap.tables[name]), name
    for name in ("what_if_retention", "forecast_monthly"):  # floating sums: the same up to rounding
        for a, b in zip(live.tables[name].to_pylist(), snap.tables[name].to_pylist(), strict=True):
            assert a.keys() == b.keys()
            for k in a:
                assert a[k] == (pytest.approx(b[k], rel=1e-9) if isinstance(b[k], float) else b[k]), (name, k)


def test_received_at_basis_counts_on_arrival(small: Any, tmp_path: Path) -> None:
    settings = {**CAPACITY, "date_basis": "received_at"}
    cfg = load_config(write_config(tmp_path / "arrival", policy=POLICY, capacity=settings,
                                   catalogue={"duckdb": str(small.duckdb), "parquet": str(tmp_path / "parquet")}))
    rep = capacity.build_report(cfg, capacity.extract(cfg, AS_OF), charts=False)
    daily = rows_of(rep.tables["volume_daily"], "total")
    expected = truth(cfg, """SELECT CAST(received_at AT TIME ZONE 'UTC' AS DATE), count(*), sum(size_bytes)
                             FROM image WHERE received_at < $as_of GROUP BY ALL""", as_of=AS_OF)
    assert {k[0]: v[1:] for k, v in daily.items() if v[1]} == {d: (n, b) for d, n, b in expected}


def test_nothing_counts_after_the_report_date(archive: Callable[..., Any]) -> None:
    """A study dated after the report (a modality's clock months ahead) counts on the day it
    arrived; one received after the report's moment is left to later reports, and said so."""
    cfg = archive(capacity=CAPACITY)
    on_time, early = dt.datetime(2025, 6, 2, 9, tzinfo=UTC), dt.datetime(2025, 6, 20, 9, tzinfo=UTC)
    insert_catalogue(cfg.duckdb, [
        {"uid": "8.1", "patient_id": "P1", "study_date": dt.date(2025, 6, 2), "institution": "North",
         "series": [("CT", [(1_000_000, on_time, "online", False)])]},
        {"uid": "8.2", "patient_id": "P2", "study_date": dt.date(2025, 9, 15), "institution": "North",
         "series": [("CT", [(2_000_000, early, "online", False)])]},
        {"uid": "8.3", "patient_id": "P3", "study_date": dt.date(2025, 6, 30), "institution": "North",
         "series": [("MR", [(3_000_000, AS_OF + dt.timedelta(hours=1), "online", False)])]},
    ])
    rep = capacity.build_report(cfg, capacity.extract(cfg, AS_OF), charts=False)
    daily = rows_of(rep.tables["volume_daily"], "total")
    assert {k[0]: v[2] for k, v in daily.items()} == {dt.date(2025, 6, 2): 1_000_000, dt.date(2025, 6, 20): 2_000_000}
    assert {k[0]: v[0] for k, v in daily.items()} == {dt.date(2025, 6, 2): 1, dt.date(2025, 6, 20): 1}
    for name in ("volume_daily", "volume_weekly", "volume_monthly"):
        assert max(rep.tables[name].column("period_start").to_pylist()) < AS_OF.date(), name
    assert rep.summary["catalogue"]["received_later"] == {"images": 1, "bytes": 3_000_000}
    assert any("1 image(s) (3.00 MB) received at or after 2025-07-01 00:00 UTC" in n for n in rep.notes)


# ---------------------------------------------------------------------------------------------
# forecast through the whole report
# ---------------------------------------------------------------------------------------------

def test_linear_growth_catalogue_fill_date_within_5_percent(archive: Callable[..., Any]) -> None:
    """One study a day whose size grows linearly (15 % of the first day's a year); the report's
    crossing date is within 5 %."""
    days, a, b = 730, 2.0e8, 0.15 * 2.0e8 / 365.25
    first_day = AS_OF.date() - dt.timedelta(days=days)
    studies = []
    for d in range(days):
        day = first_day + dt.timedelta(days=d)
        rec = dt.datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        studies.append({"uid": f"5.{d}", "patient_id": f"P{d % 50}", "study_date": day, "institution": "North",
                        "series": [("CT", [(int(a + b * d), rec, "online", False)])]})
    online_now = sum(int(a + b * d) for d in range(days))
    high = 0.85
    # Capacity so that the high watermark is reached about a year ahead (true fill index below).
    future_year = sum(a + b * (days + k) for k in range(365))
    capacity_bytes = int((online_now + future_year) / high)
    cfg = archive(policy={"online_retention_years": 100, "watermarks": {"high": high, "low": 0.7}},
                  capacity={"online_bytes": capacity_bytes})
    insert_catalogue(cfg.duckdb, studies)
    rep = capacity.build_report(cfg, capacity.extract(cfg, AS_OF), charts=False)
    threshold = high * capacity_bytes
    need = threshold - online_now
    c1 = a + b * days - b / 2
    true_index = math.ceil((-c1 + math.sqrt(c1 * c1 + 2 * b * need)) / b) - 1
    crossing = rep.summary["forecast"]["threshold_crossing"]["date"]
    assert crossing is not None
    predicted = (dt.date.fromisoformat(crossing) - AS_OF.date()).days
    assert abs(predicted - true_index) <= 0.05 * true_index, (predicted, true_index)
    assert "reaches the high watermark (85 %)" in rep.summary["forecast"]["message"]


@pytest.mark.parametrize("n_studies", [0, 3])
def test_tiny_catalogue_says_not_enough_history(archive: Callable[..., Any], n_studies: int) -> None:
    cfg = archive(capacity=CAPACITY)
    rec = dt.datetime(2025, 6, 20, 9, tzinfo=UTC)
    insert_catalogue(cfg.duckdb, [
        {"uid": f"7.{i}", "patient_id": "P1", "study_date": dt.date(2025, 6, 18 + i), "institution": "North",
         "series": [("CT", [(1_000_000, rec, "online", False)])]} for i in range(n_studies)])
    result = capacity.run_report(cfg, AS_OF)
    dated = Path(cfg.reports.root) / "capacity" / "2025-07-01"
    summary = json.loads((dated / "summary.json").read_text())
    assert summary["forecast"]["status"] == "not_enough_history"
    assert summary["forecast"]["message"].startswith("Not enough history to forecast")
    assert "Not enough history to forecast" in (dated / "report.html").read_text()
    assert summary["catalogue"]["studies"] == n_studies == result["summary"]["studies"]
    assert pq.read_table(dated / "forecast_daily.parquet").num_rows == 0
    assert len(pq.read_table(dated / "what_if_retention.parquet")) == 5


def test_missing_catalogue_reports_an_empty_archive(archive: Callable[..., Any]) -> None:
    cfg = archive()
    assert not cfg.duckdb.exists()
    result = capacity.run_report(cfg, AS_OF)
    summary = json.loads((Path(cfg.reports.root) / "capacity" / "latest" / "summary.json").read_text())
    assert summary["forecast"]["status"] == "not_enough_history"
    assert summary["catalogue"]["bytes"] == 0 and result["summary"]["online_utilisation_pct"] is None


# ---------------------------------------------------------------------------------------------
# settings, CLI
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("capacity_raw", "message"), [
    ({"online_byte": "1 TB"}, "unknown key"),
    ({"date_basis": "content_date"}, "date_basis"),
    ({"price_per_gb_month": {"online": -1}}, "price_per_gb_month.online"),
    ({"price_per_gb_month": {"nearline": 1}}, "price_per_gb_month"),
    ({"forecast_months": 0}, "forecast_months"),
    ({"source": "replica"}, "source"),
    ({"offline_bytes": "lots"}, "offline_bytes"),
])
def test_bad_settings_name_the_key(archive: Callable[..., Any], capacity_raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):  # at load, before any report runs
        archive(capacity=capacity_raw)


def test_run_as_of_uses_run_after_for_asset_triggered_runs() -> None:
    logical = dt.datetime(2025, 7, 1, tzinfo=UTC)
    after = dt.datetime(2025, 7, 1, 14, 30, tzinfo=UTC)
    assert capacity.run_as_of(logical, after) == logical
    assert capacity.run_as_of(None, after) == after
    with pytest.raises(capacity.ReportError):
        capacity.run_as_of(None, None)


def test_cli_report(small: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from pacs.cli import main

    out = tmp_path / "elsewhere"
    assert main(["report", "--config", str(small.path), "--date", "2025-07-01", "--out-location", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Capacity report 2025-07-01" in text and "forecast: ok" in text
    assert (out / "capacity" / "2025-07-01" / "report.html").is_file()
    assert json.loads((out / "capacity" / "latest" / "summary.json").read_text())["report_date"] == "2025-07-01"


# ---------------------------------------------------------------------------------------------
# the HTML report in headless Chromium
# ---------------------------------------------------------------------------------------------

def _near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> int:
    return int((np.abs(pixels[..., :3].astype(int) - np.array(rgb)).sum(axis=-1) < tol).sum())


def test_html_report_renders_charts_in_headless_chromium(written: tuple[Any, dict[str, Any]], tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    from PIL import Image

    small, _ = written
    html = Path(small.reports.root) / "capacity" / "2025-07-01" / "report.html"
    png = tmp_path / "report.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium'}", f"--screenshot={png}", "--window-size=1200,2000",
           f"file://{html}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1200)
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    colours = len(np.unique(packed))
    non_white = float((pixels.sum(axis=-1) < 740).mean())
    assert colours > 200, colours
    assert non_white > 0.03, non_white
    # The charts themselves: the online tier's bar and forecast line (#1f6feb), the offline
    # tier's bar (#2a9d8f) and the forecast band are drawn, not just text.
    assert _near(pixels, (0x1F, 0x6F, 0xEB)) > 2000
    assert _near(pixels, (0x2A, 0x9D, 0x8F)) > 500
    shutil.rmtree(tmp_path / "chromium", ignore_errors=True)
