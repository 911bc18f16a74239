"""Synthetic arrival times, after a real intake: ``received_at`` follows the study dates.

The archive is generated with :func:`pacs.synth.generate_archive` and ingested with
:func:`pacs.intake.run_ingest` (the DAG's steps in one process) under the shipped settle rule
(60 s); the expectations are read back from the catalogue with plain SQL.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import query, write_config

from pacs import intake, synth
from pacs.config import load_config
from pacs.synth.arrival import DELAYS


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cfg = load_config(write_config(tmp_path_factory.mktemp("arrival") / "archive", settle_seconds=60,
                                   ingest={"batch_size": 2000, "workers": 2, "fsync": False}))
    synth.generate_archive(cfg.landing[0].root, seed=5, patients=150, start=dt.date(2023, 1, 1),
                           end=dt.date(2025, 12, 31), count_scale=0.01, size_scale=0.02)
    out = intake.run_ingest(cfg)
    assert out["waiting"] == 0 and out["future_dated"] == 0  # past arrival times settle at once
    return cfg


def test_every_image_is_received_after_its_acquisition_mostly_the_same_day(ingested: Any) -> None:
    rows = query(ingested, """
        SELECT st.study_instance_uid, st.study_date, st.study_time, min(i.received_at), max(i.received_at), count(*)
        FROM image i JOIN study st USING (study_instance_uid) GROUP BY ALL""")
    assert len(rows) > 300
    delays = []
    for _, study_date, study_time, first, last, _ in rows:
        acquired = dt.datetime.combine(study_date, dt.time.fromisoformat(study_time[:2] + ":" + study_time[2:4]),
                                       dt.UTC)
        assert acquired < first <= last < acquired + dt.timedelta(weeks=8, hours=2)
        delays.append(first - acquired)
    same_day = sum(1 for (_, study_date, _, first, _, _) in rows if first.astimezone(dt.UTC).date() == study_date)
    assert same_day > 0.7 * len(rows)
    prompt = DELAYS[0][0]
    assert sum(d < dt.timedelta(hours=1) for d in delays) == pytest.approx(prompt * len(rows), rel=0.1)
    assert any(d > dt.timedelta(days=1) for d in delays) and any(d > dt.timedelta(days=14) for d in delays)


def test_received_at_is_spread_over_the_study_days_with_their_rhythm(ingested: Any) -> None:
    images, distinct, days = query(ingested, """
        SELECT count(*), count(DISTINCT received_at), count(DISTINCT CAST(received_at AT TIME ZONE 'UTC' AS DATE))
        FROM image""")[0]
    study_days = query(ingested, "SELECT count(DISTINCT study_date) FROM study")[0][0]
    assert distinct > 0.95 * images  # not one moment for everything
    assert days >= 0.9 * study_days
    by_weekday = collections.Counter(dict(query(ingested, """
        SELECT isodow(CAST(received_at AT TIME ZONE 'UTC' AS DATE)), count(DISTINCT study_instance_uid)
        FROM image GROUP BY ALL""")))
    weekend = (by_weekday[6] + by_weekday[7]) / sum(by_weekday.values())
    assert weekend < 0.2  # a weekday rhythm (uniform would be 2/7)
    by_year = dict(query(ingested, "SELECT year(study_date), count(*) FROM study GROUP BY ALL"))
    assert by_year[2025] > by_year[2023]  # growth


def test_last_hour_queries_find_the_last_hour(ingested: Any) -> None:
    latest, images = query(ingested, "SELECT max(received_at), count(*) FROM image")[0]
    last_hour = query(ingested, "SELECT count(*) FROM image WHERE received_at > $t - INTERVAL 1 HOUR",
                      {"t": latest})[0][0]
    assert 0 < last_hour < 0.05 * images


def test_no_file_arrives_after_it_was_written(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    before = time.time()
    result = synth.generate_archive(tmp_path / "landing", seed=3, patients=20, start=today - dt.timedelta(days=60),
                                    end=today + dt.timedelta(days=30), count_scale=0.01, size_scale=0.02)
    after = time.time()
    mtimes = [os.stat(f.path).st_mtime for f in result.good()]
    assert max(mtimes) <= after
    assert any(before - 1 <= m for m in mtimes)  # studies dated after today arrive when written
