"""Deletion through Airflow: the ``pacs_purge`` DAG (``dag.test()``) on a real archive.

A dry-run run records its plan and deletes nothing (``purge`` returns the plan); a real run
deletes exactly the rejected instances' files, writes one ``deletion`` row per copy under the
run's plan, and leaves ``pacs check`` clean; a bad date is refused by the params' schema, and a
run with no criterion fails at once (a terminal error is not retried) and changes nothing.
Without ``approve_plan`` the approval is skipped.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT
from helpers import query as _q

from pacs import synth
from pacs.admin import reject
from pacs.catalogue.checks import check
from pacs.intake import run_ingest

pytestmark = pytest.mark.slow

DAY = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)
TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()


def _dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["pacs_purge"]


def _states(dr: Any) -> dict[str, tuple[str, int]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dr.dag_id,
                                                 TaskInstance.run_id == dr.run_id).all()
        return {t.task_id: (str(t.state), t.try_number) for t in tis}


def test_dry_run_then_purge_run_delete_the_rejected_instances(archive, airflow_db, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = archive()
    monkeypatch.setenv("PACS_CONFIG", str(cfg.path))
    synth.generate_ct_slices(Path(cfg.landing[0].root) / "ct", 12, per_series=6, rows=16, columns=16)
    run_ingest(cfg)
    series = _q(cfg, "SELECT series_instance_uid FROM series ORDER BY 1")[0][0]
    reject(cfg, series=series, code="113037", reason="test", run_id="reject")
    files = dict(_q(cfg, f"SELECT sop_instance_uid, online_uri FROM image WHERE series_instance_uid = '{series}'"))
    assert len(files) == 6

    dry = _dag().test(logical_date=DAY, run_conf={"rejected_before": TOMORROW, "dry_run": True})
    assert str(dry.state) == "success"
    states = _states(dry)
    assert states["approve"][0] == "skipped" and states["discard"][0] == "skipped"
    assert all(Path(f).exists() for f in files.values())
    assert _q(cfg, "SELECT state, instances FROM purge_run") == [("dry_run", 6)]

    dr = _dag().test(logical_date=DAY + dt.timedelta(minutes=1), run_conf={"rejected_before": TOMORROW})
    assert str(dr.state) == "success", _states(dr)
    assert not any(Path(f).exists() for f in files.values())
    assert _q(cfg, "SELECT count(*) FROM image WHERE series_instance_uid = $s", {"s": series}) == [(0,)]
    assert sorted(_q(cfg, "SELECT sop_instance_uid, tier, why FROM deletion")) == sorted(
        (s, "online", "rejected:113037") for s in files)
    assert check(cfg) == []
    assert _q(cfg, "SELECT count(*) FROM image") == [(6,)]

    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="rejected_before"):  # the trigger form refuses it too
        _dag().test(logical_date=DAY + dt.timedelta(minutes=2), run_conf={"rejected_before": "last week"})
    none = _dag().test(logical_date=DAY + dt.timedelta(minutes=3), run_conf={})
    assert str(none.state) == "failed"
    assert _states(none)["plan"] == ("failed", 1), "a purge with no criterion is a mistake: not retried"
    assert _q(cfg, "SELECT count(*) FROM purge_run") == [(2,)]
