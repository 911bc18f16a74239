"""Identity corrections through Airflow: the ``pacs_admin`` DAG (``dag.test()``), on a real
DuckDB catalogue and real DICOM files.

A ``study_move`` run and a ``patient_merge`` run each record one ``correction`` row under the
run's id; later files naming the old identity are catalogued under the effective patient, the
snapshot shows it, and ``pacs check`` stays clean; a run naming an unknown study fails at once
(a terminal error is not retried) and changes nothing. A ``reject`` run records one
``rejection`` row per instance of the series under the run's id; the analysts' views on the
snapshot leave them out; a run with an unknown code fails at once and changes nothing.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import ROOT, task_tries
from helpers import query as _q
from pydicom.uid import generate_uid

from pacs import synth
from pacs.catalogue import snapshot
from pacs.catalogue.checks import check
from pacs.intake import run_ingest

pytestmark = pytest.mark.slow

DAY = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)
T0 = 1_700_000_000


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


@pytest.fixture
def landed(archive, airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    cfg = archive()
    monkeypatch.setenv("PACS_CONFIG", str(cfg.path))
    src = synth.generate_ct_slices(tmp_path / "ct", 1, per_series=1, rows=16, columns=16)
    template = pydicom.dcmread(next(iter(src.good())).path)
    count = [0]

    def land(patient: str, study: str, series: str) -> str:
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
        count[0] += 1
        out = Path(cfg.landing[0].root) / f"f{count[0]:03d}.dcm"
        pydicom.dcmwrite(out, ds)
        os.utime(out, (T0 + count[0], T0 + count[0]))
        return ds.SOPInstanceUID

    return cfg, land


def test_study_move_and_patient_merge_runs_are_recorded_and_later_files_follow_them(landed) -> None:
    cfg, land = landed
    s1, s2, s3 = generate_uid(), generate_uid(), generate_uid()
    series1 = generate_uid()
    land("WRONG-1", s1, series1)
    land("RIGHT-2", s2, generate_uid())
    land("ALIAS-3", s3, generate_uid())
    assert run_ingest(cfg)["catalogued"] == 3

    move = _dag("pacs_admin").test(logical_date=DAY, run_conf={
        "action": "study_move", "study": s1, "to_patient": "RIGHT-2", "reason": "modality worklist error"})
    assert str(move.state) == "success", task_tries(move)
    merge = _dag("pacs_admin").test(logical_date=DAY + dt.timedelta(minutes=1), run_conf={
        "action": "patient_merge", "from_patient": "ALIAS-3", "into_patient": "RIGHT-2", "reason": "duplicate MRN"})
    assert str(merge.state) == "success", task_tries(merge)
    assert _q(cfg, "SELECT action, study_instance_uid, from_patient_id, to_patient_id, run_id FROM correction "
                   "ORDER BY corrected_at") == [
        ("study_move", s1, "WRONG-1", "RIGHT-2", move.run_id),
        ("patient_merge", None, "ALIAS-3", "RIGHT-2", merge.run_id)]

    late = land("WRONG-1", s1, series1)        # the modality still names the wrong patient
    new_study = generate_uid()
    aliased = land("ALIAS-3", new_study, generate_uid())  # a new study under the merged patient ID
    out = run_ingest(cfg)
    assert out["catalogued"] == 2 and out["quarantined"] == 0, out
    for sop in (late, aliased):
        assert _q(cfg, "SELECT st.patient_id FROM image i JOIN study st USING (study_instance_uid) "
                       "WHERE sop_instance_uid = $s", {"s": sop}) == [("RIGHT-2",)]
    assert _q(cfg, "SELECT patient_id, merged_into, study_count FROM patient ORDER BY 1") == [
        ("ALIAS-3", "RIGHT-2", 0), ("RIGHT-2", None, 4), ("WRONG-1", None, 0)]
    snap = snapshot.with_snapshot(cfg.parquet, lambda con: dict(con.execute(
        "SELECT study_instance_uid, patient_id FROM study").fetchall()))
    assert snap == {s1: "RIGHT-2", s2: "RIGHT-2", s3: "RIGHT-2", new_study: "RIGHT-2"}
    assert check(cfg) == []


def test_a_run_naming_an_unknown_study_fails_at_once_and_changes_nothing(landed) -> None:
    cfg, land = landed
    land("P-1", generate_uid(), generate_uid())
    run_ingest(cfg)
    dr = _dag("pacs_admin").test(logical_date=DAY, run_conf={
        "action": "study_move", "study": "1.2.3.999", "to_patient": "P-1", "reason": "test"})
    assert str(dr.state) == "failed"
    assert task_tries(dr)["correct"] == ("failed", 1), "a terminal error was retried"
    assert _q(cfg, "SELECT count(*) FROM correction")[0][0] == 0


def test_a_reject_run_records_the_rejections_and_the_snapshot_views_leave_them_out(landed) -> None:
    from pacs.analyst.views import add_views

    cfg, land = landed
    study, bad, good = generate_uid(), generate_uid(), generate_uid()
    rejected = [land("P-1", study, bad) for _ in range(2)]
    kept = land("P-1", study, good)
    assert run_ingest(cfg)["catalogued"] == 3

    wrong = _dag("pacs_admin").test(logical_date=DAY, run_conf={
        "action": "reject", "series": bad, "reason": "bad quality"})
    assert str(wrong.state) == "failed"
    assert task_tries(wrong)["correct"] == ("failed", 1), "a terminal error was retried"
    assert _q(cfg, "SELECT count(*) FROM rejection")[0][0] == 0

    dr = _dag("pacs_admin").test(logical_date=DAY + dt.timedelta(minutes=1), run_conf={
        "action": "reject", "series": bad, "reason": "113001", "note": "motion"})
    assert str(dr.state) == "success", task_tries(dr)
    assert sorted(_q(cfg, "SELECT sop_instance_uid, code, source, reason, run_id FROM rejection")) == sorted(
        (sop, "113001", "cli", "motion", dr.run_id) for sop in rejected)

    def work(con: Any) -> tuple[Any, ...]:
        add_views(con)
        return con.execute("SELECT (SELECT list(sop_instance_uid) FROM accepted_image), "
                           "(SELECT list(image_count) FROM study_patient)").fetchall()[0]

    assert snapshot.with_snapshot(cfg.parquet, work) == ([kept], [1])
    assert check(cfg) == []
