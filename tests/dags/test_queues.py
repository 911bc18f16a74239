"""Queue routing: every task that opens the DuckDB catalogue runs on the Celery queue ``catalogue``.

With CeleryExecutor only the workers that can reach the DuckDB file consume that queue; every
other task stays on the default queue, so intake's ``process`` and lifecycle's ``migrate`` spread
over all workers. The tasks that open the catalogue were found by reading each task's body (and
the package functions it calls): they are exactly the tasks of the one-slot pool
``pacs_catalogue``, writers and read-only readers (capacity ``extract``) alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from helpers import ROOT

CATALOGUE_TASKS = {
    "pacs_ingest": {"resubmit", "merge"},
    "pacs_lifecycle": {"plan", "switch", "discard"},
    "pacs_recall": {"recall"},
    "pacs_fixity": {"plan", "record"},
    "pacs_capacity_report": {"extract"},
    "pacs_admin": {"correct"},
    "pacs_purge": {"plan", "purge", "discard"},
    "pacs_backup": {"backup"},
    "pacs_export": {"select"},
}


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return {d: bag.dags[d] for d in CATALOGUE_TASKS}


def test_the_catalogue_pool_and_the_catalogue_queue_hold_the_same_tasks(dags: dict[str, Any]) -> None:
    from airflow.configuration import conf

    default_queue = conf.get("operators", "default_queue")
    for dag_id, dag in dags.items():
        for t in dag.tasks:
            in_pool, on_queue = t.pool == "pacs_catalogue", t.queue == "catalogue"
            assert in_pool == on_queue, f"{dag_id}.{t.task_id}: pool {t.pool}, queue {t.queue}"
            if not on_queue:
                assert t.queue == default_queue, f"{dag_id}.{t.task_id} is on queue {t.queue}"
        on_catalogue = {t.task_id for t in dag.tasks if t.queue == "catalogue"}
        assert on_catalogue == CATALOGUE_TASKS[dag_id], f"{dag_id}: {on_catalogue}"


def test_the_tasks_that_do_not_open_the_catalogue_stay_on_the_default_queue(dags: dict[str, Any]) -> None:
    for dag_id, task_id in [("pacs_ingest", "sweep"), ("pacs_ingest", "process"), ("pacs_lifecycle", "migrate"),
                            ("pacs_lifecycle", "approve"), ("pacs_fixity", "verify"),
                            ("pacs_fixity", "reconcile"), ("pacs_capacity_report", "report")]:
        assert dags[dag_id].task_dict[task_id].queue != "catalogue", f"{dag_id}.{task_id}"


_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({d: sorted({t.queue for t in bag.dags[d].tasks if t.pool == "pacs_catalogue"}) for d in bag.dag_ids}))
"""


def test_the_queue_name_follows_pacs_catalogue_queue() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"), "PACS_CATALOGUE_QUEUE": "pacs-duckdb-host"}
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT / "dags")], capture_output=True, text=True,
                          env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    queues = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {d: queues[d] for d in CATALOGUE_TASKS} == {d: ["pacs-duckdb-host"] for d in CATALOGUE_TASKS}
