"""pacs.isolate: a step run in a fresh interpreter gives back its result or its error, and dies with the task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import write_config

from pacs import isolate
from pacs.errors import ConfigError, TransientError, is_terminal

ROOT = Path(__file__).resolve().parents[2]

STEPS = textwrap.dedent('''
    import os, pickle, signal, time
    from pacs.errors import ConfigError

    def add(a, b):
        return {"sum": a + b, "pid": os.getpid(), "conn": os.environ.get("AIRFLOW_CONN_PACS_TEST")}

    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")

    def odd():
        raise Odd(1, 2)

    def terminal():
        raise ConfigError("pacs.yaml: online: no such folder; create it")

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def s3_fs(conn_id):
        from pacs.store import Location
        fs = Location.at("offline", "s3://archive/offline", conn_id=conn_id).fs
        return type(fs).__name__, fs.client_kwargs.get("endpoint_url") or fs.endpoint_url

    def linger(pid_file):
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)
''')


@pytest.fixture
def steps(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "isolate_steps.py").write_text(STEPS)
    return {"PYTHONPATH": str(tmp_path)}


def test_step_runs_in_another_process_and_returns_its_result(steps: dict[str, str]) -> None:
    out = isolate.run("isolate_steps:add", env={**steps, "AIRFLOW_CONN_PACS_TEST": "aws://"}, a=2, b=3)
    assert out["sum"] == 5
    assert out["pid"] != os.getpid()
    assert out["conn"] == "aws://"  # the environment given reaches the step


def test_terminal_error_comes_back_as_itself(steps: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="no such folder") as info:
        isolate.run("isolate_steps:terminal", env=steps)
    assert is_terminal(info.value)  # so the task still fails at once, without retries


def test_error_that_cannot_be_pickled_keeps_its_message_and_kind(steps: dict[str, str]) -> None:
    with pytest.raises(TransientError, match="Odd: 1/2") as info:
        isolate.run("isolate_steps:odd", env=steps)
    assert not is_terminal(info.value)


def test_step_killed_is_a_retryable_error_naming_the_signal(steps: dict[str, str]) -> None:
    with pytest.raises(isolate.StepDiedError, match="signal 9") as info:
        isolate.run("isolate_steps:die", env=steps)
    assert not is_terminal(info.value)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_step_dies_with_a_task_killed_by_sigkill(steps: dict[str, str], tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'plugins')!r})\n"
            "from pacs import isolate\n"
            f"isolate.run('isolate_steps:linger', env={steps!r}, pid_file={str(pid_file)!r})\n")
    task = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert _alive(child)
    task.send_signal(signal.SIGKILL)
    task.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the step outlived its task"


def test_connections_already_in_the_environment_are_not_looked_up(tmp_path: Path, monkeypatch) -> None:
    from pacs.config import load_config

    cfg_path = write_config(tmp_path, offline={"url": "s3://archive/offline", "conn_id": "pacs_offline"})
    monkeypatch.setenv("AIRFLOW_CONN_PACS_OFFLINE", '{"conn_type": "aws"}')
    assert isolate.connection_env(load_config(cfg_path)) == {}


def test_step_uses_an_airflow_connection_from_inside_a_task(steps: dict[str, str]) -> None:
    """In a task, Airflow points the metadata DB at a URL that cannot be parsed (tasks have no DB
    access); the step still imports Airflow's S3 filesystem and finds its connection."""
    conn = '{"conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": "http://127.0.0.1:9"}}'
    env = {**steps, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "airflow-db-not-allowed:///",
           "AIRFLOW__CORE__SQL_ALCHEMY_CONN": "airflow-db-not-allowed:///", "AIRFLOW_CONN_PACS_TASK_S3": conn}
    kind, endpoint = isolate.run("isolate_steps:s3_fs", env=env, conn_id="pacs_task_s3")
    assert kind == "S3FileSystem" and endpoint == "http://127.0.0.1:9"


def test_missing_config_is_one_clear_line() -> None:
    with pytest.raises(ConfigError, match=r"pacs\.yaml"):
        isolate.run("pacs.intake:merge_step", config="/nonexistent/pacs.yaml", batch_ids=[], run_id="t")


HANDOVER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {plugins!r})
    from pacs import isolate
    from pacs.config import load_config
    env = isolate.connection_env(load_config({config!r}))
    # the step must not find it the way the task did: only through what it is handed
    env.update({{"PYTHONPATH": {steps!r}, "AIRFLOW__SECRETS__BACKEND": ""}})
    print(json.dumps({{"names": sorted(k for k in env if k.startswith("AIRFLOW_CONN_")),
                      "fs": isolate.run("isolate_steps:s3_fs", env=env, conn_id="pacs_kept_s3")}}))
""")


def test_a_connection_kept_in_airflow_reaches_the_step_through_its_environment(
        steps: dict[str, str], tmp_path: Path) -> None:
    """A connection the task looks up through Airflow (here a secrets backend; in a deployment the
    supervisor) is handed to the step as AIRFLOW_CONN_<ID>, which the step's Airflow reads."""
    import json

    secrets_file = tmp_path / "connections.json"
    secrets_file.write_text(json.dumps({"pacs_kept_s3": {
        "conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": "http://127.0.0.1:8"}}}))
    cfg_path = write_config(tmp_path, offline={"url": "s3://archive/offline", "conn_id": "pacs_kept_s3"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update({"AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
                "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(secrets_file)})})
    code = HANDOVER.format(plugins=str(ROOT / "plugins"), config=str(cfg_path), steps=steps["PYTHONPATH"])
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["names"] == ["AIRFLOW_CONN_PACS_KEPT_S3"]
    assert out["fs"] == ["S3FileSystem", "http://127.0.0.1:8"]
