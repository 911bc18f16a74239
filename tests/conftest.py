"""Shared fixtures: a private Airflow home, throw-away archives, moto's S3 server.

The helpers behind them live in ``helpers.py`` (tests import them from there).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, MotoServer, write_config

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


@pytest.fixture
def archive(tmp_path: Path) -> Callable[..., Any]:
    """Factory: ``archive(**overrides)`` writes a config under tmp_path and returns the loaded Config."""
    from pacs.config import load_config

    def make(**overrides: Any) -> Any:
        return load_config(write_config(tmp_path / "archive", **overrides))

    return make


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
