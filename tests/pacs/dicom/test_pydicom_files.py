"""Every DICOM file that pydicom ships, through intake: each one catalogued or quarantined.

The expected outcome of each file is pinned below, and each expectation is also *justified*
independently of the archive's code (with pydicom and byte comparisons), so a wrong table
cannot hide a wrong archive. Files are "received" in path order (mtime), so for SOP instances
that pydicom ships in several encodings the first received copy is catalogued and the later
ones, with different bytes, are ``sop_conflict``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import duckdb
import pydicom
import pydicom.data
import pytest
from pydicom.data import get_testdata_files

from pacs import journal
from pacs.intake import run_ingest

DATA = Path(pydicom.data.__file__).parent
T0 = 1_600_000_000

# The TINY_ALPHA DICOMDIR set: 50 small valid images, all catalogued.
TINY_ALPHA_IMAGES = 50
EXPECTED: dict[str, str] = {
    "test_files/693_J2KI.dcm": "catalogued",
    "test_files/CT_small.dcm": "catalogued",
    "test_files/ExplVR_BigEnd.dcm": "missing_tag",
    "test_files/ExplVR_BigEndNoMeta.dcm": "missing_tag",
    "test_files/ExplVR_LitEndNoMeta.dcm": "missing_tag",
    "test_files/GDCMJ2K_TextGBR.dcm": "missing_tag",
    "test_files/J2K_pixelrep_mismatch.dcm": "catalogued",
    "test_files/JPEG-lossy.dcm": "catalogued",
    "test_files/JPEG2000-embedded-sequence-delimiter.dcm": "catalogued",
    "test_files/JPEG2000.dcm": "sop_conflict",
    "test_files/JPEGLSNearLossless_08.dcm": "missing_tag",
    "test_files/JPEGLSNearLossless_16.dcm": "missing_tag",
    "test_files/JPGExtended.dcm": "sop_conflict",
    "test_files/MR_small.dcm": "catalogued",
    "test_files/MR_small_RLE.dcm": "sop_conflict",
    "test_files/MR_small_bigendian.dcm": "sop_conflict",
    "test_files/MR_small_expb.dcm": "sop_conflict",
    "test_files/MR_small_implicit.dcm": "sop_conflict",
    "test_files/MR_small_jp2klossless.dcm": "sop_conflict",
    "test_files/MR_small_jpeg_ls_lossless.dcm": "sop_conflict",
    "test_files/MR_small_padded.dcm": "sop_conflict",
    "test_files/MR_truncated.dcm": "unreadable",
    "test_files/README.txt": "not_dicom",
    "test_files/SC_jpeg_no_color_transform.dcm": "missing_tag",
    "test_files/SC_jpeg_no_color_transform_2.dcm": "missing_tag",
    "test_files/SC_rgb_dcmtk_+eb+cr.dcm": "catalogued",
    "test_files/SC_rgb_dcmtk_+eb+cy+n1.dcm": "catalogued",
    "test_files/SC_rgb_dcmtk_+eb+cy+n2.dcm": "catalogued",
    "test_files/SC_rgb_dcmtk_+eb+cy+np.dcm": "catalogued",
    "test_files/SC_rgb_dcmtk_+eb+cy+s2.dcm": "catalogued",
    "test_files/SC_rgb_dcmtk_+eb+cy+s4.dcm": "catalogued",
    "test_files/SC_rgb_gdcm_KY.dcm": "catalogued",
    "test_files/SC_rgb_jls_lossy_line.dcm": "missing_tag",
    "test_files/SC_rgb_jls_lossy_sample.dcm": "missing_tag",
    "test_files/SC_rgb_jpeg.dcm": "missing_tag",
    "test_files/SC_rgb_jpeg_app14_dcmd.dcm": "missing_tag",
    "test_files/SC_rgb_jpeg_dcmd.dcm": "missing_tag",
    "test_files/SC_rgb_jpeg_dcmtk.dcm": "catalogued",
    "test_files/SC_rgb_jpeg_gdcm.dcm": "catalogued",
    "test_files/SC_rgb_jpeg_lossy_gdcm.dcm": "catalogued",
    "test_files/SC_rgb_rle.dcm": "sop_conflict",
    "test_files/SC_rgb_rle_16bit.dcm": "sop_conflict",
    "test_files/SC_rgb_rle_16bit_2frame.dcm": "sop_conflict",
    "test_files/SC_rgb_rle_2frame.dcm": "sop_conflict",
    "test_files/SC_rgb_rle_32bit.dcm": "sop_conflict",
    "test_files/SC_rgb_rle_32bit_2frame.dcm": "sop_conflict",
    "test_files/SC_rgb_small_odd.dcm": "catalogued",
    "test_files/SC_rgb_small_odd_big_endian.dcm": "sop_conflict",
    "test_files/SC_rgb_small_odd_jpeg.dcm": "catalogued",
    "test_files/SC_ybr_full_422_uncompressed.dcm": "sop_conflict",
    "test_files/UN_sequence.dcm": "missing_tag",
    "test_files/badVR.dcm": "catalogued",
    "test_files/crayons.icc": "not_dicom",
    "test_files/dicomdirtests/77654033/CR1/6154": "catalogued",
    "test_files/dicomdirtests/77654033/CR2/6247": "catalogued",
    "test_files/dicomdirtests/77654033/CR3/6278": "catalogued",
    "test_files/dicomdirtests/77654033/CT2/17106": "catalogued",
    "test_files/dicomdirtests/77654033/CT2/17136": "catalogued",
    "test_files/dicomdirtests/77654033/CT2/17166": "catalogued",
    "test_files/dicomdirtests/77654033/CT2/17196": "catalogued",
    "test_files/dicomdirtests/98892001/CT2N/6293": "catalogued",
    "test_files/dicomdirtests/98892001/CT2N/6924": "catalogued",
    "test_files/dicomdirtests/98892001/CT5N/2062": "catalogued",
    "test_files/dicomdirtests/98892001/CT5N/2392": "catalogued",
    "test_files/dicomdirtests/98892001/CT5N/2693": "catalogued",
    "test_files/dicomdirtests/98892001/CT5N/3023": "catalogued",
    "test_files/dicomdirtests/98892001/CT5N/3353": "catalogued",
    "test_files/dicomdirtests/98892003/MR1/15820": "catalogued",
    "test_files/dicomdirtests/98892003/MR1/4919": "catalogued",
    "test_files/dicomdirtests/98892003/MR1/5641": "catalogued",
    "test_files/dicomdirtests/98892003/MR2/15970": "catalogued",
    "test_files/dicomdirtests/98892003/MR2/4950": "catalogued",
    "test_files/dicomdirtests/98892003/MR2/4981": "catalogued",
    "test_files/dicomdirtests/98892003/MR2/5011": "catalogued",
    "test_files/dicomdirtests/98892003/MR2/6273": "catalogued",
    "test_files/dicomdirtests/98892003/MR2/6605": "catalogued",
    "test_files/dicomdirtests/98892003/MR2/6935": "catalogued",
    "test_files/dicomdirtests/98892003/MR700/4467": "catalogued",
    "test_files/dicomdirtests/98892003/MR700/4528": "catalogued",
    "test_files/dicomdirtests/98892003/MR700/4558": "catalogued",
    "test_files/dicomdirtests/98892003/MR700/4588": "catalogued",
    "test_files/dicomdirtests/98892003/MR700/4618": "catalogued",
    "test_files/dicomdirtests/98892003/MR700/4648": "catalogued",
    "test_files/dicomdirtests/98892003/MR700/4678": "catalogued",
    "test_files/dicomdirtests/DICOMDIR": "missing_tag",
    "test_files/dicomdirtests/DICOMDIR-bigEnd": "missing_tag",
    "test_files/dicomdirtests/DICOMDIR-empty.dcm": "missing_tag",
    "test_files/dicomdirtests/DICOMDIR-implicit": "missing_tag",
    "test_files/dicomdirtests/DICOMDIR-nooffset": "missing_tag",
    "test_files/dicomdirtests/DICOMDIR-nopatient": "missing_tag",
    "test_files/dicomdirtests/DICOMDIR-reordered": "missing_tag",
    "test_files/dicomdirtests/README.txt": "not_dicom",
    "test_files/dicomdirtests/TINY_ALPHA/DICOMDIR": "missing_tag",
    "test_files/dicomdirtests/TINY_ALPHA/README": "not_dicom",
    "test_files/empty_charset_LEI.dcm": "missing_tag",
    "test_files/examples_jpeg2k.dcm": "catalogued",
    "test_files/examples_overlay.dcm": "catalogued",
    "test_files/examples_palette.dcm": "catalogued",
    "test_files/examples_rgb_color.dcm": "catalogued",
    "test_files/examples_ybr_color.dcm": "catalogued",
    "test_files/image_dfl.dcm": "missing_tag",
    "test_files/liver_1frame.dcm": "catalogued",
    "test_files/liver_expb_1frame.dcm": "sop_conflict",
    "test_files/meta_missing_tsyntax.dcm": "missing_tag",
    "test_files/nested_priv_SQ.dcm": "missing_tag",
    "test_files/no_meta.dcm": "not_dicom",
    "test_files/no_meta_group_length.dcm": "missing_tag",
    "test_files/priv_SQ.dcm": "missing_tag",
    "test_files/reportsi.dcm": "missing_tag",
    "test_files/reportsi_with_empty_number_tags.dcm": "missing_tag",
    "test_files/rtdose.dcm": "sop_conflict",
    "test_files/rtdose_1frame.dcm": "sop_conflict",
    "test_files/rtdose_expb.dcm": "sop_conflict",
    "test_files/rtdose_expb_1frame.dcm": "sop_conflict",
    "test_files/rtdose_rle.dcm": "sop_conflict",
    "test_files/rtdose_rle_1frame.dcm": "sop_conflict",
    "test_files/rtplan.dcm": "catalogued",
    "test_files/rtplan.dump": "not_dicom",
    "test_files/rtplan_truncated.dcm": "unreadable",
    "test_files/rtstruct.dcm": "catalogued",
    "test_files/rtstruct.dump": "not_dicom",
    "test_files/test-SR.dcm": "missing_tag",
    "test_files/test1.json": "not_dicom",
    "test_files/test_PN.json": "not_dicom",
    "test_files/waveform_ecg.dcm": "catalogued",
    "test_files/zipMR.gz": "not_dicom",
}


def _files() -> list[Path]:
    return sorted(Path(p) for p in get_testdata_files() if os.path.isfile(p))


def _expected(rel: str) -> str:
    if "/TINY_ALPHA/PT000000/" in rel:
        return "catalogued"
    return EXPECTED[rel]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory):
    from helpers import write_config

    from pacs.config import load_config

    base = tmp_path_factory.mktemp("pydicom-files")
    cfg = load_config(write_config(base))
    order = []
    for i, p in enumerate(_files()):
        rel = str(p.relative_to(DATA))
        dst = base / "landing" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
        os.utime(dst, (T0 + i, T0 + i))
        order.append(rel)
    summary = run_ingest(cfg)
    outcomes = {}
    for b in journal.ingest(cfg.work).runs():
        for row in journal.ingest(cfg.work).read_table(b, journal.OUTCOME).to_pylist():
            rel = os.path.relpath(row["source_path"], base / "landing")
            outcomes[rel] = row
    return cfg, summary, outcomes, order, base


def test_the_table_covers_every_shipped_file(ingested) -> None:
    _cfg, _summary, _outcomes, order, _base = ingested
    tiny = [r for r in order if "/TINY_ALPHA/PT000000/" in r]
    assert len(tiny) == TINY_ALPHA_IMAGES
    assert set(order) - set(tiny) == set(EXPECTED)


def test_each_file_gets_its_expected_outcome(ingested) -> None:
    _cfg, _summary, outcomes, order, _base = ingested
    got = {}
    for rel in order:
        row = outcomes[rel]
        got[rel] = row["outcome"] if row["outcome"] != "quarantined" else row["reason"]
    wrong = {rel: (got[rel], _expected(rel)) for rel in order if got[rel] != _expected(rel)}
    assert not wrong, wrong


def test_nothing_lost(ingested) -> None:
    cfg, summary, _outcomes, order, base = ingested
    assert summary["files"] == len(order)
    assert summary["catalogued"] + summary["quarantined"] + summary["duplicates"] == len(order)
    assert summary["deferred"] == 0
    assert not [p for p in (base / "landing").rglob("*") if p.is_file()], "landing not cleared"
    con = duckdb.connect(str(cfg.duckdb), read_only=True)
    try:
        images = con.execute("SELECT count(*) FROM image").fetchall()[0][0]
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0]
    finally:
        con.close()
    assert images == summary["catalogued"]
    assert quarantined == summary["quarantined"]


def test_catalogued_bytes_are_the_original_bytes(ingested) -> None:
    cfg, _summary, outcomes, _order, _base = ingested
    con = duckdb.connect(str(cfg.duckdb), read_only=True)
    try:
        stored = dict(con.execute("SELECT sop_instance_uid, uri FROM image").fetchall())
        shas = dict(con.execute("SELECT sop_instance_uid, sha256 FROM image").fetchall())
    finally:
        con.close()
    for rel, row in outcomes.items():
        original = (DATA / rel).read_bytes()
        if row["outcome"] == "catalogued":
            uri = stored[row["sop_instance_uid"]]
            assert Path(uri).read_bytes() == original, rel
            assert shas[row["sop_instance_uid"]] == hashlib.sha256(original).hexdigest()
        else:
            assert Path(row["quarantine_uri"]).read_bytes() == original, rel
            assert Path(row["sidecar_uri"]).is_file()


def _force(path: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any failure means "pydicom cannot read it"
        return None


REQUIRED = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality")


def test_expectations_are_justified_independently(ingested) -> None:
    """missing_tag files lack a tag; sop_conflicts have an earlier catalogued twin with other
    bytes; not_dicom files have no DICM marker; unreadable ones are shorter than they claim."""
    _cfg, _summary, _outcomes, order, _base = ingested
    first_seen: dict[str, bytes] = {}
    for rel in order:
        path = DATA / rel
        data = path.read_bytes()
        expected = _expected(rel)
        ds = _force(path)
        if expected == "not_dicom":
            assert data[128:132] != b"DICM", rel
        elif expected == "missing_tag":
            assert ds is not None
            assert any(not str(ds.get(k, "") or "").strip() for k in REQUIRED), rel
        elif expected == "unreadable":
            # Both are strict prefixes of complete files that pydicom also ships.
            assert data[128:132] == b"DICM", rel
            whole = {"MR_truncated.dcm": "MR_small.dcm", "rtplan_truncated.dcm": "rtplan.dcm"}[path.name]
            complete = (path.parent / whole).read_bytes()
            assert complete.startswith(data) and len(complete) > len(data), rel
        elif expected in ("catalogued", "sop_conflict"):
            assert ds is not None and all(str(ds.get(k, "") or "").strip() for k in REQUIRED), rel
            sop = str(ds.SOPInstanceUID)
            if expected == "sop_conflict":
                assert sop in first_seen and first_seen[sop] != data, rel
            else:
                assert sop not in first_seen, rel
                first_seen[sop] = data


def test_second_run_changes_nothing(ingested) -> None:
    cfg, _summary, _outcomes, _order, _base = ingested
    con = duckdb.connect(str(cfg.duckdb), read_only=True)
    before = con.execute("SELECT count(*), sum(size_bytes) FROM image").fetchall()
    con.close()
    again = run_ingest(cfg)
    assert again["files"] == 0
    con = duckdb.connect(str(cfg.duckdb), read_only=True)
    after = con.execute("SELECT count(*), sum(size_bytes) FROM image").fetchall()
    con.close()
    assert before == after
