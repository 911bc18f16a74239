"""Deadline Alerts: a run not finished in time raises the same alert as a failed task.

``pacs_ingest`` alerts when a run is not finished ``PACS_INGEST_DEADLINE_MINUTES`` after it was
queued; ``pacs_lifecycle`` when a run is not done by ``PACS_LIFECYCLE_DEADLINE_HOUR`` (UTC) of its
day. Proven at three depths, each through Airflow's own code:

1. the parsed DAGs carry the configured deadline (reference, interval, callback);
2. a triggered run gets its ``deadline`` row at the configured time, and the callback, run the
   way the executor runs it (Airflow's ``execute_callback`` on the data the scheduler's
   ``Deadline.handle_miss`` stored), writes the alert record;
3. a real ``airflow scheduler`` (LocalExecutor) finds a run past a one-second deadline and the
   alert record appears.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import ROOT

SECRET = "conf-value-never-in-an-alert"


def _bag(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    """The DAGs parsed with these environment variables (and no others of the deadline kind)."""
    from airflow.dag_processing.dagbag import DagBag

    for name in ("PACS_INGEST_DEADLINE_MINUTES", "PACS_LIFECYCLE_DEADLINE_HOUR", "PACS_LIFECYCLE_SCHEDULE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return DagBag(dag_folder=str(ROOT / "dags"))


def _deadline(bag: Any, dag_id: str) -> Any:
    assert not bag.import_errors, bag.import_errors
    alerts = bag.dags[dag_id].deadline
    assert alerts is not None and len(alerts) == 1, alerts
    return alerts[0]


def test_the_dags_carry_the_configured_deadlines_with_the_alert_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import DeadlineReference, SyncCallback

    bag = _bag(monkeypatch, PACS_INGEST_DEADLINE_MINUTES="45", PACS_LIFECYCLE_DEADLINE_HOUR="7")
    ingest, lifecycle = _deadline(bag, "pacs_ingest"), _deadline(bag, "pacs_lifecycle")
    assert ingest.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert ingest.interval == dt.timedelta(minutes=45)
    assert lifecycle.reference == DeadlineReference.DAGRUN_LOGICAL_DATE
    assert lifecycle.interval == dt.timedelta(hours=5)  # the 02:00 UTC schedule, done by 07:00
    for alert in (ingest, lifecycle):
        assert isinstance(alert.callback, SyncCallback)  # run by the executor, like a task
        assert alert.callback.path == "pacs.alerts.on_deadline_missed"
    assert "45 minutes" in ingest.callback.kwargs["expected"]
    assert "07:00 UTC" in lifecycle.callback.kwargs["expected"]
    for dag_id in ("pacs_recall", "pacs_fixity", "pacs_capacity_report"):
        assert not bag.dags[dag_id].deadline, f"{dag_id} has a deadline nobody asked for"


def test_deadline_defaults_another_schedule_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = _bag(monkeypatch)
    assert _deadline(bag, "pacs_ingest").interval == dt.timedelta(minutes=60)
    assert _deadline(bag, "pacs_lifecycle").interval == dt.timedelta(hours=4)  # 02:00 → 06:00

    bag = _bag(monkeypatch, PACS_LIFECYCLE_SCHEDULE="30 22 * * *", PACS_LIFECYCLE_DEADLINE_HOUR="6")
    assert _deadline(bag, "pacs_lifecycle").interval == dt.timedelta(hours=7, minutes=30)  # next morning

    bag = _bag(monkeypatch, PACS_INGEST_DEADLINE_MINUTES="off", PACS_LIFECYCLE_DEADLINE_HOUR="off")
    assert not bag.import_errors
    assert not bag.dags["pacs_ingest"].deadline and not bag.dags["pacs_lifecycle"].deadline


def test_a_bad_deadline_value_fails_the_parse_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = _bag(monkeypatch, PACS_INGEST_DEADLINE_MINUTES="soon", PACS_LIFECYCLE_DEADLINE_HOUR="25")
    errors = {Path(f).name: e for f, e in bag.import_errors.items()}
    assert "PACS_INGEST_DEADLINE_MINUTES='soon'" in errors["pacs_ingest.py"]
    assert "PACS_LIFECYCLE_DEADLINE_HOUR='25'" in errors["pacs_lifecycle.py"]


# ── through Airflow's metadata DB ───────────────────────────────────────────────────────────────
def _sync_dags(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialize the DAGs into the metadata DB, as the DAG processor does (the deadline is read now)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    # the DAG processor writes a DAG at most every 30 s; the tests change it faster than that
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")
    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        assert not bag.import_errors, bag.import_errors
        sync_bag_to_db(bag, bundle.name, bundle.version)


def _trigger(dag_id: str, **kwargs: Any) -> Any:
    """A run created the way the REST API and ``airflow dags trigger`` create one (state queued)."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    return trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.TEST, **kwargs)


def _deadlines(run_id: str) -> list[Any]:
    from airflow.models.dagrun import DagRun
    from airflow.models.deadline import Deadline
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(Deadline).join(DagRun).filter(DagRun.run_id == run_id).all()
        session.expunge_all()
        return rows


def _delete_run(run_id: str) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for dr in session.query(DagRun).filter(DagRun.run_id == run_id):
            session.delete(dr)  # its deadlines and callbacks go with it


def _alert_of(cfg: Any, run_id: str) -> dict[str, Any] | None:
    for path in Path(cfg.reports.root).glob("alerts/*/*.json"):
        record = json.loads(path.read_text())
        if record.get("run_id") == run_id:
            assert SECRET not in path.read_text(), "a run's conf reached the alert"
            return record
    return None


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A chat/incident webhook on 127.0.0.1 (``PACS_ALERT_WEBHOOK``); yields what it received."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Webhook)
    _Webhook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PACS_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/alerts")
    yield _Webhook.received
    server.shutdown()
    server.server_close()


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_run_gets_its_deadline_and_the_callback_records_the_alert(archive, airflow_db, monkeypatch,
                                                                     webhook: list[dict[str, Any]]) -> None:
    import structlog
    from airflow.models.callback import Callback
    from airflow.models.deadline import Deadline
    from airflow.sdk.execution_time.callback_supervisor import execute_callback
    from airflow.utils.session import create_session

    cfg = archive()
    monkeypatch.setenv("PACS_CONFIG", str(cfg.path))
    monkeypatch.setenv("PACS_INGEST_DEADLINE_MINUTES", "30")
    monkeypatch.setenv("PACS_LIFECYCLE_DEADLINE_HOUR", "5")
    _sync_dags(monkeypatch)
    ingest = _trigger("pacs_ingest", conf={"resubmit_ids": [SECRET]})
    day = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
    lifecycle = _trigger("pacs_lifecycle", logical_date=day)
    try:
        (deadline,) = _deadlines(ingest.run_id)
        assert deadline.deadline_time - ingest.queued_at == dt.timedelta(minutes=30)
        assert [d.deadline_time for d in _deadlines(lifecycle.run_id)] == [day.replace(hour=5)]

        # the scheduler's step when the time has passed: Airflow's own Deadline.handle_miss ...
        with create_session() as session:
            session.get(Deadline, deadline.id).handle_miss(session)
        with create_session() as session:
            data = session.get(Callback, deadline.callback_id).data
        # ... and the executor's: Airflow's own execute_callback on the data it stored
        errors = _Lines()
        logging.getLogger("pacs.alerts").addHandler(errors)
        try:
            ok, error = execute_callback(data["path"], data["kwargs"], Path(""), None, structlog.get_logger())
        finally:
            logging.getLogger("pacs.alerts").removeHandler(errors)
        assert (ok, error) == (True, None)
        alert = _alert_of(cfg, ingest.run_id)
        assert alert is not None, "the deadline callback recorded no alert"
        assert alert["kind"] == "deadline_missed" and alert["dag_id"] == "pacs_ingest"
        assert dt.datetime.fromisoformat(alert["deadline"]) == deadline.deadline_time
        assert "finished within 30 minutes of being queued" in alert["error"]
        assert any(line.startswith("PACS ALERT pacs_ingest.deadline") for line in errors.lines), errors.lines
        assert webhook == [alert], "the webhook did not get the same alert"
    finally:
        _delete_run(ingest.run_id)
        _delete_run(lifecycle.run_id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def paused_dags(airflow_db) -> Iterator[None]:
    """Every DAG paused (a real scheduler starts nothing), their earlier state restored afterwards."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        before = {d.dag_id: d.is_paused for d in session.query(DagModel)}
        session.query(DagModel).update({DagModel.is_paused: True})
    yield
    with create_session() as session:
        for d in session.query(DagModel):
            d.is_paused = before.get(d.dag_id, True)


@pytest.mark.slow
def test_a_real_scheduler_raises_the_alert_when_a_run_misses_its_deadline(archive, airflow_db, monkeypatch,
                                                                          tmp_path: Path, paused_dags) -> None:
    """A queued run of the paused DAG cannot finish; 1.2 s later a real scheduler alerts."""
    from airflow.models.callback import Callback
    from airflow.utils.session import create_session

    cfg = archive()
    monkeypatch.setenv("PACS_CONFIG", str(cfg.path))
    monkeypatch.setenv("PACS_INGEST_DEADLINE_MINUTES", "0.02")
    _sync_dags(monkeypatch)  # a DAG new to the DB starts paused, as in production
    run = _trigger("pacs_ingest", conf={"resubmit_ids": [SECRET]})
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"), "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
           "AIRFLOW__CORE__PARALLELISM": "2", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port())}
    log = (tmp_path / "scheduler.log").open("wb")
    scheduler = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "scheduler"], stdout=log,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        alert, state = None, None
        until = time.monotonic() + 120
        while time.monotonic() < until and (alert is None or state != "success"):
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()[-3000:]
            alert = _alert_of(cfg, run.run_id)
            (deadline,) = _deadlines(run.run_id)
            with create_session() as session:
                state = session.get(Callback, deadline.callback_id).state
            time.sleep(0.5)
        assert alert is not None, "no alert: " + (tmp_path / "scheduler.log").read_text()[-3000:]
        assert deadline.missed and state == "success", (deadline.missed, state)
        assert alert["kind"] == "deadline_missed" and alert["dag_id"] == "pacs_ingest"
        assert "finished within 0.02 minutes of being queued" in alert["error"]
    finally:
        os.killpg(scheduler.pid, signal.SIGTERM)  # the process group this test started
        try:
            scheduler.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(scheduler.pid, signal.SIGKILL)
            scheduler.wait(10)
        log.close()
        _delete_run(run.run_id)
