"""KOS rejection notes in landing: Key Object Selection documents titled with an IOCM rejection
code (DCM 113001, 113037, 113038, 113039), real DICOM files written with pydicom, taken in by
intake on a real DuckDB catalogue.

A note is validated and catalogued as an instance of its own series (modality KO, no pixel data);
each instance its evidence lists gets a ``rejection`` row (source ``kos``, the note's SOP instance
UID) in the merge's transaction, whether the note comes after its instances or before them (then
the instances are rejected when they arrive). A KOS with another title is an ordinary instance.
The analysts' views leave the rejected instances out, and ``pacs check`` stays clean.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import ROOT, write_config
from helpers import query as _q
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacs import synth
from pacs.catalogue import snapshot
from pacs.config import load_config
from pacs.dicom import read_header
from pacs.dicom.rejection_note import KOS_SOP_CLASS, REJECTION_CODES
from pacs.intake import run_ingest

T0 = 1_700_000_000
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


class Landing:
    """Writes CT files and KOS documents into landing, in received order."""

    def __init__(self, cfg: Any, tmp: Path) -> None:
        src = synth.generate_ct_slices(tmp / "ct", 1, per_series=1, rows=16, columns=16)
        self.template = pydicom.dcmread(next(iter(src.good())).path)
        self.cfg, self.n = cfg, 0

    def _write(self, ds: Dataset) -> Path:
        self.n += 1
        out = Path(self.cfg.landing[0].root) / f"f{self.n:03d}.dcm"
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
        os.utime(out, (T0 + self.n, T0 + self.n))
        return out

    def image(self, study: str, series: str, sop: str | None = None) -> str:
        ds = copy.deepcopy(self.template)
        ds.SOPInstanceUID = sop or generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "P-1", study, series
        self._write(ds)
        return ds.SOPInstanceUID

    def kos(self, study: str, refs: dict[str, list[str]], *, code: str = "113001", scheme: str = "DCM") -> str:
        """A Key Object Selection document of ``study`` (its own series) whose title is (scheme, code)
        and whose evidence lists ``refs``: series UID -> SOP instance UIDs (CT images of ``study``)."""
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = KOS_SOP_CLASS
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = KOS_SOP_CLASS
        ds.PatientID, ds.PatientName, ds.PatientSex = "P-1", "Test^Patient", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
        ds.StudyDate = ds.ContentDate = self.template.StudyDate
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "KO", 99, 1
        ds.ValueType = "CONTAINER"
        title = Dataset()
        title.CodeValue, title.CodingSchemeDesignator = code, scheme
        title.CodeMeaning = REJECTION_CODES.get(code, "Of Interest")
        ds.ConceptNameCodeSequence = [title]
        series_items = []
        for series, sops in refs.items():
            item = Dataset()
            item.SeriesInstanceUID = series
            refs_seq = []
            for sop in sops:
                r = Dataset()
                r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = CT_IMAGE, sop
                refs_seq.append(r)
            item.ReferencedSOPSequence = refs_seq
            series_items.append(item)
        evidence = Dataset()
        evidence.StudyInstanceUID = study
        evidence.ReferencedSeriesSequence = series_items
        ds.CurrentRequestedProcedureEvidenceSequence = [evidence]
        self._write(ds)
        return ds.SOPInstanceUID


def _pacs_check(cfg: Any) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin", "HOME": str(Path(cfg.path).parent)}
    return subprocess.run([sys.executable, "-m", "pacs.cli", "--config", str(cfg.path), "check"],
                          capture_output=True, text=True, timeout=120, cwd=Path(cfg.path).parent, env=env)


def _rejections(cfg: Any) -> dict[str, tuple[Any, ...]]:
    return {r[0]: r[1:] for r in _q(cfg, "SELECT sop_instance_uid, series_instance_uid, study_instance_uid, code, "
                                         "meaning, source, note_sop_instance_uid FROM rejection")}


def _accepted_in_snapshot(cfg: Any) -> set[str]:
    from pacs.analyst.views import add_views

    def work(con: Any) -> set[str]:
        add_views(con)
        return {s for (s,) in con.execute("SELECT sop_instance_uid FROM accepted_image").fetchall()}

    return snapshot.with_snapshot(cfg.parquet, work)


@pytest.fixture
def landing(tmp_path: Path) -> tuple[Any, Landing]:
    cfg = load_config(write_config(tmp_path / "archive"))
    return cfg, Landing(cfg, tmp_path)


def test_a_rejection_note_after_its_instances_rejects_them_and_is_catalogued_itself(
        landing: tuple[Any, Landing]) -> None:
    cfg, land = landing
    study, series = generate_uid(), generate_uid()
    sops = [land.image(study, series) for _ in range(3)]
    assert run_ingest(cfg)["catalogued"] == 3
    note = land.kos(study, {series: sops[:2]}, code="113037")
    out = run_ingest(cfg)
    assert out["catalogued"] == 1 and out["quarantined"] == 0, out

    assert _q(cfg, "SELECT i.sop_class_uid, se.modality, i.rows, i.columns FROM image i JOIN series se "
                   "USING (series_instance_uid) WHERE sop_instance_uid = $s", {"s": note}) == [
        (KOS_SOP_CLASS, "KO", None, None)]
    assert _rejections(cfg) == {
        sop: (series, study, "113037", "Rejected for Patient Safety Reasons", "kos", note) for sop in sops[:2]}
    assert _accepted_in_snapshot(cfg) == {sops[2], note}
    check = _pacs_check(cfg)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_rejection_note_before_its_instances_rejects_them_when_they_arrive(landing: tuple[Any, Landing]) -> None:
    cfg, land = landing
    study, series = generate_uid(), generate_uid()
    early, late = generate_uid(), generate_uid()
    note = land.kos(study, {series: [early, late]}, code="113038")
    assert run_ingest(cfg)["catalogued"] == 1
    assert set(_rejections(cfg)) == {early, late}  # recorded before its instances exist
    assert _accepted_in_snapshot(cfg) == {note}
    check = _pacs_check(cfg)
    assert check.returncode == 0, check.stdout + check.stderr

    land.image(study, series, early)
    other = land.image(study, series)
    assert run_ingest(cfg)["catalogued"] == 2
    land.image(study, series, late)
    assert run_ingest(cfg)["catalogued"] == 1
    assert _accepted_in_snapshot(cfg) == {note, other}
    assert _q(cfg, "SELECT count(*) FROM image")[0][0] == 4  # kept: catalogued, not quarantined
    assert _rejections(cfg)[late] == (series, study, "113038", "Incorrect Modality Worklist Entry", "kos", note)
    check = _pacs_check(cfg)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_first_rejection_stands_over_a_later_note(landing: tuple[Any, Landing]) -> None:
    cfg, land = landing
    study, series = generate_uid(), generate_uid()
    sop = land.image(study, series)
    first = land.kos(study, {series: [sop]}, code="113001")
    land.kos(study, {series: [sop]}, code="113039")  # the same merge
    assert run_ingest(cfg)["catalogued"] == 3
    land.kos(study, {series: [sop]}, code="113037")  # a later merge
    assert run_ingest(cfg)["catalogued"] == 1
    assert _rejections(cfg) == {sop: (series, study, "113001", "Rejected for Quality Reasons", "kos", first)}
    assert _pacs_check(cfg).returncode == 0


def test_a_kos_with_another_title_is_an_ordinary_instance(landing: tuple[Any, Landing]) -> None:
    cfg, land = landing
    study, series = generate_uid(), generate_uid()
    sop = land.image(study, series)
    of_interest = land.kos(study, {series: [sop]}, code="113000")
    not_dcm = land.kos(study, {series: [sop]}, code="113001", scheme="99LOCAL")
    assert run_ingest(cfg)["catalogued"] == 3
    assert _q(cfg, "SELECT count(*) FROM rejection")[0][0] == 0
    assert _accepted_in_snapshot(cfg) == {sop, of_interest, not_dcm}
    assert _pacs_check(cfg).returncode == 0


def test_the_header_reader_reads_what_a_note_rejects_and_nothing_for_an_image(landing: tuple[Any, Landing]) -> None:
    import fsspec

    cfg, land = landing
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(40)]  # an evidence sequence longer than the reader's defer size
    land.kos(study, {series: sops})
    land.image(study, series)
    fs = fsspec.filesystem("file")
    note, image = sorted(Path(cfg.landing[0].root).iterdir())
    import json

    refs = json.loads(read_header(fs, str(note))["rejection_note"])
    assert refs["code"] == "113001" and refs["refs"] == [[study, series, s] for s in sops]
    assert read_header(fs, str(image))["rejection_note"] is None
