"""Fixtures of the departmental tests: an archive, its landing, and the analysts' views read as
`pacs query` reads them (the Parquet snapshot)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dept_files import Landing
from helpers import write_config

from pacs.config import Config, load_config


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path / "archive"))


@pytest.fixture
def landing(cfg: Config) -> Landing:
    return Landing(cfg)


@pytest.fixture
def views() -> Callable[..., list[dict[str, Any]]]:
    """``views(cfg, sql, key=None)``: rows of a query over the snapshot with the analysts' views
    (and the de-identified ones with a key), as `pacs query` defines them."""
    from pacs.analyst.views import add_views
    from pacs.catalogue import snapshot

    def run(cfg: Config, query: str, key: bytes | None = None) -> list[dict[str, Any]]:
        def work(con: Any) -> list[dict[str, Any]]:
            add_views(con, key=key)
            return con.sql(query).to_arrow_table().to_pylist()

        return snapshot.with_snapshot(cfg.parquet, work)

    return run
