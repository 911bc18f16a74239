"""``pacs_capacity_report``: integrity (schedule, pool, Asset, retries) and end-to-end runs through Airflow.

The end-to-end runs use ``dag.test()`` on the session's SQLite metadata DB (the ``airflow_db``
fixture) over a catalogue filled by a real intake pass of synthetic files.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import write_config

from pacs import intake, synth
from pacs.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "pacs_capacity_report"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    errors = {k: v for k, v in bag.import_errors.items() if k.endswith("pacs_capacity_report.py")}
    assert not errors, errors
    return bag.dags[DAG_ID]


def test_schedule_is_daily_or_on_catalogue_update(dag: Any) -> None:
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    from pacs.dagkit import CATALOGUE

    timetable = dag.timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert isinstance(timetable.timetable, CronTriggerTimetable)
    assert timetable.timetable.expression == "0 0 * * *"
    assert [a.name for a in timetable.asset_condition.objects] == [CATALOGUE.name]


def test_tags_retries_pool_and_outlet(dag: Any) -> None:
    from pacs.dagkit import POOL, REPORT

    assert {"pacs", "capacity"} <= set(dag.tags)
    assert dag.doc_md and "asset-or-time" in dag.doc_md
    assert dag.max_active_runs == 1 and dag.catchup is False
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"extract", "report"}
    assert all(t.retries == 3 for t in tasks.values())
    assert tasks["extract"].pool == POOL  # the catalogue read never overlaps the merge
    assert tasks["report"].pool != POOL
    assert [o.uri for o in tasks["report"].outlets] == [REPORT.uri]


@pytest.fixture(scope="module")
def capacity_env(tmp_path_factory: pytest.TempPathFactory, airflow_db: Path) -> Iterator[Any]:
    """A catalogue from a real intake pass, named by PACS_CONFIG for the DAG's tasks."""
    cfg = load_config(write_config(
        tmp_path_factory.mktemp("capacity") / "archive",
        capacity={"online_bytes": "1 MB", "price_per_gb_month": {"online": 0.1, "offline": 0.01}},
        policy={"online_retention_years": 3, "watermarks": {"high": 0.85, "low": 0.75}}))
    synth.generate_archive(cfg.landing[0].root, seed=5, patients=8, size_scale=0.02, count_scale=0.01)
    intake.run_ingest(cfg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PACS_CONFIG", str(cfg.path))
        yield cfg


def _report_event(run_id: str) -> dict[str, Any]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        event = session.query(AssetEvent).filter(AssetEvent.source_run_id == run_id).one()
        return dict(event.extra)


def test_scheduled_run_end_to_end(dag: Any, capacity_env: Any) -> None:
    cfg = capacity_env
    logical = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    dr = dag.test(logical_date=logical)
    assert str(dr.state) == "success"
    folder = Path(cfg.reports.root) / "capacity" / "2026-03-01"
    for name in ("report.html", "summary.json", "volume_daily.csv", "volume_monthly.parquet", "forecast_daily.csv",
                 "what_if_retention.parquet", "cost.csv", "growth.parquet", "tier_utilisation.csv"):
        assert (folder / name).is_file(), name
        assert (folder.parent / "latest" / name).is_file(), name
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["as_of"] == "2026-03-01T00:00:00+00:00"
    images = summary["catalogue"]["images"]
    assert images > 0 and summary["tiers"]["online"]["bytes"] > 0
    assert summary["tiers"]["online"]["utilisation_pct"] > 0
    extra = _report_event(dr.run_id)
    assert extra["report_date"] == "2026-03-01" and extra["images"] == images
    assert not list((Path(cfg.work.root) / "capacity" / "extract").glob("*"))  # the staging is cleaned up


def test_asset_triggered_run_reports_at_run_after(dag: Any, capacity_env: Any) -> None:
    """An asset-triggered run has no logical date: the report is computed at run_after."""
    cfg = capacity_env
    after = dt.datetime(2026, 3, 2, 14, 30, tzinfo=dt.UTC)
    dr = dag.test(run_after=after, logical_date=None)
    assert str(dr.state) == "success"
    summary = json.loads((Path(cfg.reports.root) / "capacity" / "2026-03-02" / "summary.json").read_text())
    assert summary["as_of"] == after.isoformat()
    assert summary["history_through"] == "2026-03-01"
