"""The bad set and duplicates: files the archive must quarantine or recognise as copies.

:func:`generate_bad_files` writes at least one file of every kind in :data:`BAD_KINDS`, one
helper per kind; :func:`_copy_duplicate` makes the byte-identical, newer copies that both the
bad set and :func:`pacs.synth.archive.generate_archive` use. Bad files are written with pydicom
itself (they need invalid values).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from pacs.synth.builder import UID_PREFIX, _Builder
from pacs.synth.encode import (
    _PIXEL_DATA_TAG,
    _PREAMBLE,
    _T_CONTENT_TIME,
    _T_INSTANCE_NUMBER,
    _T_SOP_INSTANCE,
    _dataset_bytes,
    _fmt_time,
    _force,
    _lenient_pydicom,
    element_value_span,
)
from pacs.synth.model import KIND_DUPLICATE, SynthFile, SynthResult

log = logging.getLogger(__name__)

LATER_BY = 3600.0
"""A file referring to an earlier good file is this many seconds (plus its index) newer."""
BAD_MTIME = 1_700_007_200.0
"""mtime of bad files that do not refer to a good file (2023-11-15 00:13:20 UTC)."""

BAD_KINDS: tuple[str, ...] = (
    "not_dicom",
    "unreadable",
    "missing_tag",
    "invalid_uid",
    "invalid_date",
    "patient_mismatch",
    "sop_conflict",
    "duplicate",
    "unsafe_path",
)
"""Every kind :func:`generate_bad_files` writes (``unsafe_path`` only when ``outside`` is given)."""


# --------------------------------------------------------------------------------------------
# Duplicates
# --------------------------------------------------------------------------------------------


def _copy_duplicate(original: SynthFile, target: Path, index: int) -> SynthFile:
    """A byte-identical copy of a good file, newer than its original."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original.path, target)
    _set_later_mtime(target, Path(original.path), index)
    return SynthFile(
        path=str(target), kind=KIND_DUPLICATE, sop_instance_uid=original.sop_instance_uid,
        study_instance_uid=original.study_instance_uid,
        series_instance_uid=original.series_instance_uid, patient_id=original.patient_id,
        modality=original.modality, study_date=original.study_date,
        size_bytes=target.stat().st_size,
    )


def _set_later_mtime(path: Path, original: Path, index: int) -> None:
    t = os.stat(original).st_mtime + LATER_BY + index
    os.utime(path, (t, t))


# --------------------------------------------------------------------------------------------
# Writing bad files
# --------------------------------------------------------------------------------------------


def _bad_file(path: Path, kind: str, ds: Dataset | None, size: int) -> SynthFile:
    def get(keyword: str) -> str | None:
        if ds is None or keyword not in ds:
            return None
        value = ds[keyword].value
        return None if value is None else str(value)

    return SynthFile(
        path=str(path), kind=kind, sop_instance_uid=get("SOPInstanceUID"),
        study_instance_uid=get("StudyInstanceUID"), series_instance_uid=get("SeriesInstanceUID"),
        patient_id=get("PatientID"), modality=get("Modality"), study_date=get("StudyDate"),
        size_bytes=size,
    )


def _write_bytes(path: Path, data: bytes, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


class _BadWriter:
    """Writes the bad set into ``root``: valid instances to spoil, the files and their records."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.b = _Builder(root, seed, "bad")
        self.rng = self.b.rng
        self.files: list[SynthFile] = []

    def fresh(self, label: str) -> Dataset:
        """A complete, valid 16x16 CT instance of its own new patient/study."""
        b = self.b
        patient = b.patient(birth_before=date(2021, 1, 1))
        patient.patient_id = b.unique_id("SYX", 7)
        study = b.study(patient, "CT", date(2023, 1, 5), 0)
        study.uid = b.uid("study", label)
        writer, pixels, dyn = b.prepare_series(study, number=1, description="AXIAL 5MM", rows=16,
                                               columns=16, implicit=False)
        values = dyn(0)
        values[_T_SOP_INSTANCE[0]] = b.uid("sop", label).encode("ascii")
        values[_T_INSTANCE_NUMBER[0]] = b"1"
        values[_T_CONTENT_TIME[0]] = _fmt_time(study.time_s).encode("ascii")
        values[_PIXEL_DATA_TAG] = pixels.instance(0)
        return writer.dataset(values)

    def write_raw(self, kind: str, data: bytes, ds: Dataset | None = None, suffix: str = ".dcm") -> None:
        """Write ``data`` as a new file (``ds``: what its header was made from, if anything)."""
        path = self.root / self.b.file_name(suffix)
        _write_bytes(path, data, BAD_MTIME)
        self.files.append(_bad_file(path, kind, ds, len(data)))

    def write_ds(self, kind: str, ds: Dataset, mtime: float = BAD_MTIME) -> None:
        """Write ``ds`` (invalid values allowed) as a new Part-10 file."""
        data = _dataset_bytes(ds)
        path = self.root / self.b.file_name()
        _write_bytes(path, data, mtime)
        self.files.append(_bad_file(path, kind, ds, len(data)))


# --------------------------------------------------------------------------------------------
# One helper per kind
# --------------------------------------------------------------------------------------------


def _write_not_dicom(w: _BadWriter) -> None:
    """A CSV export, a PNG and an empty ``.dcm``."""
    rng = w.rng
    csv = ("accession,study_date,modality,status\n"
           + "".join(f"A{rng.randrange(10**8, 10**9)},2023{rng.randint(1, 12):02d}15,CT,done\n"
                     for _ in range(20))).encode("ascii")
    png = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
           + struct.pack(">IIBBBBB", 32, 32, 8, 0, 0, 0, 0) + rng.randbytes(604))
    for suffix, data in ((".csv", csv), (".png", png), (".dcm", b"")):
        w.write_raw("not_dicom", data, None, suffix)


def _write_truncated(w: _BadWriter, label: str, tag: int) -> None:
    """A valid file cut in the middle of the value of ``tag``."""
    ds = w.fresh(label)
    data = _dataset_bytes(ds)
    value_at, length = element_value_span(data, tag)
    w.write_raw("unreadable", data[: value_at + length // 2], ds)


def _write_unreadable(w: _BadWriter) -> None:
    """Cut in the middle of a header value, in the middle of the pixel data; garbage after DICM."""
    _write_truncated(w, "unreadable-header", 0x00200037)  # ImageOrientationPatient
    _write_truncated(w, "unreadable-pixels", _PIXEL_DATA_TAG)
    w.write_raw("unreadable", _PREAMBLE + w.rng.randbytes(2048))


def _write_missing_tags(w: _BadWriter) -> None:
    """Each required tag missing once, and an empty PatientID."""
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                    "SOPClassUID", "Modality"):
        ds = w.fresh(f"missing-{keyword}")
        del ds[keyword]
        w.write_ds("missing_tag", ds)
    ds = w.fresh("empty-PatientID")
    ds.PatientID = ""
    w.write_ds("missing_tag", ds)


def _write_invalid_uids(w: _BadWriter) -> None:
    """Too long, letters, a leading zero, an empty component, a path-like value."""
    too_long = UID_PREFIX + "".join(str(w.rng.randint(1, 9)) for _ in range(80 - len(UID_PREFIX)))
    for label, keyword, value in (
        ("long-study", "StudyInstanceUID", too_long),
        ("letters-series", "SeriesInstanceUID", "1.2.3.abc"),
        ("leading-zero-sop", "SOPInstanceUID", "1.2.03.4"),
        ("empty-component-series", "SeriesInstanceUID", "1.2..4"),
        ("hostile-study", "StudyInstanceUID", "../../x"),
    ):
        ds = w.fresh(f"invalid-{label}")
        _force(ds, keyword, value)
        if keyword == "SOPInstanceUID":
            _force(ds.file_meta, "MediaStorageSOPInstanceUID", value)
        w.write_ds("invalid_uid", ds)


def _write_invalid_dates(w: _BadWriter) -> None:
    """An impossible and a garbled StudyDate."""
    for label, value in (("feb31", "20230231"), ("garbled", "2023-01-05x")):
        ds = w.fresh(f"invalid-date-{label}")
        _force(ds, "StudyDate", value)
        w.write_ds("invalid_date", ds)


def _write_patient_mismatch(w: _BadWriter, src: SynthFile) -> None:
    """A new instance in an existing study, under another patient."""
    with _lenient_pydicom():
        ds = pydicom.dcmread(src.path)
    new_uid = w.b.uid("mismatch-sop", src.sop_instance_uid)
    ds.SOPInstanceUID = new_uid
    ds.file_meta.MediaStorageSOPInstanceUID = new_uid
    ds.PatientID = w.b.unique_id("SYX", 7)
    ds.PatientName = "SYNTH^MALLORY"
    ds.InstanceNumber = 9001
    w.write_ds("patient_mismatch", ds, os.stat(src.path).st_mtime + LATER_BY)


def _write_sop_conflict(w: _BadWriter, src: SynthFile) -> None:
    """The same SOP Instance UID with a different instance number and pixel bytes."""
    with _lenient_pydicom():
        ds = pydicom.dcmread(src.path)
    ds.InstanceNumber = int(ds.InstanceNumber or 0) + 1000
    pixels = np.frombuffer(ds.PixelData, dtype=np.uint8).copy()
    pixels[0::2] ^= 0x5A  # low bytes only: values stay within BitsStored
    ds.PixelData = pixels.tobytes()
    w.write_ds("sop_conflict", ds, os.stat(src.path).st_mtime + LATER_BY + 1)


def _write_referring(w: _BadWriter, reference: SynthResult) -> None:
    """patient_mismatch, sop_conflict and duplicate, each from a small good file of ``reference``."""
    good = sorted(reference.good(), key=lambda f: (f.size_bytes, f.path))
    if not good:
        log.warning("synth bad files: the reference has no good files; skipping "
                    "patient_mismatch, sop_conflict and duplicate")
        return
    pool = good[: max(3, min(len(good), 20))]
    picks = w.rng.sample(pool, 3) if len(pool) >= 3 else [pool[i % len(pool)] for i in range(3)]
    _write_patient_mismatch(w, picks[0])
    _write_sop_conflict(w, picks[1])
    w.files.append(_copy_duplicate(picks[2], w.root / w.b.file_name(), 2))  # byte-identical copy


def _write_unsafe_path(w: _BadWriter, outside: Path) -> None:
    """A link inside the root to a real DICOM file written in ``outside``."""
    outside_path = Path(outside).absolute()
    outside_path.mkdir(parents=True, exist_ok=True)
    ds = w.fresh("unsafe-path")
    data = _dataset_bytes(ds)
    target = outside_path / w.b.file_name()
    _write_bytes(target, data, BAD_MTIME)
    link = w.root / w.b.file_name()
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)
    with contextlib.suppress(NotImplementedError, OSError):
        os.utime(link, (BAD_MTIME, BAD_MTIME), follow_symlinks=False)
    w.files.append(_bad_file(link, "unsafe_path", ds, len(data)))


def generate_bad_files(
    root: str | Path,
    *,
    seed: int,
    reference: SynthResult,
    outside: Path | None = None,
) -> list[SynthFile]:
    """Write files the archive must quarantine (or recognise as duplicates) under ``root``.

    At least one file of each kind in :data:`BAD_KINDS`; ``patient_mismatch``,
    ``sop_conflict`` and ``duplicate`` refer to good files of ``reference`` (skipped, with a
    warning, if it has none) and are newer than them; ``unsafe_path`` (only with ``outside``)
    is a symlink in ``root`` to a valid DICOM file written in ``outside``.
    """
    root_path = Path(root).absolute()
    root_path.mkdir(parents=True, exist_ok=True)
    w = _BadWriter(root_path, seed)
    _write_not_dicom(w)
    _write_unreadable(w)
    _write_missing_tags(w)
    _write_invalid_uids(w)
    _write_invalid_dates(w)
    _write_referring(w, reference)
    if outside is not None:
        _write_unsafe_path(w, outside)
    log.info("synth bad files: %d files in %s", len(w.files), root_path)
    return w.files
