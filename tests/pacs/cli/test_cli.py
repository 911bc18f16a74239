"""The ``pacs`` command: a user's mistake prints one line naming what and how to fix, exit 1;
``-v`` shows the traceback."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from helpers import ROOT


def _pacs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pacs.cli", *args], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize(("args", "says"), [
    (["resubmit", "--reason", "no_such_reason"], "unknown reason code 'no_such_reason'; known:"),
    (["check"], "does not exist yet (run pacs_ingest first)"),
], ids=["unknown-reason", "no-catalogue"])
def test_a_mistake_is_one_line_and_exit_1(archive: Any, args: list[str], says: str) -> None:
    cfg = archive()
    if args[0] == "resubmit":
        cfg.duckdb.parent.mkdir(parents=True, exist_ok=True)
        from pacs import catalogue

        catalogue.connect(cfg.duckdb).close()
    out = _pacs("--config", str(cfg.path), *args)
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0] and lines[0].startswith(f"pacs {args[0]}:"), out.stderr
    assert "Traceback" not in out.stderr
    verbose = _pacs("--config", str(cfg.path), "-v", *args)
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr


def test_a_configuration_mistake_names_the_key(tmp_path) -> None:
    bad = tmp_path / "pacs.yaml"
    bad.write_text("landing: [l]\nonline: o\noffline: f\nquarantine: q\ncatalogue: {duckdb: c.duckdb, parquet: p}\n"
                   "ingest: {batch_sise: 10}\n")
    out = _pacs("--config", str(bad), "summary")
    assert out.returncode == 1
    assert "ingest: unknown key(s) ['batch_sise']" in out.stderr and "Traceback" not in out.stderr
