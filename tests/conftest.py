"""Shared fixtures: project paths, throw-away archive configurations, moto's S3 server.

Everything is real: local folders, DuckDB files, pydicom's own test files, and an S3 endpoint
served over HTTP by moto on 127.0.0.1 (started here, never a patched client).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

# Tests never touch the user's Airflow or S3 settings: a private AIRFLOW_HOME for the session,
# set before anything imports airflow.
if "PACS_TEST_AIRFLOW_HOME" not in os.environ:
    os.environ["PACS_TEST_AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="pacs-test-airflow-")
os.environ["AIRFLOW_HOME"] = os.environ["PACS_TEST_AIRFLOW_HOME"]
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata DB (SQLite) in the session's AIRFLOW_HOME, with the catalogue pool."""
    home = Path(os.environ["AIRFLOW_HOME"])
    airflow = Path(sys.executable).with_name("airflow")
    if not (home / ".migrated").exists():
        subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
        subprocess.run([str(airflow), "pools", "set", "pacs_catalogue", "1", "catalogue writer"],
                       check=True, capture_output=True)
        (home / ".migrated").touch()
    return home


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


@pytest.fixture
def archive(tmp_path: Path) -> Callable[..., Any]:
    """Factory: ``archive(**overrides)`` writes a config under tmp_path and returns the loaded Config."""
    from pacs.config import load_config

    def make(**overrides: Any) -> Any:
        return load_config(write_config(tmp_path / "archive", **overrides))

    return make


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


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A clean S3 endpoint for one test; credentials come from the environment, as in production."""
    moto_server.reset()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    import fsspec

    fsspec.config.conf.pop("s3", None)
    from s3fs import S3FileSystem

    S3FileSystem.clear_instance_cache()
    yield moto_server
    S3FileSystem.clear_instance_cache()


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
