"""The deployable stack (``docker-compose.yaml``) and the CI entry point (``.ci/run``).

No Docker is needed: the compose file is parsed with ``yaml.safe_load`` (which resolves the
``x-airflow-common`` anchors and ``<<`` merges as Compose does) and checked for what users rely
on — the services, the shared Airflow environment, the mounts that make every worker see the
same archive, the queue routing (exactly the catalogue worker consumes queue ``catalogue`` and
mounts the single DuckDB catalogue; every task of the catalogue's one-slot pool is on that
queue), the buckets, and that no secret is written in the file.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pacs import dagkit
from pacs.config import Config, load_config
from pacs.dagkit import POOL

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKER_CONFIG = ROOT / "config" / "pacs.docker.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CI_RUN = ROOT / ".ci" / "run"

REQUIRED_SERVICES = {
    "postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    "airflow-worker", "airflow-worker-catalogue", "airflow-triggerer", "airflow-init", "minio", "minio-init",
}
AIRFLOW_SERVICES = (
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
    "airflow-worker-catalogue", "airflow-triggerer", "airflow-init",
)
CATALOGUE_WORKER = "airflow-worker-catalogue"
# The services that mount the catalogue volume: the worker of queue catalogue, the init job that
# prepares it, and the debug CLI (pacs summary / query / check).
CATALOGUE_MOUNTERS = {CATALOGUE_WORKER, "airflow-init", "airflow-cli"}
# Project folders bind-mounted into every Airflow container (host path relative to the repo).
SOURCE_MOUNTS = {
    "/opt/airflow/dags": "dags",
    "/opt/airflow/plugins": "plugins",
    "/opt/airflow/include": "include",
    "/opt/airflow/config": "config",
}
# The archive's named volumes that every Airflow container mounts, and where.
SHARED_VOLUMES = {
    "/data/landing": "pacs-landing",
    "/data/online": "pacs-online",
    "/data/reports": "pacs-reports",
    "/data/quarantine": "pacs-quarantine",
}
# The catalogue's volume (DuckDB file and Parquet snapshot): only CATALOGUE_MOUNTERS mount it.
CATALOGUE_VOLUME = ("/data/catalogue", "pacs-catalogue")
DATA_VOLUMES = {**SHARED_VOLUMES, CATALOGUE_VOLUME[0]: CATALOGUE_VOLUME[1]}
OFFLINE_CONN_ENV = "AIRFLOW_CONN_AWS_PACS_OFFLINE"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
REQUIRED_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}")


# ── helpers ───────────────────────────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def docker_config() -> Config:
    return load_config(DOCKER_CONFIG)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (Compose allows a mapping or KEY=VALUE items)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → source (host path or named volume) of a service's volumes."""
    out = {}
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            out[vol["target"]] = vol.get("source", "")
        else:
            parts = vol.split(":")
            assert len(parts) in (2, 3), f"unexpected volume syntax {vol!r}"
            out[parts[1]] = parts[0]
    return out


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return {name: (spec or {}) for name, spec in deps.items()}


def command_text(service: dict[str, Any]) -> str:
    cmd = service.get("command") or ""
    return "\n".join(cmd) if isinstance(cmd, list) else str(cmd)


def celery_queues(service: dict[str, Any]) -> set[str] | None:
    """The queues a ``celery worker`` service consumes (``-q``/``--queues``), None if it is no worker."""
    words = command_text(service).split()
    if words[:2] != ["celery", "worker"]:
        return None
    for i, word in enumerate(words):
        if word in ("-q", "--queues") and i + 1 < len(words):
            return set(words[i + 1].split(","))
        if word.startswith("--queues="):
            return set(word.split("=", 1)[1].split(","))
    return {"default"}  # Airflow's [operators] default_queue


def is_named_volume(source: str) -> bool:
    return bool(source) and not source.startswith((".", "/", "~", "$"))


def strings(node: Any) -> list[str]:
    """Every string value (not key) in a parsed YAML tree."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository path that a container path resolves to through a bind mount."""
    best = None
    for target, source in mounts(service).items():
        under = container_path == target or container_path.startswith(target + "/")
        if source.startswith("./") and under and (best is None or len(target) > len(best[0])):
            best = (target, source)
    assert best is not None, f"{container_path} is not under any bind mount of the project"
    target, source = best
    return (ROOT / source / posixpath.relpath(container_path, target)).resolve()


def data_volume_of(path: str) -> str | None:
    for target, volume in DATA_VOLUMES.items():
        if path == target or path.startswith(target + "/"):
            return volume
    return None


# ── services ──────────────────────────────────────────────────────────────────────────────────
def test_required_services_exist(services: dict[str, Any]) -> None:
    missing = REQUIRED_SERVICES - set(services)
    assert not missing, f"docker-compose.yaml lacks services {sorted(missing)}"


def test_airflow_services_run_the_project_image_on_airflow_332(compose: dict[str, Any]) -> None:
    common = compose["x-airflow-common"]
    assert common["build"]["dockerfile"] == "docker/Dockerfile"
    assert (ROOT / common["build"].get("context", ".")).resolve() == ROOT
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:3\.3\.2-python3\.11$", text, re.M)
    assert re.search(r"^FROM \$\{AIRFLOW_IMAGE\}$", text, re.M)
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned and pinned.group(1) == "3.3.2", "the image and requirements.txt must name the same Airflow"
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", text, re.M)
    assert [c.split()[:-1] for c in copies] == [["requirements.txt", "constraints.txt"]], copies
    assert re.search(r"-r \S*requirements\.txt", text) and re.search(r"-c \S*constraints\.txt", text)


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_service_shares_the_common_environment(
    services: dict[str, Any], compose: dict[str, Any], name: str
) -> None:
    env = environment(services[name])
    common = environment(compose["x-airflow-common"])
    differing = {k for k, v in common.items() if env.get(k) != v}
    assert not differing, f"{name} overrides or drops common variables {sorted(differing)}"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # with Airflow's default (5 s) a loaded worker ended tasks up to 5 s after they finished (bench/empty_run.py)
    assert float(env["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"]) <= 1
    assert re.fullmatch(r"postgresql(\+psycopg2)?://[^@]+@postgres(:5432)?/airflow",
                        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    # the driver named: SQLAlchemy 2.1's default for postgresql:// is psycopg 3, not in requirements.txt
    assert re.fullmatch(r"db\+postgresql\+psycopg2://[^@]+@postgres(:5432)?/airflow",
                        env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert re.fullmatch(r"redis://[^@]*@redis:6379/\d+", env["AIRFLOW__CELERY__BROKER_URL"])
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["PACS_CONFIG"] == "/opt/airflow/config/pacs.docker.yaml"
    assert OFFLINE_CONN_ENV in env
    assert services[name].get("user", compose["x-airflow-common"]["user"]) in (
        "${AIRFLOW_UID:-50000}:0", "0:0"), "Airflow containers run with group 0"


def test_airflow_secrets_come_from_the_environment(compose: dict[str, Any]) -> None:
    env = environment(compose["x-airflow-common"])
    assert REQUIRED_REF.fullmatch(env["AIRFLOW__API_AUTH__JWT_SECRET"]), "JWT secret must be a required ${...}"
    assert REQUIRED_REF.fullmatch(env["PACS_PSEUDONYM_KEY"]), "no default pseudonym key"
    assert env["AIRFLOW__CORE__FERNET_KEY"] == "${AIRFLOW__CORE__FERNET_KEY:-}"
    m = REF.fullmatch(env["PACS_INGEST_SCHEDULE"])
    assert m and m.group(1) == "PACS_INGEST_SCHEDULE" and m.group(3) == "*/15 * * * *"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_offline_connection_points_at_minio(services: dict[str, Any], docker_config: Config, name: str) -> None:
    conn_id = docker_config.offline.conn_id
    assert conn_id and f"AIRFLOW_CONN_{conn_id.upper()}" == OFFLINE_CONN_ENV
    raw = environment(services[name])[OFFLINE_CONN_ENV]
    conn = json.loads(REF.sub("PLACEHOLDER", raw))
    assert conn["conn_type"] == "aws"
    assert conn["extra"]["endpoint_url"] == "http://minio:9000"
    assert conn["extra"]["region_name"]
    creds = json.loads(REF.sub(lambda m: m.group(1), raw))
    assert (creds["login"], creds["password"]) == ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
    assert "${MINIO_ROOT_USER:?" in raw and "${MINIO_ROOT_PASSWORD:?" in raw


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_service_mounts_code_config_and_archive(services: dict[str, Any], name: str) -> None:
    m = mounts(services[name])
    for target, folder in SOURCE_MOUNTS.items():
        assert target in m, f"{name} does not mount {target}"
        assert (ROOT / m[target]).resolve() == ROOT / folder, f"{name}: {target} is not ./{folder}"
    for target, volume in SHARED_VOLUMES.items():
        assert m.get(target) == volume, f"{name} must mount the named volume {volume} at {target}"
    target, volume = CATALOGUE_VOLUME
    if name in CATALOGUE_MOUNTERS:
        assert m.get(target) == volume, f"{name} must mount the catalogue volume {volume} at {target}"
    else:
        assert volume not in m.values() and target not in m, f"{name} must not mount the catalogue"


def test_pacs_config_inside_containers_is_config_pacs_docker_yaml(services: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        env = environment(svc)
        assert host_path(svc, env["PACS_CONFIG"]) == DOCKER_CONFIG
        if "PACS_SQL_DIR" in env:
            assert host_path(svc, env["PACS_SQL_DIR"]) == ROOT / "include" / "sql"
    assert DOCKER_CONFIG.is_file()


def test_docker_config_keeps_the_archive_on_the_shared_volumes(docker_config: Config) -> None:
    cfg = docker_config
    assert [loc.url for loc in cfg.landing] == ["/data/landing"]
    assert cfg.online.url == "/data/online"
    assert cfg.quarantine.url == "/data/quarantine"
    assert cfg.reports.url == "/data/reports"
    assert cfg.parquet.url == "/data/catalogue/parquet"
    assert str(cfg.duckdb) == "/data/catalogue/pacs.duckdb"
    # What every worker writes lives on a volume that every container mounts; the DuckDB file and
    # its snapshot on the catalogue volume (the catalogue worker's only); the work journal, which
    # both kinds of worker use, on MinIO with the offline tier.
    for loc in (*cfg.landing, cfg.online, cfg.quarantine, cfg.reports):
        assert loc.is_local and data_volume_of(loc.url) in SHARED_VOLUMES.values(), \
            f"{loc.name} ({loc.url}) is not on a volume every worker mounts"
    assert {data_volume_of(p) for p in (str(cfg.duckdb), cfg.parquet.url)} == {CATALOGUE_VOLUME[1]}
    for loc in (cfg.offline, cfg.work):
        assert loc.protocol == "s3" and loc.conn_id == "aws_pacs_offline", f"{loc.name} is not on MinIO"
    assert cfg.capacity.online_bytes and cfg.capacity.offline_bytes, "the capacity report needs the tier sizes"
    assert cfg.settle_seconds == 60
    assert cfg.policy is not None  # policy: lifecycle.yaml beside it, i.e. in the config mount


def test_apiserver_publishes_8080(services: dict[str, Any]) -> None:
    published = set()
    for port in services["airflow-apiserver"].get("ports") or []:
        if isinstance(port, dict):
            published.add((str(port.get("published")), str(port["target"])))
        else:
            host, _, container = str(port).rpartition(":")
            published.add((host.rsplit(":", 1)[-1], container))
    assert ("8080", "8080") in published
    assert services["airflow-apiserver"]["command"] == "api-server"


def test_airflow_commands(services: dict[str, Any]) -> None:
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-worker"]["command"] == "celery worker -q default"
    assert services[CATALOGUE_WORKER]["command"] == f"celery worker -q default,{dagkit.CATALOGUE_QUEUE}"
    assert services["airflow-triggerer"]["command"] == "triggerer"


def test_init_migrates_creates_admin_and_the_catalogue_pool(services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    env = environment(init)
    assert env.get("_AIRFLOW_DB_MIGRATE") == "true"
    assert env.get("_AIRFLOW_WWW_USER_CREATE") == "true"
    text = command_text(init)
    assert "/entrypoint airflow version" in text  # the entrypoint runs migrate + user creation
    pools = re.findall(r"airflow pools set\s+(\S+)\s+(\d+)\s+\"([^\"]+)\"", text)
    assert pools == [(POOL, "1", "the catalogue's single writer")], pools
    assert POOL == "pacs_catalogue"
    # It fixes the ownership of every archive volume.
    for target in DATA_VOLUMES:
        assert target in text, f"airflow-init does not prepare {target}"
    assert "chown" in text
    assert init.get("user") == "0:0"


def test_worker_is_scalable(services: dict[str, Any]) -> None:
    worker = services["airflow-worker"]
    assert "container_name" not in worker, "a fixed container name prevents --scale"
    assert "replicas" in (worker.get("deploy") or {})
    assert environment(worker).get("DUMB_INIT_SETSID") == "0"


def test_exactly_the_catalogue_worker_consumes_queue_catalogue(services: dict[str, Any]) -> None:
    queues = {name: q for name, svc in services.items() if (q := celery_queues(svc)) is not None}
    assert set(queues) == {"airflow-worker", CATALOGUE_WORKER}, f"celery workers: {sorted(queues)}"
    consumers = {name for name, q in queues.items() if dagkit.CATALOGUE_QUEUE in q}
    assert consumers == {CATALOGUE_WORKER}, f"queue {dagkit.CATALOGUE_QUEUE} is consumed by {sorted(consumers)}"
    assert all("default" in q for q in queues.values()), "every worker also takes the default queue"
    catalogue_worker = services[CATALOGUE_WORKER]
    assert "replicas" not in (catalogue_worker.get("deploy") or {}), "one catalogue worker: it is not scaled"
    assert depends_on(catalogue_worker) == depends_on(services["airflow-worker"])
    assert catalogue_worker["healthcheck"] == services["airflow-worker"]["healthcheck"]
    assert environment(catalogue_worker).get("DUMB_INIT_SETSID") == "0"


def test_catalogue_pool_tasks_are_on_queue_catalogue() -> None:
    """Every task of the catalogue's pool goes to the queue only the catalogue worker consumes."""
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not dagbag.import_errors, dagbag.import_errors
    in_pool = [(d.dag_id, t) for d in dagbag.dags.values() for t in d.tasks if t.pool == POOL]
    assert in_pool, "no task in the catalogue pool"
    elsewhere = [f"{dag_id}.{t.task_id} (queue {t.queue})" for dag_id, t in in_pool
                 if t.queue != dagkit.CATALOGUE_QUEUE]
    assert not elsewhere, f"catalogue tasks not on queue {dagkit.CATALOGUE_QUEUE}: {elsewhere}"
    others = {t.queue for d in dagbag.dags.values() for t in d.tasks if t.pool != POOL}
    assert dagkit.CATALOGUE_QUEUE not in others, "a task outside the catalogue pool is on queue catalogue"


def test_minio_init_creates_the_offline_and_work_buckets(services: dict[str, Any], docker_config: Config) -> None:
    assert docker_config.offline.url.startswith("s3://")
    buckets = {loc.root.split("/", 1)[0] for loc in docker_config.all_roots() if loc.protocol == "s3"}
    assert buckets == {"pacs-offline", "pacs-work"}
    text = command_text(services["minio-init"])
    made = re.findall(r"\bmc mb\b(?:\s+--\S+)*\s+[\w.-]+/([\w.-]+)", text)
    assert buckets <= set(made), f"minio-init makes {made}, not every bucket of the configuration {sorted(buckets)}"
    alias = re.search(r"mc alias set\s+([\w-]+)\s+(\S+)", text)
    assert alias and alias.group(2) == "http://minio:9000"
    assert depends_on(services["minio-init"])["minio"]["condition"] == "service_healthy"
    minio = services["minio"]
    assert minio["image"].split(":", 1)[0].endswith(("minio/minio", "${MINIO_IMAGE"))
    assert command_text(minio).split()[:2] == ["server", "/data"]
    assert "--console-address" in command_text(minio)


def test_no_literal_minio_or_aws_secrets(services: dict[str, Any], compose: dict[str, Any]) -> None:
    for name in ("minio", "minio-init"):
        env = environment(services[name])
        for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
            assert REQUIRED_REF.fullmatch(env[var]), f"{name}.{var} must be a required ${{...}} reference"
    text = COMPOSE.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text), "an AWS access key id"
    assert "minioadmin" not in text.lower()
    # Every variable that looks secret is a reference; the only literal ones allowed are the
    # official file's postgres dev defaults (airflow/airflow).
    secretish = re.compile(r"PASSWORD|SECRET|_KEY$|ACCESS_KEY|TOKEN")
    for name, svc in services.items():
        for var, value in environment(svc).items():
            if not secretish.search(var):
                continue
            if name == "postgres" and var == "POSTGRES_PASSWORD":
                assert value == "airflow"
                continue
            assert REF.fullmatch(value), f"{name}.{var} has a literal value"
            m = REF.fullmatch(value)
            default = m.group(3) if m.group(2) in ("-", ":-") else ""
            assert default in ("", "airflow"), f"{name}.{var} defaults to a literal secret"
    for s in strings(compose):
        for key in ("aws_secret_access_key", "aws_access_key_id"):
            assert key not in s.lower(), f"literal {key} in the compose file"


def test_every_dollar_is_an_interpolation_or_escaped(compose: dict[str, Any]) -> None:
    # Compose interpolates $NAME / ${...} everywhere; shell variables must be written $$.
    for s in strings(compose):
        for m in re.finditer(r"\$+", s):
            run = m.group(0)
            if len(run) % 2 == 0:
                continue  # $$ (escaped), $$$$ ...
            assert s[m.end():m.end() + 1] == "{", f"bare ${s[m.end():m.end() + 10]!r} in {s[:60]!r}"
            ref = REF.match(s, m.end() - 1)
            assert ref, f"malformed interpolation in {s[:80]!r}"
            # Compose variables are UPPER_CASE; a lower-case one is an unescaped shell variable.
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", ref.group(1)), f"${{{ref.group(1)}}}: write $${{...}}"


def test_every_depends_on_is_a_defined_service(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dep, spec in depends_on(svc).items():
            assert dep in services, f"{name} depends on undefined service {dep}"
            assert dep != name
            cond = spec.get("condition", "service_started")
            if cond == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} healthy, it has no healthcheck"
            if cond == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is a one-shot job"
    common = {"postgres", "redis"}
    for name in AIRFLOW_SERVICES:
        deps = depends_on(services[name])
        assert common <= set(deps) and all(deps[d]["condition"] == "service_healthy" for d in common)
        if name != "airflow-init":
            assert deps["airflow-init"]["condition"] == "service_completed_successfully"


def test_long_running_services_have_healthchecks(services: dict[str, Any]) -> None:
    for name in REQUIRED_SERVICES - {"airflow-init", "minio-init"}:
        test = (services[name].get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {src for svc in services.values() for src in mounts(svc).values() if is_named_volume(src)}
    assert set(DATA_VOLUMES.values()) <= used
    assert used <= declared, f"undeclared named volumes {sorted(used - declared)}"
    for svc in services.values():
        for src in mounts(svc).values():
            if src.startswith("./"):
                assert (ROOT / src).is_dir(), f"bind mount {src} is not a folder of the repository"


# ── .ci/run ───────────────────────────────────────────────────────────────────────────────────
def test_ci_run_is_an_executable_bash_script_running_make_test() -> None:
    assert CI_RUN.is_file()
    assert CI_RUN.stat().st_mode & stat.S_IXUSR, ".ci/run is not executable"
    text = CI_RUN.read_text()
    assert text.splitlines()[0] in ("#!/usr/bin/env bash", "#!/bin/bash")
    code = [line.split("#", 1)[0] for line in text.splitlines()[1:]]
    assert any(re.fullmatch(r"\s*set -euo pipefail\s*", line) for line in code)
    assert any(re.search(r"(^|\s)make test(\s|$)", line) for line in code), ".ci/run does not run `make test`"
    # then the production topology natively: make stack-test (its own PostgreSQL and Redis)
    stack = [i for i, line in enumerate(code) if re.search(r"(^|\s)make stack-test(\s|$)", line)]
    tests = [i for i, line in enumerate(code) if re.search(r"(^|\s)make test(\s|$)", line)]
    assert stack and min(stack) > min(tests), ".ci/run does not run `make stack-test` after `make test`"
    assert "postgresql" in text and "redis-server" in text, ".ci/run does not install make stack-test's packages"
    assert re.search(r"^stack-test: install$", (ROOT / "Makefile").read_text(), re.M)
    # chromium is installed only when missing, and with --no-install-recommends
    assert "/usr/bin/chromium" in text and "--no-install-recommends" in text
    assert "apt-get update" in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_ci_run_parses() -> None:
    subprocess.run(["bash", "-n", str(CI_RUN)], check=True)
