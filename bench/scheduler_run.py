"""Run one DAG run under Airflow's real scheduler (LocalExecutor), the way a deployment runs it.

Helper of ``bench/backlog_rss.py --executor local``; run it with the environment of a migrated
Airflow home (``AIRFLOW_HOME``, dags/plugins folders, ``PACS_CONFIG``; the SQLite metadata DB of
``common.prepare_airflow_home``). It parses the DAG files into the metadata DB
(``airflow dags reserialize``), unpauses and triggers the DAG, starts ``airflow api-server`` (the
execution API the task processes talk to) and ``airflow scheduler`` with the LocalExecutor
(``parallelism`` = ``--parallelism``; each task instance is a process of its own, as in
production), waits until the run is finished, then stops both. Its process tree is what the
caller samples. Prints one JSON line: the run's state and the seconds each phase took. ``--runs N`` makes N runs
one after another, so that the last is made by warm components, as in a deployment.

Run: ``.venv/bin/python bench/scheduler_run.py [--dag pacs_ingest] [--parallelism 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common


def _state(home: Path, dag_id: str) -> str | None:
    con = sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)).fetchall()
    finally:
        con.close()
    return rows[0][0] if rows else None


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dag", default="pacs_ingest")
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=4 * 3600.0)
    ap.add_argument("--runs", type=int, default=1,
                    help="DAG runs one after another (each triggered when the last ended); the last one is the "
                         "one read back, made by a scheduler and an api-server that are already warm")
    ap.add_argument("--airflow-default", action="store_true",
                    help="leave [workers] min_heartbeat_interval at Airflow's default (5 s) instead of the 1 s "
                         "docker-compose.yaml sets")
    args = ap.parse_args(argv)
    home = Path(os.environ["AIRFLOW_HOME"])
    port = common.free_port()
    api = f"http://127.0.0.1:{port}"
    env = {**os.environ,
           "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
           "AIRFLOW__CORE__PARALLELISM": str(args.parallelism),
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
           "AIRFLOW__API__BASE_URL": api,
           "AIRFLOW__API__WORKERS": "1",
           "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
           "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
           # as docker-compose.yaml sets it (a task's end noticed within 1 s, not 5); --airflow-default
           # leaves Airflow's default
           **({} if args.airflow_default else {"AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1"}),
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(common.free_port())}
    airflow = common.bin_path("airflow")
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    for cmd in (["dags", "reserialize"], ["dags", "unpause", args.dag], ["dags", "trigger", args.dag]):
        proc = subprocess.run([airflow, *cmd], env=env, capture_output=True, text=True)
        if proc.returncode:
            print(json.dumps({"state": None, "error": f"airflow {' '.join(cmd)}: {proc.stderr[-1500:]}"}))
            return 1
    t["reserialize_unpause_trigger_s"] = round(time.perf_counter() - t0, 2)
    logs = home / "scheduler-run"
    logs.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    t1 = time.perf_counter()
    try:
        for name, cmd in (("api-server", [airflow, "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"]),
                          ("scheduler", [airflow, "scheduler"])):
            with open(logs / f"{name}.log", "wb") as out:
                procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        state, runs_done = None, 0
        while time.perf_counter() - t1 < args.timeout:
            for p in procs:
                if p.poll() is not None:
                    print(json.dumps({"state": None, "error": f"{p.args[1]} exited {p.returncode}; see {logs}"}))
                    return 1
            state = _state(home, args.dag)
            if state in ("success", "failed"):
                runs_done += 1
                if runs_done >= args.runs or state == "failed":
                    break
                subprocess.run([airflow, "dags", "trigger", args.dag], env=env, capture_output=True, check=True)
                continue
            time.sleep(0.5)
        t["run_s"] = round(time.perf_counter() - t1, 2)
        try:
            with urllib.request.urlopen(f"{api}/api/v2/monitor/health", timeout=5) as r:
                healthy = r.status == 200
        except OSError:
            healthy = False
    finally:
        _stop(procs)
    print(json.dumps({"state": state, "api_server_answered": healthy, "phases": t, "logs": str(logs)}))
    return 0 if state == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
