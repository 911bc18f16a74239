"""Identity corrections through ``pacs patient merge`` and ``pacs study move`` (a real process of
``python -m pacs.cli``), on a real DuckDB catalogue and real DICOM files.

A merge moves every study of the old patient to the new one and marks the old one merged; a move
changes one study's patient. Both are recorded as ``correction`` rows, keep the header's patient
queryable (``study.header_patient_id``), reach the Parquet snapshot, and make later files that
name the old identity follow the correction instead of becoming ``patient_mismatch``; a
quarantined ``patient_mismatch`` file resubmitted after the correction is catalogued. A user's
mistake is one line on stderr and exit status 2, changing nothing; ``pacs check`` finds a study
left under a merged patient; a retried correction (same run) finds its row and changes nothing.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import ROOT, write_config
from helpers import query as _q
from pydicom.uid import generate_uid

from pacs import synth
from pacs.catalogue import snapshot
from pacs.config import load_config
from pacs.intake import run_ingest
from pacs.intake.quarantine import resubmit

T0 = 1_700_000_000


def _pacs(cfg: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin", "HOME": str(Path(cfg.path).parent)}
    return subprocess.run([sys.executable, "-m", "pacs.cli", "--config", str(cfg.path), *args], capture_output=True,
                          text=True, timeout=120, cwd=Path(cfg.path).parent, env=env)


class Landing:
    """Writes small CT files of chosen patient, study and series into landing, in received order."""

    def __init__(self, cfg: Any, tmp: Path) -> None:
        src = synth.generate_ct_slices(tmp / "ct", 1, per_series=1, rows=16, columns=16)
        self.template = pydicom.dcmread(next(iter(src.good())).path)
        self.cfg, self.n = cfg, 0

    def file(self, patient: str, study: str, series: str | None = None) -> str:
        ds = copy.deepcopy(self.template)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.StudyInstanceUID = patient, study
        ds.SeriesInstanceUID = series or generate_uid()
        self.n += 1
        out = Path(self.cfg.landing[0].root) / f"f{self.n:03d}.dcm"
        pydicom.dcmwrite(out, ds)
        os.utime(out, (T0 + self.n, T0 + self.n))
        return ds.SOPInstanceUID


def _patient_of_image(cfg: Any, sop: str) -> str:
    return _q(cfg, "SELECT st.patient_id FROM image i JOIN study st USING (study_instance_uid) "
                   "WHERE i.sop_instance_uid = $s", {"s": sop})[0][0]


def _snapshot_studies(cfg: Any) -> dict[str, tuple[str, str | None]]:
    rows = snapshot.with_snapshot(cfg.parquet, lambda con: con.execute(
        "SELECT study_instance_uid, patient_id, header_patient_id FROM study").fetchall())
    return {uid: (p, h) for uid, p, h in rows}


@pytest.fixture
def archive_with_two_patients(tmp_path: Path) -> tuple[Any, Landing, dict[str, str]]:
    """OLD with study S1 (2 files), NEW with study S2, and a file of S1 naming NEW quarantined."""
    cfg = load_config(write_config(tmp_path / "archive"))
    land = Landing(cfg, tmp_path)
    uids = {"S1": generate_uid(), "S2": generate_uid(), "S3": generate_uid(), "series1": generate_uid()}
    land.file("OLD-1", uids["S1"], uids["series1"])
    land.file("OLD-1", uids["S1"], uids["series1"])
    land.file("NEW-2", uids["S2"])
    assert run_ingest(cfg)["catalogued"] == 3
    uids["mismatch_sop"] = land.file("NEW-2", uids["S1"], uids["series1"])
    out = run_ingest(cfg)
    assert out["catalogued"] == 0 and out["quarantined"] == 1
    return cfg, land, uids


def test_patient_merge_files_old_studies_and_later_arrivals_under_the_new_patient(
        archive_with_two_patients: tuple[Any, Landing, dict[str, str]]) -> None:
    cfg, land, uids = archive_with_two_patients
    out = _pacs(cfg, "patient", "merge", "--from", "OLD-1", "--into", "NEW-2", "--reason", "duplicate registration")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["action"] == "patient_merge" and result["studies_moved"] == 1
    assert "OLD-1" not in out.stdout + out.stderr  # no patient ID in what a run prints or logs

    (row,) = _q(cfg, "SELECT correction_id, action, study_instance_uid, from_patient_id, to_patient_id, before, "
                     "reason, run_id FROM correction")
    assert row[:5] == (result["correction_id"], "patient_merge", None, "OLD-1", "NEW-2")
    before = json.loads(row[5])
    assert before["patient_id"] == "OLD-1" and before["merged_into"] is None
    assert before["studies"] == [{"study_instance_uid": uids["S1"], "patient_id": "OLD-1", "header_patient_id": None}]
    assert row[6] == "duplicate registration" and row[7].startswith("cli-")
    assert _q(cfg, "SELECT patient_id, merged_into, study_count FROM patient ORDER BY 1") == [
        ("NEW-2", None, 2), ("OLD-1", "NEW-2", 0)]
    assert _q(cfg, "SELECT patient_id, header_patient_id FROM study WHERE study_instance_uid = $s",
              {"s": uids["S1"]}) == [("NEW-2", "OLD-1")]

    # later arrivals: a file of S1 still naming OLD, a new study S3 naming OLD; and the resubmitted file
    late_sop = land.file("OLD-1", uids["S1"], uids["series1"])
    new_study_sop = land.file("OLD-1", uids["S3"])
    (qid,) = _q(cfg, "SELECT quarantine_id FROM quarantine WHERE reason = 'patient_mismatch'")[0]
    assert resubmit(cfg, ids=[qid])["resubmitted"] == 1
    out_ingest = run_ingest(cfg)
    assert out_ingest["catalogued"] == 3 and out_ingest["quarantined"] == 0, out_ingest
    for sop in (late_sop, new_study_sop, uids["mismatch_sop"]):
        assert _patient_of_image(cfg, sop) == "NEW-2"
    assert _q(cfg, "SELECT patient_id, header_patient_id FROM study WHERE study_instance_uid = $s",
              {"s": uids["S3"]}) == [("NEW-2", "OLD-1")]  # the header's patient stays queryable
    assert _q(cfg, "SELECT patient_id, study_count FROM patient ORDER BY 1") == [("NEW-2", 3), ("OLD-1", 0)]

    snap = _snapshot_studies(cfg)
    assert snap[uids["S1"]] == ("NEW-2", "OLD-1") and snap[uids["S3"]] == ("NEW-2", "OLD-1")
    assert snap[uids["S2"]] == ("NEW-2", None)
    check = _pacs(cfg, "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_study_move_files_later_files_naming_the_old_patient_under_the_new_one(
        archive_with_two_patients: tuple[Any, Landing, dict[str, str]]) -> None:
    cfg, land, uids = archive_with_two_patients
    out = _pacs(cfg, "study", "move", "--study", uids["S1"], "--to-patient", "NEW-2", "--reason", "wrong worklist")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["action"] == "study_move"
    (row,) = _q(cfg, "SELECT action, study_instance_uid, from_patient_id, to_patient_id, before FROM correction")
    assert row[:4] == ("study_move", uids["S1"], "OLD-1", "NEW-2")
    assert json.loads(row[4]) == {"study_instance_uid": uids["S1"], "patient_id": "OLD-1", "header_patient_id": None}
    assert _q(cfg, "SELECT patient_id, merged_into, study_count FROM patient ORDER BY 1") == [
        ("NEW-2", None, 2), ("OLD-1", None, 0)]

    late_sop = land.file("OLD-1", uids["S1"], uids["series1"])   # the modality still names OLD
    other_sop = land.file("OLD-1", uids["S3"])                   # OLD is not merged: its own study
    (qid,) = _q(cfg, "SELECT quarantine_id FROM quarantine WHERE reason = 'patient_mismatch'")[0]
    resubmit(cfg, ids=[qid])
    assert run_ingest(cfg)["catalogued"] == 3
    assert _patient_of_image(cfg, late_sop) == "NEW-2" and _patient_of_image(cfg, uids["mismatch_sop"]) == "NEW-2"
    assert _patient_of_image(cfg, other_sop) == "OLD-1"
    assert _q(cfg, "SELECT patient_id, study_count FROM patient ORDER BY 1") == [("NEW-2", 2), ("OLD-1", 1)]
    assert _snapshot_studies(cfg)[uids["S1"]] == ("NEW-2", "OLD-1")
    # a file of S1 naming a third patient is still a mismatch
    land.file("OTHER-3", uids["S1"], uids["series1"])
    assert run_ingest(cfg)["quarantined"] == 1
    check = _pacs(cfg, "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_users_mistake_is_one_line_and_exit_status_2_and_changes_nothing(
        archive_with_two_patients: tuple[Any, Landing, dict[str, str]]) -> None:
    cfg, _land, uids = archive_with_two_patients
    mistakes = {
        "unknown patient": ("patient", "merge", "--from", "NOBODY", "--into", "NEW-2"),
        "into itself": ("patient", "merge", "--from", "NEW-2", "--into", "NEW-2"),
        "unknown study": ("study", "move", "--study", "1.2.3.4", "--to-patient", "NEW-2"),
        "unknown target": ("study", "move", "--study", uids["S1"], "--to-patient", "NOBODY"),
        "already there": ("study", "move", "--study", uids["S1"], "--to-patient", "OLD-1"),
    }
    for what, args in mistakes.items():
        out = _pacs(cfg, *args, "--reason", "test")
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 2, (what, out.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"pacs {args[0]}: "), (what, out.stderr)
        assert "Traceback" not in out.stderr
    verbose = _pacs(cfg, "-v", *mistakes["into itself"], "--reason", "test")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
    assert _pacs(cfg, "patient", "merge", "--from", "OLD-1", "--into", "NEW-2", "--reason", "x").returncode == 0
    again = _pacs(cfg, "patient", "merge", "--from", "OLD-1", "--into", "NEW-2", "--reason", "x")
    assert again.returncode == 2 and "already merged" in again.stderr
    into_merged = _pacs(cfg, "study", "move", "--study", uids["S2"], "--to-patient", "OLD-1", "--reason", "x")
    assert into_merged.returncode == 2 and "merged" in into_merged.stderr
    assert _q(cfg, "SELECT count(*) FROM correction")[0][0] == 1
    missing_reason = _pacs(cfg, "study", "move", "--study", uids["S1"], "--to-patient", "NEW-2")
    assert missing_reason.returncode == 2 and "--reason" in missing_reason.stderr


def test_pacs_check_finds_a_study_left_under_a_merged_patient_and_a_correction_of_no_study(
        archive_with_two_patients: tuple[Any, Landing, dict[str, str]]) -> None:
    import duckdb

    cfg, _land, uids = archive_with_two_patients
    assert _pacs(cfg, "patient", "merge", "--from", "OLD-1", "--into", "NEW-2", "--reason", "x").returncode == 0
    con = duckdb.connect(str(cfg.duckdb))  # damage the catalogue as no writer of the archive would
    con.execute("UPDATE study SET patient_id = 'OLD-1' WHERE study_instance_uid = $s", {"s": uids["S1"]})
    con.execute("UPDATE correction SET study_instance_uid = '1.2.3.4'")
    con.close()
    out = _pacs(cfg, "check")
    assert out.returncode == 1
    assert "studies_under_merged_patient: 1" in out.stdout + out.stderr
    assert "corrections_without_study: 1" in out.stdout + out.stderr


def test_a_retried_correction_finds_its_own_row_and_changes_nothing(
        archive_with_two_patients: tuple[Any, Landing, dict[str, str]]) -> None:
    from pacs.admin import patient_merge, study_move

    cfg, _land, uids = archive_with_two_patients
    first = study_move(cfg, study=uids["S1"], to_patient="NEW-2", reason="r", run_id="manual__retry")
    again = study_move(cfg, study=uids["S1"], to_patient="NEW-2", reason="r", run_id="manual__retry")
    assert again == {"correction_id": first["correction_id"], "action": "study_move", "already_done": True}
    merged = patient_merge(cfg, from_patient="OLD-1", into_patient="NEW-2", reason="r", run_id="manual__m")
    assert patient_merge(cfg, from_patient="OLD-1", into_patient="NEW-2", reason="r", run_id="manual__m")[
        "correction_id"] == merged["correction_id"]
    assert _q(cfg, "SELECT count(*) FROM correction")[0][0] == 2
    assert _q(cfg, "SELECT patient_id, merged_into, study_count FROM patient ORDER BY 1") == [
        ("NEW-2", None, 2), ("OLD-1", "NEW-2", 0)]
