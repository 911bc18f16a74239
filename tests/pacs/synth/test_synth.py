"""Tests for :mod:`pacs.synth`: valid, deterministic, realistic archives and a really bad bad set."""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
import os
import random
import re
import struct
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from pacs import synth
from pacs.synth import SynthFile, SynthResult
from pacs.synth.builder import _day_sampler

REQUIRED_TAGS = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
    "StudyTime", "SeriesDate", "ContentDate", "AccessionNumber", "StudyID", "StudyDescription",
    "SeriesDescription", "SeriesNumber", "InstanceNumber", "BodyPartExamined", "InstitutionName",
    "StationName", "Manufacturer", "ManufacturerModelName", "ReferringPhysicianName", "Modality",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "PixelData",
)
SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
}
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
HEX_NAME = re.compile(r"[0-9a-f]{16}\.dcm")


def valid_uid(value: str) -> bool:
    return (
        0 < len(value) <= 64
        and re.fullmatch(r"[0-9]+(\.[0-9]+)*", value) is not None
        and all(part == "0" or not part.startswith("0") for part in value.split("."))
        and UID(value).is_valid
    )


def read(path: str | Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def element_span(data: bytes, tag: int) -> tuple[int, int] | None:
    """(value offset, declared length) of a top-level element, found by an independent walk."""
    assert data[128:132] == b"DICM"
    pos, implicit = 132, None
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 2 and implicit is None:
            ts_span = element_span(data[:pos], 0x00020010)
            assert ts_span is not None
            ts = data[ts_span[0]: ts_span[0] + ts_span[1]].rstrip(b"\0 ").decode()
            implicit = ts == IMPLICIT_LE
        if group != 2 and implicit:
            length, value_at = struct.unpack_from("<I", data, pos + 4)[0], pos + 8
        elif data[pos + 4: pos + 6] in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR", b"OF"):
            length, value_at = struct.unpack_from("<I", data, pos + 8)[0], pos + 12
        else:
            length, value_at = struct.unpack_from("<H", data, pos + 6)[0], pos + 8
        if (group << 16 | elem) == tag:
            return value_at, length
        pos = value_at + length
    return None


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    root = tmp_path_factory.mktemp("synth") / "landing"
    return synth.generate_archive(root, seed=7, patients=25, size_scale=0.05, count_scale=0.02,
                                  bad=True, duplicates=4)


@pytest.fixture(scope="module")
def bad_by_kind(archive: SynthResult) -> dict[str, list[SynthFile]]:
    out: dict[str, list[SynthFile]] = collections.defaultdict(list)
    for f in archive.files:
        if f.kind != "good":
            out[f.kind].append(f)
    return out


# -- good files -------------------------------------------------------------------------------


def test_every_good_file_is_valid_dicom(archive: SynthResult) -> None:
    good = archive.good()
    assert len(good) > 80
    transfer_syntaxes = collections.Counter()
    for i, f in enumerate(good):
        ds = read(f.path)
        missing = [kw for kw in REQUIRED_TAGS if kw not in ds or ds[kw].value in (None, "")]
        assert not missing, (f.path, missing)
        for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                   "SOPClassUID"):
            assert valid_uid(str(ds[kw].value)), (kw, ds[kw].value)
        meta = ds.file_meta
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID == SOP_CLASSES[ds.Modality]
        assert valid_uid(str(meta.ImplementationClassUID))
        transfer_syntaxes[str(meta.TransferSyntaxUID)] += 1
        # The SynthFile records what is in the file.
        assert (f.sop_instance_uid, f.study_instance_uid, f.series_instance_uid) == (
            ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID)
        assert (f.patient_id, f.modality, f.study_date) == (ds.PatientID, ds.Modality, ds.StudyDate)
        assert f.size_bytes == os.path.getsize(f.path)
        assert str(ds.PatientName).startswith("SYNTH^")
        assert re.fullmatch(r"SYN\d{7}", ds.PatientID)
        assert re.fullmatch(r"\d{3}[DWMY]", ds.PatientAge)
        dt.datetime.strptime(ds.StudyDate, "%Y%m%d")
        if i % 10 == 0:  # decode a sample
            arr = ds.pixel_array
            expected = (ds.Rows, ds.Columns) + ((3,) if ds.SamplesPerPixel == 3 else ())
            assert arr.shape == expected
            assert int(arr.max()) < 2 ** ds.BitsStored
            assert int(arr.max()) > 0
    assert set(transfer_syntaxes) <= {EXPLICIT_LE, IMPLICIT_LE}
    assert transfer_syntaxes[EXPLICIT_LE] > transfer_syntaxes[IMPLICIT_LE] > 0


def test_fast_writer_matches_pydicom_bytes(archive: SynthResult) -> None:
    """Re-encoding a generated file's values with pydicom gives exactly the same bytes."""
    seen = set()
    for f in archive.good():
        key = (f.modality, read(f.path).file_meta.TransferSyntaxUID)
        if key in seen:
            continue
        seen.add(key)
        ds = read(f.path)
        for elem in [*ds.file_meta, *ds]:  # decode every value so that pydicom re-encodes it
            assert elem.value is not None
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        assert buf.getvalue() == Path(f.path).read_bytes(), f.path
    assert len(seen) >= 6


def test_layout_and_names(archive: SynthResult) -> None:
    for i, f in enumerate(archive.good()):
        rel = Path(f.path).relative_to(archive.root)
        assert len(rel.parts) == 3
        station, day, name = rel.parts
        assert HEX_NAME.fullmatch(name)
        assert day == f.study_date
        if i % 10 == 0:
            assert station == str(read(f.path).StationName)
        assert f.sop_instance_uid not in f.path and f.patient_id not in f.path
    assert len({f.path for f in archive.files}) == len(archive.files)


def test_structure_is_realistic(archive: SynthResult) -> None:
    good = archive.good()
    summary = archive.summary()
    assert summary["patients"] == 25
    assert summary["images"] == len(good)
    assert summary["bytes"] == sum(f.size_bytes for f in good)
    assert sum(summary["by_modality"].values()) == len(good)
    assert len(summary["by_modality"]) >= 4
    # patients have 1-6 studies, several across years
    studies: dict[str, set[tuple[str, str]]] = collections.defaultdict(set)
    for f in good:
        assert f.patient_id and f.study_instance_uid and f.study_date
        studies[f.patient_id].add((f.study_instance_uid, f.study_date))
    counts = [len(s) for s in studies.values()]
    assert max(counts) <= 6 and min(counts) >= 1 and max(counts) >= 3
    multi_year = [p for p, s in studies.items() if len({d[:4] for _, d in s}) >= 2]
    assert len(multi_year) >= 3
    # one modality per study; series and instance counts per modality
    per_study: dict[str, set[str]] = collections.defaultdict(set)
    series_per_study: dict[str, set[str]] = collections.defaultdict(set)
    for f in good:
        per_study[f.study_instance_uid].add(f.modality)
        series_per_study[f.study_instance_uid].add(f.series_instance_uid)
    assert all(len(m) == 1 for m in per_study.values())
    for study, series in series_per_study.items():
        (modality,) = per_study[study]
        lo, hi = {"CT": (1, 4), "MR": (4, 10)}.get(modality, (1, 1))
        assert lo <= len(series) <= hi, (modality, len(series))
    # mammography only for women
    for f in good:
        if f.modality == "MG":
            assert read(f.path).PatientSex == "F"


def test_trend_and_weekly_and_yearly_seasonality(tmp_path: Path) -> None:
    res = synth.generate_archive(tmp_path / "a", seed=3, patients=250, size_scale=0.01,
                                 count_scale=0.001, growth=0.6, modalities=("CR", "US"))
    days = {f.study_instance_uid: dt.datetime.strptime(f.study_date, "%Y%m%d").date()
            for f in res.good()}
    assert all(dt.date(2021, 1, 1) <= d <= dt.date(2025, 12, 31) for d in days.values())
    by_year = collections.Counter(d.year for d in days.values())
    assert by_year[2025] > 1.8 * by_year[2021], by_year
    weekend = sum(1 for d in days.values() if d.weekday() >= 5) / len(days)
    assert weekend < 0.2, weekend  # uniform would be 2/7 = 0.29
    # The yearly rhythm, on many draws of the generator's study-day sampler: a summer-holiday dip
    # and a quiet last week of December.
    sampler_days, cum = _day_sampler(dt.date(2021, 1, 1), dt.date(2025, 12, 31), 0.0)
    drawn = random.Random(1).choices(sampler_days, cum_weights=cum, k=200_000)
    by_month = collections.Counter(d.month for d in drawn)
    assert by_month[8] < 0.85 * by_month[1], by_month
    late_december = sum(1 for d in drawn if d.month == 12 and d.day >= 24) / 8
    assert late_december < 0.7 * sum(1 for d in drawn if d.month == 12 and 10 <= d.day < 18) / 8


def test_scales(tmp_path: Path) -> None:
    small = synth.generate_archive(tmp_path / "s", seed=1, patients=3, size_scale=0.1,
                                   count_scale=0.02, modalities=("CT",))
    for f in small.good():
        ds = read(f.path)
        assert (ds.Rows, ds.Columns) == (51, 51)
    per_series = collections.Counter(f.series_instance_uid for f in small.good())
    assert max(per_series.values()) <= 6  # 300 * 0.02
    more = synth.generate_archive(tmp_path / "m", seed=1, patients=3, size_scale=0.1,
                                  count_scale=0.2, modalities=("CT",))
    assert len(more.good()) > 3 * len(small.good())


def test_full_size_images(tmp_path: Path) -> None:
    res = synth.generate_archive(tmp_path / "full", seed=2, patients=2, count_scale=0.01,
                                 modalities=("CT", "MR", "US"))
    sizes: dict[str, list[int]] = collections.defaultdict(list)
    for f in res.good():
        sizes[f.modality].append(f.size_bytes)
    assert sizes["CT"] and sizes["MR"], sizes.keys()
    assert all(512 * 512 * 2 < s < 512 * 512 * 2 + 8000 for s in sizes["CT"])
    assert all(256 * 256 * 2 < s < 512 * 512 * 2 + 8000 for s in sizes["MR"])
    for s in sizes.get("US", []):
        assert 640 * 480 * 3 < s < 640 * 480 * 3 + 8000
    ct = next(f for f in res.good() if f.modality == "CT")
    ds = read(ct.path)
    assert (ds.Rows, ds.Columns, ds.BitsAllocated) == (512, 512, 16)
    assert ds.pixel_array.shape == (512, 512)


def test_mtimes(archive: SynthResult) -> None:
    good = {f.sop_instance_uid: f for f in archive.good()}
    for f in archive.good():
        acquired = dt.datetime.strptime(f.study_date + str(read(f.path).ContentTime)[:6], "%Y%m%d%H%M%S")
        received = dt.datetime.fromtimestamp(os.stat(f.path).st_mtime, dt.UTC).replace(tzinfo=None)
        assert acquired < received <= acquired + dt.timedelta(weeks=8, minutes=20), f.path
    for f in archive.files:
        if f.kind in ("duplicate", "sop_conflict", "patient_mismatch"):
            if f.kind == "patient_mismatch":
                original = next(g for g in good.values()
                                if g.series_instance_uid == f.series_instance_uid)
            else:
                original = good[f.sop_instance_uid]
            assert os.stat(f.path).st_mtime > os.stat(original.path).st_mtime, f.kind


# -- determinism ------------------------------------------------------------------------------


def test_deterministic(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"seed": 11, "patients": 4, "size_scale": 0.03,
                              "count_scale": 0.03, "bad": True, "duplicates": 2}
    a = synth.generate_archive(tmp_path / "a", **kwargs)
    b = synth.generate_archive(tmp_path / "b", **kwargs)
    c = synth.generate_archive(tmp_path / "c", **{**kwargs, "seed": 12})
    assert len(a.files) == len(b.files)
    for fa, fb in zip(a.files, b.files, strict=True):
        ra, rb = Path(fa.path).relative_to(a.root), Path(fb.path).relative_to(b.root)
        assert ra == rb
        assert (fa.kind, fa.sop_instance_uid, fa.study_instance_uid, fa.patient_id,
                fa.size_bytes) == (fb.kind, fb.sop_instance_uid, fb.study_instance_uid,
                                   fb.patient_id, fb.size_bytes)
        if fa.kind != "unsafe_path":
            assert Path(fa.path).read_bytes() == Path(fb.path).read_bytes(), ra
    assert a.summary() == b.summary()
    uids_a = {f.sop_instance_uid for f in a.good()}
    assert not uids_a & {f.sop_instance_uid for f in c.good()}


def test_duplicates(archive: SynthResult) -> None:
    good = {f.sop_instance_uid: f for f in archive.good()}
    dups = [f for f in archive.files if f.kind == "duplicate"]
    assert len(dups) == 4 + 1  # duplicates=4 plus the one of the bad set
    for d in dups:
        original = good[d.sop_instance_uid]
        assert d.path != original.path
        assert Path(d.path).read_bytes() == Path(original.path).read_bytes()


# -- bad files --------------------------------------------------------------------------------


def test_bad_set_has_every_kind(archive: SynthResult, bad_by_kind: dict[str, list[SynthFile]]) -> None:
    assert set(bad_by_kind) == set(synth.BAD_KINDS)
    counts = archive.counts()
    assert counts["not_dicom"] >= 3 and counts["unreadable"] >= 3
    assert counts["missing_tag"] >= 7 and counts["invalid_uid"] >= 5 and counts["invalid_date"] >= 2
    bad_root = archive.root / "incoming-bad"
    for kind, files in bad_by_kind.items():
        for f in files:
            if kind == "duplicate" and not f.path.startswith(str(bad_root)):
                continue
            assert Path(f.path).parent == bad_root, f.path


def test_not_dicom(bad_by_kind: dict[str, list[SynthFile]]) -> None:
    blobs = [Path(f.path).read_bytes() for f in bad_by_kind["not_dicom"]]
    assert b"" in blobs
    assert any(b.startswith(b"\x89PNG") for b in blobs)
    assert any(b and b.decode("ascii", "replace").count(",") > 3 for b in blobs)
    assert all(b[128:132] != b"DICM" for b in blobs)


def test_unreadable(bad_by_kind: dict[str, list[SynthFile]]) -> None:
    kinds = set()
    for f in bad_by_kind["unreadable"]:
        data = Path(f.path).read_bytes()
        assert data[128:132] == b"DICM"
        if f.sop_instance_uid is None:
            kinds.add("garbage")
            assert data[132:136] != b"\x02\x00\x00\x00"  # no file meta group
            continue
        pixel = element_span(data, 0x7FE00010)
        if pixel is not None:
            kinds.add("pixels")
            assert pixel[0] + pixel[1] > len(data)  # PixelData claims more bytes than remain
            ds = read(f.path)
            assert len(ds.PixelData) < ds.Rows * ds.Columns * ds.BitsAllocated // 8
        else:
            kinds.add("header")
            # the last element is cut in the middle of its value
            ds = read(f.path)
            assert "PixelData" not in ds and "Rows" not in ds
            last = max(int(e.tag) for e in ds)
            span = element_span(data, last)
            assert span is not None and span[0] < len(data) < span[0] + span[1], hex(last)
    assert kinds == {"garbage", "pixels", "header"}


def test_missing_tags(bad_by_kind: dict[str, list[SynthFile]]) -> None:
    required = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                "SOPClassUID", "Modality")
    lacking: collections.Counter[str] = collections.Counter()
    empty_patient = 0
    for f in bad_by_kind["missing_tag"]:
        ds = read(f.path)
        absent = [kw for kw in required if kw not in ds]
        assert len(absent) <= 1
        lacking.update(absent)
        if not absent:
            assert ds.PatientID == ""
            assert f.patient_id == ""
            empty_patient += 1
        else:
            field = {"PatientID": "patient_id", "StudyInstanceUID": "study_instance_uid",
                     "SeriesInstanceUID": "series_instance_uid",
                     "SOPInstanceUID": "sop_instance_uid", "Modality": "modality"}.get(absent[0])
            if field:
                assert getattr(f, field) is None
        assert ds.pixel_array.size > 0  # otherwise valid
    assert set(lacking) == set(required)
    assert empty_patient == 1


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_invalid_uids_and_dates(bad_by_kind: dict[str, list[SynthFile]]) -> None:
    values: dict[str, list[str]] = collections.defaultdict(list)
    for f in bad_by_kind["invalid_uid"]:
        ds = read(f.path)
        bad = [kw for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
               if not valid_uid(str(ds[kw].value))]
        assert len(bad) == 1, bad
        values[bad[0]].append(str(ds[bad[0]].value))
        assert getattr(f, {"StudyInstanceUID": "study_instance_uid",
                           "SeriesInstanceUID": "series_instance_uid",
                           "SOPInstanceUID": "sop_instance_uid"}[bad[0]]) == ds[bad[0]].value
    assert any(len(v) > 64 for v in values["StudyInstanceUID"])
    assert "../../x" in values["StudyInstanceUID"]
    assert {"1.2.3.abc", "1.2..4"} <= set(values["SeriesInstanceUID"])
    assert values["SOPInstanceUID"] == ["1.2.03.4"]
    dates = sorted(str(read(f.path).StudyDate) for f in bad_by_kind["invalid_date"])
    assert dates == ["2023-01-05x", "20230231"]
    assert [f.study_date for f in bad_by_kind["invalid_date"]] == [
        str(read(f.path).StudyDate) for f in bad_by_kind["invalid_date"]]


def test_referring_bad_files(archive: SynthResult, bad_by_kind: dict[str, list[SynthFile]]) -> None:
    good = archive.good()
    by_sop = {f.sop_instance_uid: f for f in good}
    patient_of_study = {f.study_instance_uid: f.patient_id for f in good}

    (mismatch,) = bad_by_kind["patient_mismatch"]
    ds = read(mismatch.path)
    assert ds.StudyInstanceUID in patient_of_study
    assert ds.PatientID != patient_of_study[ds.StudyInstanceUID]
    assert ds.SOPInstanceUID not in by_sop
    assert mismatch.patient_id == ds.PatientID

    (conflict,) = bad_by_kind["sop_conflict"]
    original = by_sop[conflict.sop_instance_uid]
    a, b = read(conflict.path), read(original.path)
    assert Path(conflict.path).read_bytes() != Path(original.path).read_bytes()
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert (a.StudyInstanceUID, a.SeriesInstanceUID, a.PatientID) == (
        b.StudyInstanceUID, b.SeriesInstanceUID, b.PatientID)
    assert a.InstanceNumber != b.InstanceNumber
    assert a.PixelData != b.PixelData
    assert np.asarray(a.pixel_array).shape == np.asarray(b.pixel_array).shape

    dup = next(f for f in bad_by_kind["duplicate"]
               if f.path.startswith(str(archive.root / "incoming-bad")))
    assert Path(dup.path).read_bytes() == Path(by_sop[dup.sop_instance_uid].path).read_bytes()


def test_unsafe_path(archive: SynthResult, bad_by_kind: dict[str, list[SynthFile]]) -> None:
    (link,) = bad_by_kind["unsafe_path"]
    path = Path(link.path)
    assert path.is_symlink()
    target = path.resolve()
    assert target.is_file()
    assert not target.is_relative_to(archive.root.resolve())
    assert target.parent == (archive.root.parent / (archive.root.name + "-outside")).resolve()
    ds = read(target)
    assert ds.SOPInstanceUID == link.sop_instance_uid
    assert ds.pixel_array.size > 0


def test_bad_files_without_reference_or_outside(tmp_path: Path) -> None:
    files = synth.generate_bad_files(tmp_path / "bad", seed=1,
                                     reference=SynthResult(root=tmp_path, files=[]))
    kinds = {f.kind for f in files}
    assert kinds == set(synth.BAD_KINDS) - {"patient_mismatch", "sop_conflict", "duplicate",
                                            "unsafe_path"}
    assert not any(Path(f.path).is_symlink() for f in files)


def test_archive_reader_assigns_the_intended_reasons(archive: SynthResult) -> None:
    """The archive's own header reader and rules classify the header-level bad kinds as meant."""
    dicom = pytest.importorskip("pacs.dicom")
    validation = pytest.importorskip("pacs.dicom.validation")
    if not hasattr(dicom, "read_header_bytes") or not hasattr(validation, "validate"):
        pytest.skip("archive reader API not available")
    header_kinds = {"not_dicom", "unreadable", "missing_tag", "invalid_uid", "invalid_date"}
    for i, f in enumerate(archive.files):
        if f.kind not in header_kinds | {"good"} or (f.kind == "good" and i % 5):
            continue
        try:
            rejection = validation.validate(dicom.read_header_bytes(Path(f.path).read_bytes()))
            got = rejection.reason if rejection else "good"
        except dicom.HeaderError as exc:
            got = exc.reason
        assert got == f.kind, (f.path, f.kind, got)


# -- benchmark sets ---------------------------------------------------------------------------


def test_small_files(tmp_path: Path) -> None:
    res = synth.generate_small_files(tmp_path / "small", 45, seed=2, per_series=10)
    assert res.counts() == {"good": 45}
    sizes = [f.size_bytes for f in res.files]
    assert all(abs(s - 12_000) < 400 for s in sizes), sizes
    assert sorted(collections.Counter(f.series_instance_uid for f in res.files).values()) == [
        5, 10, 10, 10, 10]
    for f in res.files[::9]:
        ds = read(f.path)
        assert ds.pixel_array.size > 0 and valid_uid(ds.SOPInstanceUID)
    other = synth.generate_small_files(tmp_path / "small4k", 5, target_size=4000)
    assert all(abs(f.size_bytes - 4000) < 300 for f in other.files)


def test_ct_slices(tmp_path: Path) -> None:
    res = synth.generate_ct_slices(tmp_path / "ct", 5, seed=1, per_series=2)
    assert res.counts() == {"good": 5}
    assert res.summary()["series"] == 3
    for f in res.files:
        assert 512 * 512 * 2 < f.size_bytes < 512 * 512 * 2 + 6000  # ~0.5 MB
        assert f.modality == "CT"
    ds = read(res.files[0].path)
    assert ds.pixel_array.shape == (512, 512)
    assert ds.SOPClassUID == SOP_CLASSES["CT"]
    pixels = {read(f.path).PixelData for f in res.files}
    assert len(pixels) == 5  # instances differ in their pixel bytes too


def test_generation_is_fast(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    synth.generate_small_files(tmp_path / "fast", 600, seed=5)
    assert time.perf_counter() - t0 < 10  # about 0.2 s on one core


# -- manifest and CLI -------------------------------------------------------------------------


def test_manifest(archive: SynthResult, tmp_path: Path) -> None:
    target = tmp_path / "out" / "manifest.json"
    archive.write_manifest(target)
    doc = json.loads(target.read_text())
    assert doc["root"] == str(archive.root)
    assert len(doc["files"]) == len(archive.files)
    assert set(doc["files"][0]) == set(SynthFile.__dataclass_fields__)
    assert doc["counts"] == archive.counts()
    assert doc["summary"]["images"] == archive.summary()["images"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.json"
    rc = synth.main(["archive", "--out", str(tmp_path / "arch"), "--patients", "3", "--seed", "4",
                     "--size-scale", "0.03", "--count-scale", "0.03", "--bad",
                     "--duplicates", "2", "--manifest", str(manifest)])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    summary = json.loads(line)
    assert summary["patients"] == 3 and summary["counts"]["duplicate"] == 3
    assert len(json.loads(manifest.read_text())["files"]) == summary["files"]

    assert synth.main(["small", "--out", str(tmp_path / "small"), "--n", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 7
    assert synth.main(["ct", "--out", str(tmp_path / "ct"), "--n", "2", "--rows", "64",
                       "--columns", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["by_modality"] == {"CT": 2}
    assert synth.main(["archive", "--out", str(tmp_path / "x"), "--modalities", "XX"]) == 2
