"""Helpers the tests share: project paths, archive configurations, moto's S3 server, queries.

Imported by the tests (``from helpers import ...``) and by ``conftest.py``, which turns them
into fixtures. Everything is real: local folders, DuckDB files and an S3 endpoint served over
HTTP by moto on 127.0.0.1 (started by the tests, never a patched client).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
"""The project's root folder."""


def write_config(base: Path, **overrides: Any) -> Path:
    """Write an archive configuration whose locations all live under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {
        "landing": [str(base / "landing")],
        "online": str(base / "online"),
        "offline": str(base / "offline"),
        "quarantine": str(base / "quarantine"),
        "work": str(base / "work"),
        "reports": str(base / "reports"),
        "catalogue": {"duckdb": str(base / "catalogue" / "pacs.duckdb"),
                      "parquet": str(base / "catalogue" / "parquet")},
        "settle_seconds": 0,
        "ingest": {"batch_size": 50, "workers": 2, "fsync": False},
        "policy": {"online_retention_years": 3},
    }
    cfg.update(overrides)
    for key in ("landing",):
        for loc in cfg[key]:
            if isinstance(loc, str) and not loc.startswith("s3://"):
                Path(loc).mkdir(parents=True, exist_ok=True)
    path = base / "pacs.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's S3 server as a real HTTP endpoint on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        self.proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10)


def query(cfg: Any, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
    """Rows of a read-only query of an archive's catalogue (the connection is closed at once)."""
    import duckdb

    con = duckdb.connect(str(cfg.duckdb), read_only=True)
    try:
        return con.execute(sql, params or {}).fetchall()
    finally:
        con.close()


def s3fs_for(server: MotoServer) -> Any:
    """A plain s3fs client of the test server (one per server; no listing cache)."""
    from s3fs import S3FileSystem

    fs = getattr(server, "_fs", None)
    if fs is None or getattr(server, "_fs_endpoint", None) != server.endpoint or server.proc is None:
        fs = S3FileSystem(endpoint_url=server.endpoint, key="testing", secret="testing", skip_instance_cache=True,
                          use_listings_cache=False)
        server._fs, server._fs_endpoint = fs, server.endpoint
    return fs


def parsed_dag(dag_id: str) -> Any:
    """One of the project's DAGs as Airflow parses it from ``dags/`` (no import error allowed)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def task_tries(dr: Any) -> dict[str, tuple[str, int]]:
    """Each task of a DAG run: its final state and how many tries it took."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dr.dag_id,
                                                 TaskInstance.run_id == dr.run_id).all()
        return {t.task_id: (str(t.state), t.try_number) for t in tis}
