"""``make stack-test``: the production topology on this machine, every DAG through the scheduler.

What it starts (all on 127.0.0.1, on free ports, in one temporary folder; nothing relies on a
system service, and everything it started is stopped at the end, on failure and on Ctrl-C too):

- PostgreSQL (Airflow's metadata DB and Celery's result backend), Redis (the Celery broker),
  moto's S3 server (the object store) — :mod:`stack.services`;
- Airflow 3.3 with the CeleryExecutor: api-server, scheduler, dag-processor, triggerer and two
  Celery workers: ``worker-default`` consumes queue ``default``; ``worker-catalogue`` consumes
  ``default,catalogue`` and is the only one that can reach the DuckDB catalogue. Airflow is
  configured only through ``AIRFLOW__*`` variables (``AIRFLOW_HOME`` in the temporary folder);
  the simple auth manager with one admin user and a generated password.

The archive (``pacs.stack.yaml`` in the temporary folder, through ``PACS_CONFIG``): landing,
offline, quarantine, reports and the work journal on S3 (one Airflow connection,
``AIRFLOW_CONN_PACS_STACK_S3``, holding moto's fake keys), the online tier on local disk (shared
by both workers, as an NFS mount would be), and the catalogue — DuckDB file and Parquet snapshot
— in ``${PACS_STACK_CATALOGUE}``: the catalogue worker's folder. On the other worker that
variable names a path below a plain file, so a catalogue task routed there would fail at once.

What it does, through the REST API (``/api/v2``, a JWT from ``/auth/token``), with the scheduler
doing the work (never ``airflow dags test``):

1. unpauses the DAGs (``[scheduler] use_job_schedule`` is off: only the runs triggered here run);
2. ``pacs_ingest`` over a synthetic hospital uploaded to landing (good files first, then the
   identical resends and every kind of bad file, later, as they would arrive), then a second
   ``pacs_ingest`` over resends of files already catalogued;
3. ``pacs_lifecycle`` at :data:`DAY` as a dry run (nothing moves), then for real; with a policy
   that has ``approve_plan`` (when the product has it), a lifecycle waiting at its approval
   task is answered through the REST API: once rejected (nothing moves), once approved;
4. ``pacs_recall`` of one offline study, ``pacs_fixity``, ``pacs_capacity_report``.

Every run must succeed. Then it checks, from the task instances in the REST API, that ``process``
tasks ran on both workers and that every task of the catalogue's pool ran on queue ``catalogue``
on the catalogue worker; and the end state, computed independently of the product: every input
is exactly one of catalogued, quarantined or counted duplicate; landing is empty; every offline
object and online file has the catalogue's sha256; the study tiers are what the policy asks;
``pacs check`` passes. It prints a timing per step and one summary line; exit status 0 when all
holds, 1 otherwise (with the failed task and the end of its log), 2 when the stack cannot start.

``python -m stack [--keep]`` (``--keep``: leave the temporary folder, with every log, behind).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack import services
from stack.api import DONE_TI_STATES, Airflow, ApiError, wait_for_run
from stack.services import Service, StackError, free_port, tail, wait_until

ROOT = Path(__file__).resolve().parents[1]
DAGS = ("pacs_ingest", "pacs_lifecycle", "pacs_recall", "pacs_fixity", "pacs_capacity_report")
DAY = dt.date(2024, 11, 1)
"""The date the first lifecycles decide at (the scheduler refuses logical dates in the future)."""
APPROVAL_DAY = dt.date(2025, 11, 1)
"""A year later: the lifecycle runs with ``approve_plan`` decide at this date (more studies are due)."""
RETENTION_YEARS = 3
POOL = "pacs_catalogue"
CATALOGUE_QUEUE = "catalogue"
WORKERS = {"worker-default": "default", "worker-catalogue": f"default,{CATALOGUE_QUEUE}"}
CATALOGUE_WORKER = "worker-catalogue"
S3_CONN_ID = "pacs_stack_s3"
BUCKETS = ("pacs-landing", "pacs-offline", "pacs-quarantine", "pacs-work", "pacs-reports")
FAKE_KEY = "testing"  # moto accepts any keys; these are the tests' fake ones, never real credentials
RUN_TIMEOUT = 300.0
USER = "stack"


def _say(text: str) -> None:
    print(text, flush=True)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s" if seconds >= 60 else f"{seconds:.1f}s"


class CheckFailed(AssertionError):
    """The end state or the placement of the tasks is not what the scenario asks."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


# ── the stack ────────────────────────────────────────────────────────────────────────────────
class Stack:
    """Every process of the stack, its ports, its environment and its temporary folder."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.ports = {name: free_port() for name in
                      ("postgres", "redis", "moto", "api", "triggerer_logs", *[f"{w}_logs" for w in WORKERS])}
        self.password = secrets.token_urlsafe(16)
        self.postgres = services.Postgres(tmp / "postgres", self.ports["postgres"])
        self.services: list[Service] = []
        self.config = tmp / "pacs.stack.yaml"
        self.catalogue_dir = tmp / "catalogue-worker"
        self.online = tmp / "archive" / "online"
        self.api = Airflow(f"http://127.0.0.1:{self.ports['api']}", USER, self.password)
        self.s3_endpoint = f"http://127.0.0.1:{self.ports['moto']}"
        self.base_env = self._base_env()

    # environment ──────────────────────────────────────────────────────────────────────────────
    def _base_env(self) -> dict[str, str]:
        """The machine's environment without any Airflow, PACS or AWS setting, plus the stack's."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "PACS_", "AWS_", "_AIRFLOW"))}
        from cryptography.fernet import Fernet

        api = f"http://127.0.0.1:{self.ports['api']}"
        conn = {"conn_type": "aws", "login": FAKE_KEY, "password": FAKE_KEY,
                "extra": {"endpoint_url": self.s3_endpoint, "region_name": "us-east-1",
                          "config_kwargs": {"s3": {"addressing_style": "path"}}}}
        env.update({
            "PATH": f"{services.VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}",
            "AIRFLOW_HOME": str(self.tmp / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "stack.hostname.worker_hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.tmp / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": self.postgres.celery_url,
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.ports["api"]),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # Only the runs this script triggers: no cron runs at "now", no asset-triggered reports.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # as docker-compose.yaml: a task's end is noticed within a second, not five
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            # The DAG files do not change while the stack runs: parse them once, not every 30s (2 cores).
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3600",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports["triggerer_logs"]),
            "PACS_CONFIG": str(self.config),
            "PACS_STACK_CATALOGUE": str(self.catalogue_dir),
            f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": json.dumps(conn),
        })
        return env

    def worker_env(self, name: str) -> dict[str, str]:
        env = {**self.base_env, "PACS_STACK_WORKER": name,
               "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports[f"{name}_logs"])}
        if name != CATALOGUE_WORKER:
            # This worker's machine has no catalogue: a path below a plain file cannot be opened.
            env["PACS_STACK_CATALOGUE"] = str(self.tmp / "worker-default" / "no-catalogue-here" / "catalogue")
        return env

    # start and stop ───────────────────────────────────────────────────────────────────────────
    def _service(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Service:
        svc = Service(name, cmd, env=env or {**self.base_env, "PACS_STACK_WORKER": name},
                      log=self.logs / f"{name}.log", cwd=self.tmp).start()
        self.services.append(svc)
        return svc

    def alive(self) -> None:
        for svc in self.services:
            svc.check_alive()

    def _airflow(self, *args: str, log: str) -> None:
        with open(self.logs / f"{log}.log", "ab") as out:
            proc = subprocess.run([str(services.VENV_BIN / "airflow"), *args], env=self.base_env, cwd=self.tmp,
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if proc.returncode:
            raise StackError(f"airflow {' '.join(args)} failed (exit {proc.returncode}):\n"
                             f"{tail(self.logs / f'{log}.log')}")

    def start(self) -> dict[str, float]:
        """Start everything; seconds per phase."""
        t: dict[str, float] = {}
        t0 = time.monotonic()
        self.tmp.chmod(0o755)  # PostgreSQL runs as its own user and must reach its folder
        self.logs.mkdir()
        self.online.mkdir(parents=True)
        self.catalogue_dir.mkdir()
        (self.tmp / "worker-default").mkdir()
        (self.tmp / "worker-default" / "no-catalogue-here").write_text(
            "the default worker has no catalogue: catalogue tasks run on queue catalogue\n")
        (self.tmp / "passwords.json").write_text(json.dumps({USER: self.password}))
        (self.tmp / "passwords.json").chmod(0o600)
        self.postgres.start()
        redis = services.redis(self.tmp / "redis", self.ports["redis"], self.base_env).start()
        self.services.append(redis)
        moto = services.moto(self.logs, self.ports["moto"], self.base_env).start()
        self.services.append(moto)
        wait_until("redis", lambda: services.redis_ping(self.ports["redis"]), timeout=30, alive=redis.check_alive)
        wait_until("moto", lambda: services.http_ok(f"{self.s3_endpoint}/moto-api/"), timeout=60,
                   alive=moto.check_alive)
        t["postgres, redis, moto"] = time.monotonic() - t0
        t1 = time.monotonic()
        self._airflow("db", "migrate", log="db-migrate")
        self._airflow("pools", "set", POOL, "1", "the catalogue's single writer", log="pools")
        t["airflow db migrate + pool"] = time.monotonic() - t1
        t2 = time.monotonic()
        airflow = str(services.VENV_BIN / "airflow")
        self._service("api-server", [airflow, "api-server", "-H", "127.0.0.1", "-p", str(self.ports["api"]),
                                     "-w", "1"])
        self._service("scheduler", [airflow, "scheduler"])
        self._service("dag-processor", [airflow, "dag-processor"])
        self._service("triggerer", [airflow, "triggerer"])
        for name, queues in WORKERS.items():
            self._service(name, [airflow, "celery", "worker", "-q", queues, "-H", f"{name}@%h", "-c", "2"],
                          env=self.worker_env(name))
        self._wait_ready()
        t["airflow components ready"] = time.monotonic() - t2
        return t

    def _wait_ready(self) -> None:
        wait_until("api-server", lambda: self.api.health()["metadatabase"]["status"] == "healthy",
                   timeout=240, every=1.0, alive=self.alive)

        def healthy() -> bool:
            h = self.api.health()
            return all((h.get(k) or {}).get("status") == "healthy" for k in ("scheduler", "triggerer", "dag_processor"))

        wait_until("scheduler, triggerer and dag-processor", healthy, timeout=240, every=1.0, alive=self.alive)
        for name in WORKERS:
            log = self.logs / f"{name}.log"
            wait_until(f"celery {name}", lambda log=log: " ready." in log.read_text(errors="replace"),
                       timeout=240, every=1.0, alive=self.alive)

        def parsed() -> bool:
            errors = self.api.import_errors()
            if errors:
                raise StackError(f"DAG import errors: {json.dumps(errors)[:2000]}")
            return set(DAGS) <= self.api.dag_ids("pacs_")

        wait_until("the DAGs parsed", parsed, timeout=240, every=2.0, alive=self.alive)

    def stop(self) -> None:
        """Stop every process this stack started (workers first), then PostgreSQL. Never raises."""
        # The Airflow components together, then what they use (Redis, moto), then PostgreSQL;
        # each process group is waited for, and killed if it does not end.
        infra = {"redis", "moto"}
        for phase in ([s for s in self.services if s.name not in infra], [s for s in self.services if s.name in infra]):
            for svc in phase:
                try:
                    svc.terminate()
                except OSError as exc:
                    print(f"stack-test: stopping {svc.name}: {exc}", file=sys.stderr)
            for svc in phase:
                try:
                    svc.finish()
                except (OSError, subprocess.SubprocessError) as exc:  # a stop must go on to the next process
                    print(f"stack-test: stopping {svc.name}: {exc}", file=sys.stderr)
        self.services.clear()
        try:
            self.postgres.stop()
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"stack-test: stopping postgres: {exc}", file=sys.stderr)

    # the archive's helpers ────────────────────────────────────────────────────────────────────
    def s3(self) -> Any:
        from s3fs import S3FileSystem

        return S3FileSystem(endpoint_url=self.s3_endpoint, key=FAKE_KEY, secret=FAKE_KEY, skip_instance_cache=True,
                            use_listings_cache=False)

    def pacs(self, *args: str, check_rc: bool = True) -> subprocess.CompletedProcess[str]:
        """The pacs CLI as an operator on the catalogue worker's machine runs it."""
        proc = subprocess.run([sys.executable, "-m", "pacs.cli", "--config", str(self.config), *args],
                              env=self.base_env, capture_output=True, text=True, cwd=self.tmp,
                              stdin=subprocess.DEVNULL)
        if check_rc and proc.returncode:
            raise CheckFailed(f"pacs {' '.join(args)[:80]} exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
        return proc

    def query(self, sql: str) -> list[dict[str, Any]]:
        return json.loads(self.pacs("query", "--live", "--format", "json", sql).stdout)

    def write_config(self, *, approve_plan: bool = False) -> None:
        def s3(bucket: str, prefix: str) -> dict[str, str]:
            return {"url": f"s3://{bucket}/{prefix}", "conn_id": S3_CONN_ID}

        policy: dict[str, Any] = {"online_retention_years": RETENTION_YEARS, "age_basis": "study_date",
                                  "migrate_batch_studies": 10}
        if approve_plan:
            policy["approve_plan"] = True
        cfg = {
            "landing": [s3("pacs-landing", "incoming")],
            "online": str(self.online),
            "offline": s3("pacs-offline", "archive"),
            "quarantine": s3("pacs-quarantine", "quarantine"),
            "work": s3("pacs-work", "journal"),
            "reports": s3("pacs-reports", "reports"),
            "catalogue": {"duckdb": "${PACS_STACK_CATALOGUE}/pacs.duckdb",
                          "parquet": "${PACS_STACK_CATALOGUE}/parquet"},
            "settle_seconds": 0,
            "ingest": {"batch_size": 80, "workers": 1, "fsync": False},
            "policy": policy,
            "capacity": {"online_bytes": "1 GB", "offline_bytes": "10 GB",
                         "price_per_gb_month": {"online": 0.10, "offline": 0.0125}, "currency": "USD",
                         "forecast_months": 24},
        }
        self.config.write_text(json.dumps(cfg, indent=1) + "\n")  # JSON is YAML


# ── the synthetic archive and what must become of it ─────────────────────────────────────────
@dataclass
class Expected:
    """What the inputs must become, counted from what was uploaded (never from the product)."""

    inputs: int = 0
    good: int = 0
    duplicates: int = 0
    quarantined: int = 0
    studies: dict[str, str] = field(default_factory=dict)  # study uid → study date (YYYYMMDD)
    good_files: list[Any] = field(default_factory=list)
    bytes_by_sop: dict[str, str] = field(default_factory=dict)  # sop uid → sha256

    def offline_studies(self, day: dt.date) -> set[str]:
        cutoff = day.replace(year=day.year - RETENTION_YEARS).strftime("%Y%m%d")
        return {uid for uid, date in self.studies.items() if date < cutoff}


def upload_archive(stack: Stack, fs: Any, expected: Expected) -> dict[str, int]:
    """Generate a synthetic hospital and upload it to landing in arrival order; counts by kind."""
    from pacs import synth

    drop = synth.generate_archive(stack.tmp / "synth" / "landing", seed=11, patients=40,
                                  start=dt.date(2019, 1, 1), end=dt.date(2023, 10, 31),
                                  count_scale=0.03, size_scale=0.1, bad=True, duplicates=10)
    root = drop.root
    # Object storage has no links: the unsafe_path link of the bad set cannot be sent to S3.
    files = [f for f in drop.files if not os.path.islink(f.path) and Path(f.path).is_relative_to(root)]
    first = [f for f in files if f.kind == synth.KIND_GOOD]
    later = [f for f in files if f.kind != synth.KIND_GOOD]
    # "First received wins": S3 says when an object arrived; the resends and the conflicting
    # files arrive after the originals, as the synthetic mtimes say (whole seconds later).
    for wave in (first, later):
        for f in wave:
            fs.put_file(f.path, f"pacs-landing/incoming/{Path(f.path).relative_to(root).as_posix()}")
        time.sleep(1.5)
    kinds = Counter(f.kind for f in files)
    expected.inputs += len(files)
    expected.good += kinds[synth.KIND_GOOD]
    expected.duplicates += kinds[synth.KIND_DUPLICATE]
    expected.quarantined += len(files) - kinds[synth.KIND_GOOD] - kinds[synth.KIND_DUPLICATE]
    expected.good_files = first
    for f in first:
        expected.studies[f.study_instance_uid] = f.study_date
        expected.bytes_by_sop[f.sop_instance_uid] = hashlib.sha256(Path(f.path).read_bytes()).hexdigest()
    return dict(kinds)


def upload_resends(fs: Any, expected: Expected, n: int = 12) -> int:
    """Byte-identical resends of ``n`` files already catalogued, under another name."""
    step = max(1, len(expected.good_files) // n)
    picked = expected.good_files[::step][:n]
    for i, f in enumerate(picked):
        fs.put_file(f.path, f"pacs-landing/incoming/resent/{i:03d}.dcm")
    expected.inputs += len(picked)
    expected.duplicates += len(picked)
    return len(picked)


# ── runs through the REST API ────────────────────────────────────────────────────────────────
@dataclass
class Runs:
    """Every DAG run the scenario triggered: (dag_id, run_id, label, seconds)."""

    done: list[tuple[str, str, str, float]] = field(default_factory=list)


def _failure_report(stack: Stack, dag_id: str, run_id: str, state: str) -> str:
    lines = [f"{dag_id} run {run_id} ended {state}" if state in ("success", "failed") else
             f"{dag_id} run {run_id}: {state}"]
    try:
        tis = stack.api.task_instances(dag_id, run_id)
    except ApiError as exc:
        return f"{lines[0]} (task instances unavailable: {exc})"
    for ti in tis:
        if ti["state"] in DONE_TI_STATES:
            continue
        where = f"{ti['task_id']}[{ti['map_index']}]" if ti["map_index"] >= 0 else ti["task_id"]
        lines.append(f"  task {where}: {ti['state']} (try {ti['try_number']}, queue {ti['queue']}, "
                     f"host {ti['hostname']})")
        if ti["state"] in ("failed", "up_for_retry", "upstream_failed") and ti["try_number"]:
            try:
                log = stack.api.log_lines(ti)
            except ApiError as exc:
                log = [f"(log unavailable: {exc})"]
            lines += [f"    | {line[:400]}" for line in log]
    return "\n".join(lines)


def run_dag(stack: Stack, runs: Runs, dag_id: str, label: str, *, logical: dt.datetime,
            conf: dict[str, Any] | None = None, answer: Any = None) -> str:
    """Trigger one run, wait for it (``answer(run_id)`` is polled meanwhile), fail loudly if it fails."""
    slug = re.sub(r"[^A-Za-z0-9_.~:+-]+", "-", label).strip("-")
    run_id = f"stack__{slug}__{logical.strftime('%Y%m%dT%H%M%S')}"
    t0 = time.monotonic()
    stack.api.trigger(dag_id, run_id, logical_date=logical.isoformat().replace("+00:00", "Z"), conf=conf)

    def alive() -> None:
        stack.alive()
        if answer is not None:
            answer(run_id)

    state = wait_for_run(stack.api, dag_id, run_id, timeout=RUN_TIMEOUT, alive=alive)
    secs = time.monotonic() - t0
    if state != "success":
        raise CheckFailed(_failure_report(stack, dag_id, run_id, state))
    runs.done.append((dag_id, run_id, label, secs))
    _say(f"    {label:<26} {dag_id:<22} success in {secs:5.1f}s")
    return run_id


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


# ── the end state ────────────────────────────────────────────────────────────────────────────
def check_counts(stack: Stack, expected: Expected, fs: Any) -> dict[str, int]:
    images = stack.query("SELECT count(*) AS n FROM image")[0]["n"]
    duplicates = stack.query("SELECT coalesce(sum(duplicates), 0) AS n FROM ingest_batch")[0]["n"]
    quarantined = stack.query("SELECT count(*) AS n FROM quarantine")[0]["n"]
    check(images == expected.good, f"{images} images catalogued, expected {expected.good}")
    check(duplicates == expected.duplicates, f"{duplicates} duplicates counted, expected {expected.duplicates}")
    check(quarantined == expected.quarantined, f"{quarantined} files quarantined, expected {expected.quarantined}")
    check(images + quarantined + duplicates == expected.inputs,
          f"inputs {expected.inputs} != catalogued {images} + quarantined {quarantined} + duplicates {duplicates}")
    left = fs.find("pacs-landing/incoming")
    check(not left, f"{len(left)} file(s) still in landing, e.g. {left[:3]}")
    sops = {r["sop_instance_uid"]: r["sha256"] for r in stack.query("SELECT sop_instance_uid, sha256 FROM image")}
    check(sops == expected.bytes_by_sop, "the catalogued SOP instances or their sha256 differ from what was sent")
    return {"inputs": expected.inputs, "catalogued": images, "quarantined": quarantined, "duplicates": duplicates}


def check_tiers(stack: Stack, expected: Expected, fs: Any, *, day: dt.date, recalled: str | None) -> dict[str, int]:
    """Every copy in both tiers has the catalogue's bytes; the tiers are what the policy asks."""
    rows = stack.query("SELECT sop_instance_uid, study_instance_uid, sha256, size_bytes, tier, online_uri, "
                       "offline_uri, offline_offset, offline_length FROM image")
    off_studies = expected.offline_studies(day) - ({recalled} if recalled else set())
    offline_bytes = offline_objects = 0
    for r in rows:
        want_online = r["study_instance_uid"] not in off_studies
        check((r["online_uri"] is not None) == want_online,
              f"image {r['sop_instance_uid'][-12:]}: online copy {'missing' if want_online else 'left behind'}")
        check(r["tier"] == ("online" if want_online else "offline"), f"image {r['sop_instance_uid'][-12:]}: "
              f"tier {r['tier']}")
        check(r["offline_uri"] is not None, f"image {r['sop_instance_uid'][-12:]} has no offline copy")
        path = r["offline_uri"].removeprefix("s3://")
        if r["offline_offset"] is not None:
            data = fs.cat_file(path, start=r["offline_offset"], end=r["offline_offset"] + r["offline_length"])
        else:
            data = fs.cat_file(path)
        check(hashlib.sha256(data).hexdigest() == r["sha256"] and len(data) == r["size_bytes"],
              f"offline copy {r['offline_uri']} does not have the catalogue's bytes")
        offline_bytes += len(data)
        offline_objects += 1
        if r["online_uri"] is not None:
            local = Path(r["online_uri"].removeprefix("file://"))
            check(local.is_file() and hashlib.sha256(local.read_bytes()).hexdigest() == r["sha256"],
                  f"online copy {local} is missing or does not have the catalogue's bytes")
    on_disk = sum(1 for p in stack.online.rglob("*") if p.is_file() and p.suffix == ".dcm")
    online = sum(1 for r in rows if r["online_uri"] is not None)
    check(on_disk == online, f"{on_disk} files in the online tier, the catalogue knows {online}")
    findings = stack.query("SELECT count(*) AS n FROM fixity_finding")[0]["n"]
    check(findings == 0, f"{findings} fixity finding(s)")
    return {"offline_verified": offline_objects, "offline_bytes": offline_bytes, "online_files": online,
            "studies_offline": len(off_studies)}


def check_placement(stack: Stack, runs: Runs) -> dict[str, Any]:
    """process on both workers; the catalogue pool's tasks on queue catalogue, on the catalogue worker."""
    process_hosts: Counter[str] = Counter()
    catalogue_tasks = 0
    elsewhere = []
    retried = 0
    for dag_id, run_id, _, _ in runs.done:
        for ti in stack.api.task_instances(dag_id, run_id):
            retried += ti["try_number"] > 1
            if ti["state"] != "success":
                continue
            check(ti["hostname"] in WORKERS, f"{dag_id}.{ti['task_id']} ran on {ti['hostname']!r}, not a worker")
            if ti["task_id"] == "process":
                process_hosts[ti["hostname"]] += 1
            if ti["pool"] == POOL:
                catalogue_tasks += 1
                # every try, not only the last: a try on the wrong worker fails, and a retry could hide it
                for t in stack.api.tries(ti) if ti["try_number"] > 1 else [ti]:
                    if t["queue"] != CATALOGUE_QUEUE or (t["hostname"] or CATALOGUE_WORKER) != CATALOGUE_WORKER:
                        elsewhere.append(f"{dag_id}.{ti['task_id']} try {t['try_number']} "
                                         f"(queue {t['queue']}, host {t['hostname']})")
    check(not elsewhere, f"catalogue tasks not on queue {CATALOGUE_QUEUE} / {CATALOGUE_WORKER}: "
          f"{', '.join(elsewhere[:6])}")
    check(set(process_hosts) == set(WORKERS), f"process tasks ran only on {dict(process_hosts)}")
    return {"process_hosts": dict(process_hosts), "catalogue_tasks": catalogue_tasks, "retried": retried}


# ── the scenario ─────────────────────────────────────────────────────────────────────────────
def approve_plan_supported() -> bool:
    """Whether the product's lifecycle policy knows ``approve_plan`` (an approval task in pacs_lifecycle)."""
    from pacs.tiers.policy import Policy

    return "approve_plan" in Policy.__dataclass_fields__


def _offline_state(stack: Stack) -> tuple[int, int]:
    """(images without an online copy, images with an offline copy)."""
    row = stack.query("SELECT count(*) FILTER (WHERE online_uri IS NULL) AS evicted, "
                      "count(offline_uri) AS copied FROM image")[0]
    return row["evicted"], row["copied"]


def _lifecycle_state(stack: Stack, run_id: str) -> str:
    rows = stack.query(f"SELECT state FROM lifecycle_run WHERE run_id = '{run_id}'")
    return rows[0]["state"] if rows else "no lifecycle_run row"


def _offline_studies(stack: Stack) -> set[str]:
    return {r["study_instance_uid"] for r in
            stack.query("SELECT study_instance_uid FROM study WHERE tier_state = 'offline'")}


def lifecycles(stack: Stack, runs: Runs, expected: Expected) -> dt.date:
    """Dry run, real run, and with approve_plan a rejected and an approved one; the last decision day."""
    run_dag(stack, runs, "pacs_lifecycle", "lifecycle dry run", logical=_at(DAY, 0), conf={"dry_run": True})
    check(_offline_state(stack) == (0, 0), f"the dry run moved or copied images: {_offline_state(stack)}")
    run_id = run_dag(stack, runs, "pacs_lifecycle", "lifecycle", logical=_at(DAY, 1))
    off = _offline_studies(stack)
    check(off == expected.offline_studies(DAY),
          f"{len(off)} studies offline after the lifecycle, the policy asks {len(expected.offline_studies(DAY))}")
    check(_lifecycle_state(stack, run_id) == "done", f"lifecycle run recorded {_lifecycle_state(stack, run_id)}")
    if not approve_plan_supported():
        _say("    (the lifecycle policy has no approve_plan: no approval runs)")
        return DAY
    # A year later more studies are due: the approver first rejects the plan, then approves it.
    later = APPROVAL_DAY
    stack.write_config(approve_plan=True)
    try:
        before = _offline_state(stack)
        run_id = run_dag(stack, runs, "pacs_lifecycle", "lifecycle rejected", logical=_at(later, 0),
                         answer=_answering(stack, "reject"))
        check(_offline_state(stack) == before and _offline_studies(stack) == off,
              f"a rejected plan moved images: {before} -> {_offline_state(stack)}")
        check(_lifecycle_state(stack, run_id) == "rejected",
              f"rejected plan recorded {_lifecycle_state(stack, run_id)}")
        run_id = run_dag(stack, runs, "pacs_lifecycle", "lifecycle approved", logical=_at(later, 1),
                         answer=_answering(stack, "approve"))
        off = _offline_studies(stack)
        check(off == expected.offline_studies(later) and len(off) > len(expected.offline_studies(DAY)),
              f"{len(off)} studies offline after the approved plan, the policy asks "
              f"{len(expected.offline_studies(later))}")
        check(_lifecycle_state(stack, run_id) == "done", f"approved plan recorded {_lifecycle_state(stack, run_id)}")
    finally:
        stack.write_config()
    return later


def _answering(stack: Stack, option: str) -> Any:
    """A poll hook that answers the run's open approval task with the option named ``option``."""
    def answer(run_id: str) -> None:
        for detail in stack.api.hitl_details("pacs_lifecycle", run_id):
            ti = detail["task_instance"]
            if detail.get("response_received") or ti["dag_run_id"] != run_id:
                continue
            options = detail["options"]
            chosen = next((o for o in options if o.lower().startswith(option)), None)
            check(chosen is not None, f"the approval task offers {options}, no {option!r}")
            stack.api.answer_hitl("pacs_lifecycle", run_id, ti["task_id"], ti["map_index"], chosen)
            _say(f"      {ti['task_id']} answered through the REST API: {chosen}")
    return answer


def scenario(stack: Stack, runs: Runs, expected: Expected) -> dict[str, Any]:
    fs = stack.s3()
    for bucket in BUCKETS:
        fs.mkdir(bucket)
    stack.write_config()
    for dag_id in DAGS:
        stack.api.unpause(dag_id)
    kinds = upload_archive(stack, fs, expected)
    _say(f"==> landing: {sum(kinds.values())} files uploaded to s3://pacs-landing/incoming "
         f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
    run_dag(stack, runs, "pacs_ingest", "ingest", logical=_at(DAY - dt.timedelta(days=2), 0))
    resent = upload_resends(fs, expected)
    run_dag(stack, runs, "pacs_ingest", f"ingest-resends ({resent})", logical=_at(DAY - dt.timedelta(days=1), 0))
    counts = check_counts(stack, expected, fs)
    day = lifecycles(stack, runs, expected)
    pick = stack.query("SELECT study_instance_uid FROM study WHERE tier_state = 'offline' "
                       "ORDER BY study_date DESC, study_instance_uid LIMIT 1")[0]["study_instance_uid"]
    pin = (day + dt.timedelta(days=30)).isoformat()
    run_dag(stack, runs, "pacs_recall", "recall", logical=_at(day, 3), conf={"study_uids": [pick], "pin_until": pin})
    run_dag(stack, runs, "pacs_fixity", "fixity", logical=_at(day, 4))
    run_dag(stack, runs, "pacs_capacity_report", "capacity report", logical=_at(day, 5))
    check(fs.exists("pacs-reports/reports/capacity/latest/summary.json"), "no capacity report summary.json")
    tiers = check_tiers(stack, expected, fs, day=day, recalled=pick)
    stack.pacs("check")
    placement = check_placement(stack, runs)
    return {**counts, **tiers, **placement}


def summary_line(result: dict[str, Any], startup: float, runs: Runs, total: float) -> str:
    hosts = ", ".join(f"{h} {n}" for h, n in sorted(result["process_hosts"].items()))
    run_times = " ".join(f"{label.split(' (')[0].replace(' ', '-')} {secs:.0f}s" for _, _, label, secs in runs.done)
    return (f"stack-test: ok — {len(runs.done)} DAG runs succeeded on CeleryExecutor; "
            f"{result['inputs']} inputs = {result['catalogued']} catalogued + {result['quarantined']} quarantined "
            f"+ {result['duplicates']} duplicates; {result['offline_verified']} offline objects "
            f"({result['offline_bytes'] / 1e6:.1f} MB) and {result['online_files']} online files verified, "
            f"{result['studies_offline']} studies offline; process tasks on {hosts}; "
            f"{result['catalogue_tasks']} catalogue tasks all on queue {CATALOGUE_QUEUE} @{CATALOGUE_WORKER}; "
            f"{result['retried']} retried; start-up {startup:.0f}s, runs: {run_times}; total {_minutes(total)}")


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _product_names_differ() -> str | None:
    """Import the pacs package; why the DAGs' pool and catalogue queue are not this test's, if they are not."""
    if str(ROOT / "plugins") not in sys.path:
        sys.path.insert(0, str(ROOT / "plugins"))  # the pacs package: synthetic data, the policy's keys
    from pacs import dagkit  # (imports Airflow, which sets up logging: the package's own info is not ours)

    logging.getLogger("pacs").setLevel(logging.WARNING)
    if (dagkit.POOL, dagkit.CATALOGUE_QUEUE) == (POOL, CATALOGUE_QUEUE):
        return None
    return (f"the DAGs' pool and queue are {dagkit.POOL}, {dagkit.CATALOGUE_QUEUE}; this test starts {POOL} "
            f"and a worker of queue {CATALOGUE_QUEUE}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make stack-test", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data) afterwards")
    args = parser.parse_args(argv)
    if (mismatch := _product_names_differ()) is not None:
        print(f"stack-test: {mismatch}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    t0 = time.monotonic()
    installed = services.ensure_packages()
    if installed:
        _say(f"==> installed Debian packages: {' '.join(installed)} ({time.monotonic() - t0:.0f}s)")
    tmp = Path(tempfile.mkdtemp(prefix="pacs-stack-"))
    stack, runs, expected = Stack(tmp), Runs(), Expected()
    status, keep, summary = 1, args.keep, ""
    try:
        _say(f"==> starting the stack in {tmp}")
        t1 = time.monotonic()
        for phase, secs in stack.start().items():
            _say(f"    {phase:<30} {secs:5.1f}s")
        startup = time.monotonic() - t1
        _say(f"==> stack up in {startup:.1f}s: api-server http://127.0.0.1:{stack.ports['api']}, "
             f"workers {', '.join(f'{w} [{q}]' for w, q in WORKERS.items())}")
        result = scenario(stack, runs, expected)
        summary = summary_line(result, startup, runs, time.monotonic() - t0)
        status = 0
    except (StackError, CheckFailed, ApiError) as exc:
        status, keep = (2 if isinstance(exc, StackError) and not runs.done else 1), True
        print(f"stack-test: FAILED — {exc}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001  (anything else: the traceback, and the stack still stops)
        keep = True
        traceback.print_exc()
        print(f"stack-test: FAILED — {type(exc).__name__}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        status = 130
        print("stack-test: interrupted; stopping the stack", file=sys.stderr)
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave processes behind
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            t_stop = time.monotonic()
            stack.stop()
            _say(f"==> stopped everything it started in {time.monotonic() - t_stop:.1f}s")
        if keep:
            print(f"stack-test: logs and data kept in {tmp} (logs/, airflow/logs/)", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if summary:
        _say(summary)
    return status
