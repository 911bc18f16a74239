"""The ``pacs_backup`` DAG through Airflow (``dag.test()``) on a real catalogue: each run is a
new verified generation in the offline tier, ``backup.keep`` of them are kept, and a restored
generation is the catalogue as it was when that run took it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import parsed_dag
from helpers import query as _q

from pacs import synth
from pacs.catalogue import backup as backups
from pacs.catalogue.checks import check
from pacs.intake import run_ingest

pytestmark = pytest.mark.slow

DAY = dt.datetime(2026, 6, 1, 2, 30, tzinfo=dt.UTC)


def test_nightly_runs_keep_verified_generations(archive, airflow_db, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    cfg = archive(backup={"keep": 2})
    monkeypatch.setenv("PACS_CONFIG", str(cfg.path))
    landing = Path(cfg.landing[0].root)
    synth.generate_archive(landing / "a", seed=41, patients=2, count_scale=0.02, size_scale=0.02)
    run_ingest(cfg)
    first_images = _q(cfg, "SELECT count(*) FROM image")[0][0]
    dag = parsed_dag("pacs_backup")
    runs = []
    for day in range(3):
        if day == 1:  # more images arrive between the first and the second backup
            synth.generate_archive(landing / "b", seed=42, patients=2, count_scale=0.02, size_scale=0.02)
            run_ingest(cfg)
        runs.append(dag.test(logical_date=DAY + dt.timedelta(days=day)))
    assert [str(r.state) for r in runs] == ["success"] * 3
    gens = backups.generations(cfg)
    assert [g.number for g in gens] == [2, 3]  # keep: 2
    assert all(g.manifest["run_id"] == r.run_id for g, r in zip(gens, runs[1:], strict=True))
    assert gens[-1].manifest["counts"]["image"] == _q(cfg, "SELECT count(*) FROM image")[0][0] > first_images
    backups.restore(cfg, 2, force=True)
    assert check(cfg) == []
