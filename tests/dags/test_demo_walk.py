"""``make demo`` walks the whole product: intake, lifecycle (packing), a recall, fixity, the report.

The demo runs for real (``python -m pacs.demo``'s ``main``, each DAG through ``airflow dags
test`` on the session's SQLite Airflow) on a smaller hospital, in a throw-away project whose
``var/`` holds the archive, so the real project's ``var/`` is never touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import yaml
from helpers import ROOT

RUN = ("import sys; from pathlib import Path; from pacs import demo; "
       "sys.exit(demo.main(var=Path(sys.argv[1]), patients=40))")


def test_make_demo_walks_the_whole_product(airflow_db: Path, tmp_path: Path) -> None:
    var = tmp_path / "var"
    data = var / "data"
    config = tmp_path / "config" / "pacs.yaml"
    config.parent.mkdir(parents=True)
    shipped = yaml.safe_load((ROOT / "config" / "pacs.yaml").read_text())
    shipped.update({"landing": [str(data / "landing")], "online": str(data / "online"),
                    "offline": str(data / "offline"), "quarantine": str(data / "quarantine"),
                    "work": str(data / "work"), "reports": str(data / "reports"),
                    "catalogue": {"duckdb": str(data / "catalogue" / "pacs.duckdb"),
                                  "parquet": str(data / "catalogue" / "parquet")},
                    "settle_seconds": 0,
                    "policy": "${PACS_POLICY:-" + str(ROOT / "config" / "lifecycle.yaml") + "}"})
    config.write_text(yaml.safe_dump(shipped))
    env = {**os.environ, "PACS_CONFIG": str(config), "PYTHONPATH": str(ROOT / "plugins")}
    env.pop("PACS_POLICY", None)
    out = subprocess.run([sys.executable, "-c", RUN, str(var)], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    for step in ("pacs_ingest", "pacs_lifecycle", "pacs_recall", "pacs_fixity", "pacs_capacity_report",
                 "where everything is"):
        assert step in text, step
    report = data / "reports" / "capacity" / "latest"
    assert str(report / "report.html") in text and (report / "report.html").stat().st_size > 10_000
    summary = json.loads((report / "summary.json").read_text())
    with duckdb.connect(str(data / "catalogue" / "pacs.duckdb"), read_only=True) as con:
        offline = con.execute("SELECT count(*) FROM study WHERE tier_state = 'offline'").fetchall()[0][0]
        packed = con.execute("SELECT count(*) FROM image WHERE offline_offset IS NOT NULL").fetchall()[0][0]
        recalled = con.execute("SELECT count(*) FROM recall WHERE state = 'online'").fetchall()[0][0]
        fixity = con.execute("SELECT online_checked, findings FROM fixity_run").fetchall()
    assert offline > 0 and packed > 0  # old studies went offline, packed one tar per series
    moved = re.search(r"(\d+) of (\d+) studies offline", text)
    assert moved and int(moved.group(1)) == offline + recalled  # what lifecycle printed, before the recall
    assert recalled == 1 and "the study is online, pinned online until" in text
    assert fixity and fixity[0][0] > 0 and fixity[0][1] == 0
    for tier in ("online", "offline"):  # the demo sizes its tiers to its archive
        assert 50 <= summary["tiers"][tier]["utilisation_pct"] <= 90, summary["tiers"]
    assert summary["report_date"] == "2026-11-01"
