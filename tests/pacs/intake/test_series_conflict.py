"""Catalogue consistency at the gate: a series belongs to one study.

A file whose SeriesInstanceUID is catalogued under another study, or was received earlier in the
same merge under another study, is quarantined as ``series_conflict`` (its original bytes kept),
so `pacs check` stays clean; files of the same series and study are catalogued as usual.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import query as _q
from pydicom.uid import generate_uid

from pacs import synth
from pacs.catalogue.checks import check
from pacs.dicom.validation import SERIES_CONFLICT
from pacs.intake import run_ingest

T0 = 1_700_000_000
DETAIL = "the series is already catalogued, or was received earlier, under another study"


def _slices(tmp_path: Path, n: int = 4) -> list[pydicom.Dataset]:
    """``n`` small CT slices of one patient, one study and one series."""
    src = synth.generate_ct_slices(tmp_path / "ct", n, per_series=n, rows=16, columns=16)
    datasets = [pydicom.dcmread(f.path) for f in sorted(src.good(), key=lambda f: f.path)]
    assert len({(ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID) for ds in datasets}) == 1
    return datasets


def _land(cfg: Any, name: str, ds: pydicom.Dataset, received: int) -> Path:
    """Write ``ds`` into landing as ``name``, received at ``T0 + received`` (its mtime)."""
    out = Path(cfg.landing[0].root) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(out, ds)
    mtime = T0 + received
    os.utime(out, (mtime, mtime))
    return out


def _with(ds: pydicom.Dataset, **changes: str) -> pydicom.Dataset:
    """A copy of ``ds`` with a fresh SOP instance UID (unless given) and the given elements set."""
    out = copy.deepcopy(ds)  # Dataset.copy() shares the data elements with ``ds``
    out.SOPInstanceUID = changes.pop("SOPInstanceUID", None) or generate_uid()
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    for keyword, value in changes.items():
        setattr(out, keyword, value)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _quarantined(cfg: Any) -> dict[str, tuple[str, str, str, str]]:
    """Quarantine rows by source file name: (reason, detail, quarantine_uri, sha256)."""
    rows = _q(cfg, "SELECT source_uri, reason, detail, quarantine_uri, sha256 FROM quarantine")
    return {Path(src).name: (reason, detail, quri, sha) for src, reason, detail, quri, sha in rows}


def _assert_consistent_end_state(cfg: Any, inputs: int, summaries: list[dict[str, Any]]) -> None:
    """Every input is exactly one outcome; the online tier holds exactly the catalogued images;
    landing is empty; `pacs check` finds no problem."""
    catalogued = sum(s["catalogued"] for s in summaries)
    quarantined = sum(s["quarantined"] for s in summaries)
    duplicates = sum(s["duplicates"] for s in summaries)
    assert sum(s["files"] for s in summaries) == inputs
    assert catalogued + quarantined + duplicates == inputs
    (images,) = _q(cfg, "SELECT count(*) FROM image")[0]
    (rejects,) = _q(cfg, "SELECT count(*) FROM quarantine")[0]
    assert images == catalogued and rejects == quarantined
    online = sorted(str(p) for p in Path(cfg.online.root).rglob("*") if p.is_file())
    assert len(online) == images
    assert online == sorted(u for (u,) in _q(cfg, "SELECT uri FROM image"))
    assert [p for p in Path(cfg.landing[0].root).rglob("*") if p.is_file()] == []
    assert check(cfg) == []


def _assert_series_conflict(cfg: Any, name: str, original_sha: str) -> None:
    """``name`` is quarantined as series_conflict with its original bytes."""
    reason, detail, quri, sha = _quarantined(cfg)[name]
    assert (reason, detail) == (SERIES_CONFLICT, DETAIL)
    assert sha == original_sha
    assert hashlib.sha256(Path(quri).read_bytes()).hexdigest() == original_sha


@pytest.mark.parametrize("batch_size", [1, 50], ids=["batch_per_file", "one_batch"])
@pytest.mark.parametrize("other_study_first", [False, True], ids=["series_study_first", "other_study_first"])
def test_series_received_under_two_studies_in_one_run_keeps_the_first_received_study(
        archive: Any, tmp_path: Path, batch_size: int, other_study_first: bool) -> None:
    slices = _slices(tmp_path)
    cfg = archive(ingest={"batch_size": batch_size, "workers": 2, "fsync": False})
    series_study, other_study = slices[0].StudyInstanceUID, generate_uid()
    # Names sort opposite to the received order, so the outcome follows received_at, not names
    # or batches. The same patient, the same series, another study.
    other = _with(slices[0], StudyInstanceUID=other_study)
    other_name, other_at = ("z-other-study.dcm", -1) if other_study_first else ("a-other-study.dcm", 10)
    paths = {other_name: _land(cfg, other_name, other, other_at)}
    for i, ds in enumerate(slices):
        name = f"m{9 - i}-series-study.dcm"
        paths[name] = _land(cfg, name, ds, i)
    shas = {name: _sha(p) for name, p in paths.items()}

    summary = run_ingest(cfg)

    if other_study_first:
        kept, lost = other_study, series_study
        rejected = [n for n in paths if n != other_name]
    else:
        kept, lost = series_study, other_study
        rejected = [other_name]
    assert summary["reasons"] == {SERIES_CONFLICT: len(rejected)}
    assert summary["catalogued"] == len(paths) - len(rejected)
    assert _q(cfg, "SELECT series_instance_uid, study_instance_uid, image_count FROM series") == [
        (slices[0].SeriesInstanceUID, kept, len(paths) - len(rejected))]
    assert _q(cfg, "SELECT count(*) FROM study WHERE study_instance_uid = $s", {"s": lost}) == [(0,)]
    assert sorted(_quarantined(cfg)) == sorted(rejected)
    for name in rejected:
        _assert_series_conflict(cfg, name, shas[name])
    _assert_consistent_end_state(cfg, len(paths), [summary])


def test_series_catalogued_by_an_earlier_run_rejects_a_file_under_another_study(
        archive: Any, tmp_path: Path) -> None:
    slices = _slices(tmp_path)
    cfg = archive()
    first = [_land(cfg, f"run1-{i}.dcm", ds, i) for i, ds in enumerate(slices[:3])]
    run1 = run_ingest(cfg)
    assert run1["catalogued"] == len(first) and run1["quarantined"] == 0

    conflict = _land(cfg, "run2-other-study.dcm", _with(slices[3], StudyInstanceUID=generate_uid()), 10)
    legitimate = _land(cfg, "run2-same-study.dcm", slices[3], 11)
    resend = _land(cfg, "run2-resend.dcm", slices[0], 12)
    conflict_sha = _sha(conflict)
    assert legitimate.exists() and resend.exists()
    run2 = run_ingest(cfg)

    assert (run2["catalogued"], run2["duplicates"], run2["reasons"]) == (1, 1, {SERIES_CONFLICT: 1})
    assert _q(cfg, "SELECT study_instance_uid, image_count FROM series") == [(slices[0].StudyInstanceUID, 4)]
    assert _q(cfg, "SELECT count(*), sum(image_count), sum(series_count) FROM study") == [(1, 4, 1)]
    assert sorted(_quarantined(cfg)) == ["run2-other-study.dcm"]
    _assert_series_conflict(cfg, "run2-other-study.dcm", conflict_sha)
    _assert_consistent_end_state(cfg, len(first) + 3, [run1, run2])


def test_more_specific_reasons_take_precedence_over_series_conflict(archive: Any, tmp_path: Path) -> None:
    """Against a catalogued series: an identical resend stays a duplicate, other bytes for a
    catalogued SOP instance are a sop_conflict, a catalogued study under another patient is a
    patient_mismatch, even when the file also names the series under another study."""
    slices = _slices(tmp_path)
    cfg = archive()
    # run 1: series A of study S, and a series B of another study T of the same patient
    study_t, series_b = generate_uid(), generate_uid()
    inputs = [_land(cfg, "run1-a0.dcm", slices[0], 0), _land(cfg, "run1-a1.dcm", slices[1], 1),
              _land(cfg, "run1-b0.dcm", _with(slices[2], StudyInstanceUID=study_t, SeriesInstanceUID=series_b), 2)]
    run1 = run_ingest(cfg)
    assert run1["catalogued"] == 3

    inputs += [
        # identical bytes of a catalogued image
        _land(cfg, "run2-duplicate.dcm", slices[0], 10),
        # a catalogued SOP instance, series A under study T
        _land(cfg, "run2-sop.dcm", _with(slices[1], SOPInstanceUID=slices[1].SOPInstanceUID,
                                         StudyInstanceUID=study_t), 11),
        # study T (catalogued under the patient) under another patient, and series A under T
        _land(cfg, "run2-patient.dcm", _with(slices[3], StudyInstanceUID=study_t, PatientID="SOMEONE-ELSE"), 12),
        # only the series conflicts: series B under study S
        _land(cfg, "run2-series.dcm", _with(slices[3], SeriesInstanceUID=series_b), 13),
    ]
    run2 = run_ingest(cfg)

    assert run2["catalogued"] == 0 and run2["duplicates"] == 1
    assert {name: row[0] for name, row in _quarantined(cfg).items()} == {
        "run2-sop.dcm": "sop_conflict", "run2-patient.dcm": "patient_mismatch", "run2-series.dcm": SERIES_CONFLICT}
    _assert_consistent_end_state(cfg, len(inputs), [run1, run2])


def test_a_resend_of_a_quarantined_series_conflict_is_quarantined_again(archive: Any, tmp_path: Path) -> None:
    """Two copies of one conflicting file in one run are both kept in quarantine (none is
    dropped as a duplicate of a file that was not catalogued), and a later file of the same
    series and study is still catalogued."""
    slices = _slices(tmp_path)
    cfg = archive()
    conflict = _with(slices[1], StudyInstanceUID=generate_uid())
    paths = [_land(cfg, "a.dcm", slices[0], 0), _land(cfg, "b.dcm", conflict, 1),
             _land(cfg, "c.dcm", conflict, 2), _land(cfg, "d.dcm", slices[2], 3)]
    shas = [_sha(p) for p in paths]
    summary = run_ingest(cfg)
    assert summary["catalogued"] == 2 and summary["reasons"] == {SERIES_CONFLICT: 2}
    _assert_series_conflict(cfg, "b.dcm", shas[1])
    _assert_series_conflict(cfg, "c.dcm", shas[2])
    assert _q(cfg, "SELECT image_count FROM series") == [(2,)]
    _assert_consistent_end_state(cfg, len(paths), [summary])


def test_a_file_rejected_for_its_patient_does_not_claim_its_series(archive: Any, tmp_path: Path) -> None:
    """In one merge, the series' study is the one its first acceptable file names: an earlier
    file quarantined as patient_mismatch does not turn the later, acceptable ones into
    series conflicts."""
    slices = _slices(tmp_path)
    cfg = archive()
    study_t = generate_uid()
    inputs = [_land(cfg, "run1-t.dcm", _with(slices[0], StudyInstanceUID=study_t, SeriesInstanceUID=generate_uid(),
                                             PatientID="SOMEONE-ELSE"), 0)]
    run1 = run_ingest(cfg)
    assert run1["catalogued"] == 1

    inputs += [
        # received first: study T, catalogued under another patient, names the new series
        _land(cfg, "run2-a.dcm", _with(slices[1], StudyInstanceUID=study_t), 10),
        _land(cfg, "run2-b.dcm", slices[2], 11),
        _land(cfg, "run2-c.dcm", slices[3], 12),
    ]
    run2 = run_ingest(cfg)

    assert run2["catalogued"] == 2 and run2["reasons"] == {"patient_mismatch": 1}
    assert sorted(_quarantined(cfg)) == ["run2-a.dcm"]
    assert _q(cfg, "SELECT study_instance_uid, image_count FROM series WHERE series_instance_uid = $s",
              {"s": slices[0].SeriesInstanceUID}) == [(slices[0].StudyInstanceUID, 2)]
    _assert_consistent_end_state(cfg, len(inputs), [run1, run2])
