"""Human approval of lifecycle plans (policy ``approve_plan``), answered through Airflow's REST API.

A real ``airflow api-server`` (simple auth manager: a user with a password, a JWT from
``POST /auth/token``) shares the session's metadata DB. ``dag.test()`` runs ``pacs_lifecycle`` in
this process and, like the scheduler, leaves the approval task waiting (``awaiting_input``) until
a response is recorded; a thread answers it the way an operator's script does:

- ``GET /api/v2/dags/pacs_lifecycle/dagRuns/~/hitlDetails`` — the waiting question, with the
  plan's summary in its subject and body;
- ``PATCH /api/v2/dags/pacs_lifecycle/dagRuns/<run_id>/taskInstances/approve/-1/hitlDetails``
  with ``{"chosen_options": ["Approve"]}`` (or ``["Reject"]``).

Expected results are computed from the catalogue's study dates, not from the plan.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT
from helpers import query as _q

from pacs import synth
from pacs.intake import run_ingest

pytestmark = pytest.mark.slow

USER, PASSWORD = "approver", "approver-test-password"
CUTOFF_YEARS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """The REST API of one api-server, with a bearer token from ``POST /auth/token``."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""

    def login(self) -> None:
        body = json.dumps({"username": USER, "password": PASSWORD}).encode()
        req = urllib.request.Request(f"{self.base}/auth/token", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            self.token = json.loads(resp.read())["access_token"]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(f"{self.base}/api/v2{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())


@pytest.fixture(scope="module")
def api(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """``airflow api-server`` (core API only) on a free port of 127.0.0.1, with one user."""
    folder = tmp_path_factory.mktemp("api-server")
    passwords = folder / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)}
    log = (folder / "api-server.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "api-server", "-H", "127.0.0.1",
                             "-p", str(port), "--apps", "core", "-w", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    client = Api(f"http://127.0.0.1:{port}")
    try:
        started = time.monotonic()
        while True:
            try:
                client.login()
                break
            except (OSError, urllib.error.URLError):
                if proc.poll() is not None or time.monotonic() - started > 120:
                    raise RuntimeError("the api-server did not start: "
                                       + (folder / "api-server.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        yield client
    finally:
        os.killpg(proc.pid, 15)  # the process group this fixture started (uvicorn and its worker)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        log.close()


class Approver(threading.Thread):
    """Answers the approval question of the DAG run at one logical date through the REST API.

    ``answer=None``: no question is expected; one that comes anyway is recorded and rejected, so
    the run cannot wait forever.
    """

    def __init__(self, api: Api, day: dt.datetime, answer: str | None, dag_id: str = "pacs_lifecycle") -> None:
        super().__init__(daemon=True)
        self.api, self.day, self.answer, self.dag_id = api, day, answer, dag_id
        self.asked: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                details = self.api.call("GET", f"/dags/{self.dag_id}/dagRuns/~/hitlDetails")["hitl_details"]
                for d in details:
                    ti = d["task_instance"]
                    at = dt.datetime.fromisoformat(ti["logical_date"]) if ti.get("logical_date") else None
                    if at != self.day or d["response_received"]:
                        continue
                    # Answer only a task that waits: on SQLite Airflow's row locks do nothing, so
                    # an answer recorded before the task is ``awaiting_input`` is lost and the
                    # task waits forever.
                    if ti.get("state") != "awaiting_input":
                        continue
                    self.asked.append(d)
                    run = urllib.parse.quote(ti["dag_run_id"], safe="")
                    self.api.call("PATCH", f"/dags/{self.dag_id}/dagRuns/{run}/taskInstances/{ti['task_id']}/"
                                  f"{ti['map_index']}/hitlDetails",
                                  {"chosen_options": [self.answer or "Reject"], "params_input": {}})
            except Exception as exc:  # noqa: BLE001 - kept for the test to report
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.done.wait(0.5)


RUN_TIMEOUT = 300.0  # seconds: a run still waiting then is failed, so the test fails instead of hanging


def _fail_waiting(day: dt.datetime, approver: Approver) -> None:
    """Fail the run's tasks that still wait, so ``dag.test()`` returns and the test reports it."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    waiting = (TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED)
    with create_session() as session:
        tis = (session.query(TaskInstance).join(DagRun, (DagRun.dag_id == TaskInstance.dag_id)
                                                & (DagRun.run_id == TaskInstance.run_id))
               .filter(TaskInstance.dag_id == approver.dag_id, DagRun.logical_date == day,
                       TaskInstance.state.in_(waiting)).all())
        for ti in tis:
            ti.state = TaskInstanceState.FAILED
    approver.errors.append(f"the run was still waiting after {RUN_TIMEOUT:.0f} s: "
                           f"{sorted(t.task_id for t in tis)} failed by the test")


def _dag(dag_id: str = "pacs_lifecycle") -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def _run(api: Api, day: dt.datetime, answer: str | None, conf: dict[str, Any] | None = None,
         dag_id: str = "pacs_lifecycle") -> tuple[Any, dict[str, str], Approver]:
    """One run of ``dag_id`` at ``day``, its approval (if asked) answered with ``answer``."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    approver = Approver(api, day, answer, dag_id)
    approver.start()
    watchdog = threading.Timer(RUN_TIMEOUT, _fail_waiting, (day, approver))
    watchdog.daemon = True
    watchdog.start()
    try:
        dr = _dag(dag_id).test(logical_date=day, run_conf=conf)
    finally:
        watchdog.cancel()
        approver.done.set()
        approver.join(10)
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dr.dag_id,
                                                 TaskInstance.run_id == dr.run_id).all()
        states = {t.task_id if t.map_index < 0 else f"{t.task_id}[{t.map_index}]": str(t.state) for t in tis}
    assert not approver.errors, approver.errors
    return dr, states, approver


@pytest.fixture
def hospital(archive, airflow_db, monkeypatch: pytest.MonkeyPatch):
    """A small archive of 2020–2025 studies, all catalogued online; offline is a local folder."""

    def make(approve_plan: bool) -> Any:
        cfg = archive(policy={"online_retention_years": CUTOFF_YEARS, "approve_plan": approve_plan})
        synth.generate_archive(Path(cfg.landing[0].root), seed=41, patients=4, start=dt.date(2020, 1, 1),
                               end=dt.date(2025, 12, 31), count_scale=0.03, size_scale=0.03)
        run_ingest(cfg)
        monkeypatch.setenv("PACS_CONFIG", str(cfg.path))
        return cfg

    return make


def _due(cfg: Any, day: dt.datetime) -> tuple[set[str], int, int]:
    """The studies older than the retention at ``day``, their images and bytes (from the study dates)."""
    cutoff = day.date().replace(year=day.year - CUTOFF_YEARS)
    rows = _q(cfg, "SELECT study_instance_uid, image_count, size_bytes FROM study WHERE study_date < $c",
              {"c": cutoff})
    return {u for u, _, _ in rows}, sum(i for _, i, _ in rows), sum(b for _, _, b in rows)


def _decimal(n: int) -> str:
    """Bytes as the README states sizes: decimal units, two decimals."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _offline(cfg: Any) -> set[str]:
    return {u for (u,) in _q(cfg, "SELECT study_instance_uid FROM study WHERE tier_state = 'offline'")}


def test_an_approved_plan_moves_after_the_answer_that_shows_its_studies_bytes_and_rules(hospital, api) -> None:
    cfg = hospital(approve_plan=True)
    day = dt.datetime(2026, 7, 1, 3, 0, tzinfo=dt.UTC)
    due, due_images, due_bytes = _due(cfg, day)
    everything = _q(cfg, "SELECT count(*) FROM study")[0][0]
    assert due and len(due) < everything

    dr, states, approver = _run(api, day, "Approve")

    assert str(dr.state) == "success", states
    assert len(approver.asked) == 1, "the run was not waiting for exactly one approval"
    question = approver.asked[0]
    assert question["task_instance"]["task_id"] == "approve" and question["options"] == ["Approve", "Reject"]
    assert f"{everything} studies" in question["subject"]  # every study: the old ones move, all get an offline copy
    body = question["body"]
    assert f"| retention | {len(due)} | {due_images} | {_decimal(due_bytes)} |" in body, body
    assert f"| archive_copy | {everything - len(due)} |" in body, body
    assert states["approve"] == "success" and states["discard"] == "skipped", states
    assert states["batches"] == "success" and states["switch"] == "success", states
    assert all(v == "success" for k, v in states.items() if k.startswith("migrate[")), states
    assert _offline(cfg) == due
    answered = api.call("GET", f"/dags/pacs_lifecycle/dagRuns/{urllib.parse.quote(dr.run_id, safe='')}"
                        "/taskInstances/approve/-1/hitlDetails")
    assert answered["chosen_options"] == ["Approve"] and answered["responded_by_user"]["name"] == USER


def test_a_rejected_plan_moves_nothing_and_is_recorded_as_rejected(hospital, api) -> None:
    cfg = hospital(approve_plan=True)
    online_files = {u for (u,) in _q(cfg, "SELECT online_uri FROM image")}
    assert all(Path(u).is_file() for u in online_files)

    dr, states, approver = _run(api, dt.datetime(2026, 7, 2, 3, 0, tzinfo=dt.UTC), "Reject")

    assert str(dr.state) == "success", states
    assert len(approver.asked) == 1
    assert states["approve"] == "success" and states["discard"] == "success", states
    assert {states["batches"], states["switch"]} == {"skipped"}, states
    assert all(v == "skipped" for k, v in states.items() if k.startswith("migrate")), states
    assert _q(cfg, "SELECT DISTINCT tier_state FROM study") == [("online",)]
    assert _q(cfg, "SELECT count(*) FROM image WHERE offline_uri IS NOT NULL OR online_uri IS NULL")[0][0] == 0
    assert {u for (u,) in _q(cfg, "SELECT online_uri FROM image")} == online_files
    assert all(Path(u).is_file() for u in online_files), "a rejected plan deleted online files"
    offline = Path(cfg.offline.root)
    assert not offline.exists() or not [p for p in offline.rglob("*") if p.is_file()], "something was copied"
    assert _q(cfg, "SELECT state FROM lifecycle_run") == [("rejected",)]
    assert _q(cfg, "SELECT DISTINCT state FROM lifecycle_plan") == [("rejected",)]
    from pacs.tiers.lifecycle import reject_plan

    (plan_id,) = _q(cfg, "SELECT plan_id FROM lifecycle_run")[0]
    assert reject_plan(cfg, plan_id)["studies_released"] == 0  # run again (a retry): nothing left to reject
    assert _q(cfg, "SELECT DISTINCT tier_state FROM study") == [("online",)]


def test_without_approve_plan_nothing_waits_and_the_plan_moves(hospital, api) -> None:
    cfg = hospital(approve_plan=False)
    day = dt.datetime(2026, 7, 3, 3, 0, tzinfo=dt.UTC)
    due, _, _ = _due(cfg, day)

    dr, states, approver = _run(api, day, None)

    assert approver.asked == [], "a run without approve_plan asked for an approval"
    assert str(dr.state) == "success", states
    assert states["approve"] == "skipped" and states["discard"] == "skipped", states
    assert states["switch"] == "success"
    assert _offline(cfg) == due


def test_a_dry_run_stops_after_the_plan_even_with_approve_plan(hospital, api) -> None:
    cfg = hospital(approve_plan=True)

    dr, states, approver = _run(api, dt.datetime(2026, 7, 4, 3, 0, tzinfo=dt.UTC), None, {"dry_run": True})

    assert approver.asked == [], "a dry run asked for an approval"
    assert str(dr.state) == "success", states
    assert states["approve"] == "skipped" and states["discard"] == "skipped", states
    assert _q(cfg, "SELECT DISTINCT tier_state FROM study") == [("online",)]
    assert _q(cfg, "SELECT dry_run, state FROM lifecycle_run") == [(True, "planned")]


def test_approve_plan_is_a_validated_policy_key() -> None:
    from pacs.errors import PolicyError
    from pacs.tiers.policy import parse_policy

    assert parse_policy(None).approve_plan is False and parse_policy({"approve_plan": True}).approve_plan is True
    with pytest.raises(PolicyError, match=r"policy\.approve_plan: expected true or false"):
        parse_policy({"approve_plan": "yes"})


@pytest.mark.parametrize("answer", ["Approve", "Reject"])
def test_a_purge_plan_waits_for_its_approver_and_a_rejected_one_deletes_nothing(hospital, api, answer: str) -> None:
    """``pacs_purge`` with ``approve_plan``: the question shows the instances and bytes by reason;
    Approve deletes them, Reject deletes nothing and records the plan as rejected."""
    from pacs.admin import reject

    cfg = hospital(approve_plan=True)
    study, images, nbytes = _q(cfg, "SELECT study_instance_uid, image_count, size_bytes FROM study "
                                    "ORDER BY study_instance_uid LIMIT 1")[0]
    reject(cfg, study=study, code="113039", reason="test", run_id="reject")
    files = {u for (u,) in _q(cfg, "SELECT online_uri FROM image WHERE study_instance_uid = $s", {"s": study})}
    assert files and all(Path(u).is_file() for u in files)
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    day = dt.datetime(2026, 7, 5 if answer == "Approve" else 6, 3, 0, tzinfo=dt.UTC)
    dr, states, approver = _run(api, day, answer, {"rejected_before": tomorrow}, dag_id="pacs_purge")
    assert str(dr.state) == "success", states
    (asked,) = approver.asked
    text = asked["subject"] + asked["body"]
    assert f"{images} instances" in text and "rejected:113039" in text and _decimal(nbytes) in text, text
    if answer == "Approve":
        assert states["purge"] == "success" and states["discard"] == "skipped"
        assert not any(Path(u).exists() for u in files)
        assert _q(cfg, "SELECT count(*) FROM deletion") == [(images,)]
    else:
        assert states["purge"] == "skipped" and states["discard"] == "success"
        assert all(Path(u).is_file() for u in files)
        assert _q(cfg, "SELECT count(*) FROM deletion") == [(0,)]
        assert _q(cfg, "SELECT state FROM purge_run") == [("rejected",)]
