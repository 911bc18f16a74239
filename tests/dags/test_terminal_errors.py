"""Errors retrying cannot fix fail a task at once, through Airflow; the others are retried.

Every DAG's tasks come from :func:`pacs.dagkit.task`: a terminal error (a configuration
mistake, a recall of a study that is not catalogued) fails the task on its first try with the
one-line message, instead of burning the DAG's retries and their delays.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, task_tries

pytestmark = pytest.mark.slow

UNKNOWN_STUDY = "1.2.826.0.1.3680043.8.498.999999999"


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def test_recall_of_an_unknown_study_fails_in_seconds_naming_it(archive, airflow_db,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = archive()
    monkeypatch.setenv("PACS_CONFIG", str(cfg.path))
    dag = _dag("pacs_recall")
    assert dag.default_args["retries"] >= 1  # it would retry a transient error
    started = time.monotonic()
    dr = dag.test(run_conf={"study_uids": [UNKNOWN_STUDY]})
    elapsed = time.monotonic() - started
    assert str(dr.state) == "failed"
    assert task_tries(dr)["recall"] == ("failed", 1), "a terminal error was retried"
    assert elapsed < dag.default_args["retry_delay"].total_seconds(), f"took {elapsed:.0f}s"
    alerts = list(Path(cfg.reports.root).glob("alerts/*/pacs_recall.recall.*.json"))
    assert alerts, "the failure callback recorded no alert"
    error = json.loads(alerts[0].read_text())["error"]
    assert UNKNOWN_STUDY in error and "no catalogued study" in error


def test_a_configuration_mistake_fails_the_first_task_at_once(tmp_path: Path, airflow_db,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "pacs.yaml"
    bad.write_text(f"landing: [{tmp_path / 'landing'}]\nonline: {tmp_path / 'online'}\n"
                   f"offline: {tmp_path / 'offline'}\nquarantine: {tmp_path / 'q'}\n"
                   f"catalogue: {{duckdb: {tmp_path / 'c.duckdb'}, parquet: {tmp_path / 'pq'}}}\n"
                   "policy: {online_retention_yeras: 3}\n")
    monkeypatch.setenv("PACS_CONFIG", str(bad))
    started = time.monotonic()
    dr = _dag("pacs_ingest").test()
    elapsed = time.monotonic() - started
    assert str(dr.state) == "failed"
    failed = {task: tries for task, (state, tries) in task_tries(dr).items() if state == "failed"}
    assert failed and set(failed.values()) == {1}, task_tries(dr)
    assert elapsed < 30, f"took {elapsed:.0f}s"
