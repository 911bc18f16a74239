"""The tier DAGs through Airflow (``dag.test()``), with the offline tier on moto's S3 server.

Decisions use the run's logical date: the runs below pass a fixed one.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import query as _q

from pacs import synth
from pacs.intake import run_ingest

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)

pytestmark = pytest.mark.slow


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]



def _task_states(dr: Any) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dr.dag_id,
                                                 TaskInstance.run_id == dr.run_id).all()
        return {f"{t.task_id}[{t.map_index}]": str(t.state) for t in tis}


@pytest.fixture
def tiered(archive, airflow_db, s3, monkeypatch: pytest.MonkeyPatch):
    from helpers import s3fs_for

    s3fs_for(s3).mkdir("pacs-offline")
    cfg = archive(offline="s3://pacs-offline/archive", policy={"online_retention_years": 3})
    synth.generate_archive(Path(cfg.landing[0].root), seed=31, patients=6, start=dt.date(2020, 1, 1),
                           end=dt.date(2025, 12, 31), count_scale=0.03, size_scale=0.04)
    run_ingest(cfg)
    monkeypatch.setenv("PACS_CONFIG", str(cfg.path))
    return cfg


def test_lifecycle_dry_run_then_run_then_recall(tiered) -> None:
    cfg = tiered
    dr = _dag("pacs_lifecycle").test(logical_date=DAY, run_conf={"dry_run": True})
    assert str(dr.state) == "success", _task_states(dr)
    assert _q(cfg, "SELECT count(*) FROM study WHERE tier_state <> 'online'")[0][0] == 0
    (dry,) = _q(cfg, "SELECT dry_run FROM lifecycle_run")[0]
    assert dry is True
    planned = _q(cfg, "SELECT count(*) FROM lifecycle_plan WHERE state = 'dry_run' AND evict")[0][0]
    assert planned > 0

    dr = _dag("pacs_lifecycle").test(logical_date=DAY + dt.timedelta(minutes=1))  # a fresh DAG: default params
    assert str(dr.state) == "success", _task_states(dr)
    cutoff = dt.date(2023, 6, 1)
    assert {u for (u,) in _q(cfg, "SELECT study_instance_uid FROM study WHERE tier_state = 'offline'")} == \
        {u for (u,) in _q(cfg, "SELECT study_instance_uid FROM study WHERE study_date < $c", {"c": cutoff})}
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        event = session.query(AssetEvent).filter(AssetEvent.source_run_id == dr.run_id).one()
        assert event.extra["lifecycle"]["studies_moved_offline"] == planned

    study = _q(cfg, "SELECT study_instance_uid FROM study WHERE tier_state = 'offline' LIMIT 1")[0][0]
    dr = _dag("pacs_recall").test(logical_date=DAY + dt.timedelta(minutes=2),
                                  run_conf={"study_uids": [study], "pin_until": "2026-09-01"})
    assert str(dr.state) == "success", _task_states(dr)
    assert _q(cfg, "SELECT tier_state, pinned_until FROM study WHERE study_instance_uid = $s", {"s": study})[0] == \
        ("online", dt.date(2026, 9, 1))


def test_fixity_fails_visibly_and_alerts(tiered) -> None:
    cfg = tiered
    dag = _dag("pacs_fixity")
    dr = dag.test(logical_date=DAY)
    assert str(dr.state) == "success", _task_states(dr)
    uri = _q(cfg, "SELECT online_uri FROM image WHERE online_uri IS NOT NULL LIMIT 1")[0][0]
    Path(uri).write_bytes(b"damaged")
    dr = dag.test(logical_date=DAY + dt.timedelta(days=7))
    assert str(dr.state) == "failed"
    states = _task_states(dr)
    assert states["record[-1]"] == "failed"
    (kind, repaired) = _q(cfg, "SELECT kind, repaired_at FROM fixity_finding WHERE uri = $u", {"u": uri})[0]
    assert kind == "corrupt" and repaired is None  # no offline copy yet: cannot be repaired
    alerts = list(Path(cfg.reports.root).glob("alerts/*/pacs_fixity.record.*.json"))
    assert alerts, "the failure callback recorded no alert"
    alert = json.loads(alerts[0].read_text())
    assert "missing or corrupt" in alert["error"] and alert["dag_id"] == "pacs_fixity"
