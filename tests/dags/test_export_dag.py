"""The ``pacs_export`` DAG through Airflow (``dag.test()``) on a real catalogue and real files: a
run exports the study it names, verified; a run without a target fails at once, writing nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from helpers import parsed_dag, task_tries
from helpers import query as _q

from pacs import synth
from pacs.intake import run_ingest

pytestmark = pytest.mark.slow

DAY = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)


def test_a_run_exports_the_named_study_and_a_run_without_target_fails_at_once(
        archive, airflow_db, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = archive()
    monkeypatch.setenv("PACS_CONFIG", str(cfg.path))
    synth.generate_archive(Path(cfg.landing[0].root), seed=61, patients=2, count_scale=0.02, size_scale=0.02)
    run_ingest(cfg)
    uid, accession = _q(cfg, "SELECT study_instance_uid, accession_number FROM study ORDER BY 1 LIMIT 1")[0]
    expected = dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image WHERE study_instance_uid = $u", {"u": uid}))
    target = tmp_path / "cohort"

    conf = {"target": str(target), "accession_numbers": [accession]}
    dr = parsed_dag("pacs_export").test(logical_date=DAY, run_conf=conf)

    assert str(dr.state) == "success"
    got = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in target.rglob("*.dcm")}
    assert got == expected and (target / "manifest.csv").exists()

    bad = parsed_dag("pacs_export").test(logical_date=DAY + dt.timedelta(minutes=1), run_conf={"study_uids": [uid]})
    assert str(bad.state) == "failed" and task_tries(bad)["select"] == ("failed", 1)
