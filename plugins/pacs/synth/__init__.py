"""Synthetic DICOM archives: realistic hospital data for the demo, the tests and the benchmarks.

Everything written here is a real DICOM Part-10 file that pydicom can read and decode, and
everything is deterministic given a seed: UIDs are derived from the seed with
:func:`pydicom.uid.generate_uid` (``entropy_srcs``), structure from :class:`random.Random`
and pixel content from :func:`numpy.random.default_rng`; nothing depends on the clock.

- :func:`generate_archive` writes patients with 1-6 studies over a date range (a yearly growth
  trend and fewer studies on weekends), one modality per study with a realistic mix and
  realistic series/instance counts and image matrices (``size_scale`` and ``count_scale``
  shrink them for demos and tests). Files land in a modality-drop-like tree
  ``root/<station>/<YYYYMMDD>/<hex>.dcm``; optional byte-identical duplicates and a bad set.
- :func:`generate_bad_files` writes at least one file of every quarantine reason code.
- :func:`generate_ct_slices` and :func:`generate_small_files` write benchmark sets.
- :func:`main` is the command line (``python -m pacs.synth archive|ct|small ...``).

Speed: the elements shared by a series (one template per series) are encoded once; each
instance is then assembled from those bytes plus its few per-instance elements (SOP Instance
UID, Instance Number, position, Pixel Data, ...). The output is byte-for-byte what
``pydicom.dcmwrite(..., enforce_file_format=True)`` writes for the same dataset (the tests
check this); the bad files, which need invalid values, are written with pydicom itself.

File times: good files get the fixed mtime :data:`GOOD_MTIME`; every duplicate or bad file that
refers to an earlier good file gets a later mtime than that file ("first received wins").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import io
import json
import logging
import math
import os
import random
import shutil
import struct
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

log = logging.getLogger(__name__)

UID_PREFIX = "1.2.826.0.1.3680043.8.498."
"""Root of every generated UID (pydicom's organisational root)."""
IMPLEMENTATION_VERSION_NAME = "PACS_SYNTH_1"
GOOD_MTIME = 1_700_000_000.0
"""mtime of every good file (2023-11-14 22:13:20 UTC)."""
LATER_BY = 3600.0
"""A file referring to an earlier good file is this many seconds (plus its index) newer."""
BAD_MTIME = GOOD_MTIME + 7200.0
"""mtime of bad files that do not refer to a good file."""

KIND_GOOD = "good"
KIND_DUPLICATE = "duplicate"
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

DEFAULT_MODALITIES: tuple[str, ...] = ("CT", "MR", "CR", "DX", "US", "MG")

_PROGRESS_EVERY_S = 5.0
_PREAMBLE = b"\x00" * 128 + b"DICM"
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_NUL_PADDED_VRS = frozenset({"UI", "OB", "OW", "UN"})

# Per-instance elements (tag, VR); everything else is in the per-series template.
_T_SOP_INSTANCE = (0x00080018, "UI")
_T_CONTENT_TIME = (0x00080033, "TM")
_T_VIEW_POSITION = (0x00185101, "CS")
_T_INSTANCE_NUMBER = (0x00200013, "IS")
_T_IMAGE_POSITION = (0x00200032, "DS")
_T_LATERALITY = (0x00200062, "CS")
_T_SLICE_LOCATION = (0x00201041, "DS")
_PIXEL_DATA_TAG = 0x7FE00010

_DynamicFn = Callable[[int], dict[int, bytes]]
"""Instance index -> raw values of a modality's extra per-instance elements."""


# --------------------------------------------------------------------------------------------
# Public result types
# --------------------------------------------------------------------------------------------


@dataclass
class SynthFile:
    """One file written by the generator and what it was written with."""

    path: str
    kind: str
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    patient_id: str | None
    modality: str | None
    study_date: str | None
    size_bytes: int


@dataclass
class SynthResult:
    """The files written under ``root`` (good ones and, if asked for, duplicates and bad ones)."""

    root: Path
    files: list[SynthFile] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of files per kind."""
        out: dict[str, int] = {}
        for f in self.files:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def good(self) -> list[SynthFile]:
        """The good files (kind ``"good"``)."""
        return [f for f in self.files if f.kind == KIND_GOOD]

    def summary(self) -> dict[str, Any]:
        """Patients, studies, series, images and bytes of the good files, and images per modality."""
        good = self.good()
        by_modality: dict[str, int] = {}
        for f in good:
            key = f.modality or ""
            by_modality[key] = by_modality.get(key, 0) + 1
        return {
            "patients": len({f.patient_id for f in good}),
            "studies": len({f.study_instance_uid for f in good}),
            "series": len({f.series_instance_uid for f in good}),
            "images": len(good),
            "bytes": sum(f.size_bytes for f in good),
            "by_modality": dict(sorted(by_modality.items())),
        }

    def write_manifest(self, path: str | Path) -> None:
        """Write a JSON manifest: root, counts, summary and all fields of every file."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "root": str(self.root),
            "counts": self.counts(),
            "summary": self.summary(),
            "files": [asdict(f) for f in self.files],
        }
        target.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Realistic vocabulary
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ModalitySpec:
    sop_class_uid: str
    weight: float
    matrices: tuple[tuple[int, int], ...]  # (rows, columns) choices
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str
    series_range: tuple[int, int]
    instances_range: tuple[int, int]
    procedures: tuple[tuple[str, str], ...]  # (study description, body part)
    series_descriptions: tuple[str, ...]
    devices: tuple[tuple[str, str], ...]  # (manufacturer, model)
    dynamic: tuple[tuple[int, str], ...]  # per-instance elements besides SOP UID/number/pixels


_SLICE_DYNAMIC = (_T_IMAGE_POSITION, _T_SLICE_LOCATION)
_PROJECTION_DYNAMIC = (_T_VIEW_POSITION, _T_LATERALITY)

_MODALITIES: dict[str, _ModalitySpec] = {
    "CT": _ModalitySpec(
        CTImageStorage, 0.20, ((512, 512),), 1, 16, 12, "MONOCHROME2", (1, 4), (50, 300),
        (
            ("CT HEAD WO CONTRAST", "HEAD"),
            ("CT CHEST W CONTRAST", "CHEST"),
            ("CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN"),
            ("CT CHEST ABDOMEN PELVIS", "CHEST"),
            ("CT ANGIO PULMONARY", "CHEST"),
            ("CT SPINE LUMBAR", "LSPINE"),
            ("CT SINUS", "HEAD"),
        ),
        ("AXIAL 5MM", "AXIAL 1.25MM", "AXIAL 2.5MM STD", "CORONAL MPR 3MM", "SAGITTAL MPR 3MM",
         "AXIAL LUNG 1MM", "ARTERIAL PHASE", "PORTAL VENOUS PHASE"),
        (("SIEMENS", "SOMATOM Definition AS"), ("GE MEDICAL SYSTEMS", "Revolution CT"),
         ("Philips", "Ingenuity CT"), ("Canon Medical Systems", "Aquilion ONE")),
        _SLICE_DYNAMIC,
    ),
    "MR": _ModalitySpec(
        MRImageStorage, 0.12, ((256, 256), (256, 256), (256, 256), (512, 512)), 1, 16, 12,
        "MONOCHROME2", (4, 10), (20, 150),
        (
            ("MR BRAIN WO W CONTRAST", "BRAIN"),
            ("MR KNEE WO CONTRAST", "KNEE"),
            ("MR LUMBAR SPINE WO CONTRAST", "LSPINE"),
            ("MR SHOULDER WO CONTRAST", "SHOULDER"),
            ("MR PROSTATE MULTIPARAMETRIC", "PROSTATE"),
            ("MR CERVICAL SPINE WO CONTRAST", "CSPINE"),
        ),
        ("T1 SAG", "T2 AX", "FLAIR AX", "DWI AX", "ADC AX", "T1 POST AX", "T2 COR", "PD FS COR",
         "SWI AX", "T1 MPRAGE SAG", "T2 STIR SAG", "LOCALIZER"),
        (("SIEMENS", "MAGNETOM Skyra"), ("GE MEDICAL SYSTEMS", "SIGNA Premier"),
         ("Philips Medical Systems", "Ingenia 3.0T")),
        _SLICE_DYNAMIC,
    ),
    "CR": _ModalitySpec(
        ComputedRadiographyImageStorage, 0.28, ((2500, 2000), (2000, 2500), (2370, 1770)), 1, 16,
        12, "MONOCHROME2", (1, 1), (1, 3),
        (
            ("XR CHEST 2 VIEWS", "CHEST"),
            ("XR HAND 3 VIEWS", "HAND"),
            ("XR KNEE 2 VIEWS", "KNEE"),
            ("XR ANKLE 3 VIEWS", "ANKLE"),
            ("XR PELVIS 1 VIEW", "PELVIS"),
            ("XR SKULL 2 VIEWS", "SKULL"),
        ),
        ("CR VIEWS",),
        (("FUJIFILM Corporation", "FCR PROFECT CS"), ("Carestream Health", "DirectView CR 975"),
         ("Agfa", "CR 30-X")),
        _PROJECTION_DYNAMIC,
    ),
    "DX": _ModalitySpec(
        DigitalXRayImageStorageForPresentation, 0.17, ((3000, 2800), (2800, 3000)), 1, 16, 14,
        "MONOCHROME2", (1, 1), (1, 4),
        (
            ("XR CHEST PA LATERAL", "CHEST"),
            ("XR LUMBAR SPINE 3 VIEWS", "LSPINE"),
            ("XR SHOULDER 2 VIEWS", "SHOULDER"),
            ("XR ABDOMEN 1 VIEW", "ABDOMEN"),
            ("XR FOOT 3 VIEWS", "FOOT"),
        ),
        ("DX VIEWS",),
        (("Philips Medical Systems", "DigitalDiagnost C90"), ("Carestream Health", "DRX-Evolution"),
         ("SIEMENS", "Ysio Max")),
        _PROJECTION_DYNAMIC,
    ),
    "US": _ModalitySpec(
        UltrasoundImageStorage, 0.15, ((480, 640),), 3, 8, 8, "RGB", (1, 1), (5, 40),
        (
            ("US ABDOMEN COMPLETE", "ABDOMEN"),
            ("US THYROID", "NECK"),
            ("US PELVIS TRANSABDOMINAL", "PELVIS"),
            ("US RENAL", "KIDNEY"),
            ("US OB 2ND TRIMESTER", "ABDOMEN"),
            ("US CAROTID DOPPLER", "NECK"),
        ),
        ("US IMAGES",),
        (("GE Healthcare", "LOGIQ E10"), ("Philips", "EPIQ 7G"), ("SIEMENS", "ACUSON Sequoia")),
        (),
    ),
    "MG": _ModalitySpec(
        DigitalMammographyXRayImageStorageForPresentation, 0.08, ((4096, 3328),), 1, 16, 14,
        "MONOCHROME2", (1, 1), (4, 4),
        (("MG SCREENING BILATERAL", "BREAST"), ("MG DIAGNOSTIC BILATERAL", "BREAST")),
        ("MAMMO VIEWS",),
        (("HOLOGIC, Inc.", "Selenia Dimensions"), ("SIEMENS", "MAMMOMAT Revelation"),
         ("GE MEDICAL SYSTEMS", "Senographe Pristina")),
        _PROJECTION_DYNAMIC,
    ),
}

_SITES: tuple[tuple[str, str], ...] = (
    ("SYNTH GENERAL HOSPITAL", "GEN"),
    ("SYNTH NORTH CLINIC", "NOR"),
    ("SYNTH RIVERSIDE MEDICAL CENTER", "RIV"),
    ("SYNTH CHILDRENS HOSPITAL", "KID"),
)
_GIVEN_F = ("ALICE", "BEATRICE", "CAROL", "DIANA", "EVE", "FIONA", "GRACE", "HANNAH", "IRIS",
            "JULIA", "KATE", "LAURA", "MARTA", "NORA", "OLIVIA", "PAULA", "RUTH", "SARA")
_GIVEN_M = ("ADAM", "BOB", "CARL", "DAVID", "ERIC", "FRANK", "GEORGE", "HENRY", "IVAN", "JACK",
            "KARL", "LEO", "MAX", "NOAH", "OSCAR", "PETER", "ROBERT", "SAM")
_DOCTORS = ("HOUSE", "GREY", "WATSON", "QUINN", "STRANGE", "ZHIVAGO", "DOLITTLE", "JEKYLL")
_STUDIES_PER_PATIENT_WEIGHTS = (34, 24, 16, 11, 8, 7)  # for 1..6 studies
_WEEKEND_FACTOR = 0.3
_MG_VIEWS = (("CC", "R"), ("CC", "L"), ("MLO", "R"), ("MLO", "L"))
_XR_VIEWS = ("PA", "LAT", "AP", "LL", "RL")


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _lenient_pydicom() -> Iterator[None]:
    """Let pydicom set and write invalid values (for the bad files) without warnings."""
    settings = pydicom_config.settings
    saved = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = pydicom_config.IGNORE
    settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = saved


def _force(ds: Dataset, keyword: str, value: str) -> None:
    """Set ``keyword`` to ``value`` even if it is invalid for its VR (no validation)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    ds[tag] = DataElement(tag, dictionary_VR(tag), value, validation_mode=pydicom_config.IGNORE)


def _encode_element(tag: int, vr: str, value: bytes, implicit: bool) -> bytes:
    """One little-endian data element (value padded to even length like pydicom does)."""
    if len(value) % 2:
        value += b"\x00" if vr in _NUL_PADDED_VRS else b" "
    group, elem = tag >> 16, tag & 0xFFFF
    if implicit:
        return struct.pack("<HHI", group, elem, len(value)) + value
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, elem, vr.encode("ascii"), 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr.encode("ascii"), len(value)) + value


def _pixel_vr(bits_allocated: int) -> str:
    return "OW" if bits_allocated > 8 else "OB"


@functools.cache
def _tag_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, dictionary_VR(tag)


def _value_bytes(vr: str, value: Any) -> bytes:
    """The unpadded encoding of a simple value (text VRs, US, or raw bytes)."""
    if isinstance(value, bytes):
        return value
    if vr == "US":
        values = value if isinstance(value, list | tuple) else [value]
        return struct.pack(f"<{len(values)}H", *values)
    if isinstance(value, list | tuple):
        value = "\\".join(str(v) for v in value)
    return str(value).encode("latin-1")  # ISO_IR 100


class _Template:
    """The elements shared by every instance of a series: keyword -> value, set like a Dataset.

    Values are text (``str`` or a list of ``str`` for multi-valued elements), ``int`` for US
    and IS, or ``bytes``. Encoded directly by :class:`_SeriesWriter` (much faster than
    building a pydicom Dataset per series); :meth:`dataset` gives the pydicom equivalent.
    """

    def __init__(self) -> None:
        self.elements: dict[int, tuple[str, Any]] = {}
        self.meta: dict[int, tuple[str, Any]] = {}

    def __setitem__(self, keyword: str, value: Any) -> None:
        tag, vr = _tag_vr(keyword)
        (self.meta if tag >> 16 == 0x0002 else self.elements)[tag] = (vr, value)

    def __getitem__(self, keyword: str) -> Any:
        tag, _ = _tag_vr(keyword)
        return (self.meta if tag >> 16 == 0x0002 else self.elements)[tag][1]

    def dataset(self) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        for tag, (vr, value) in self.meta.items():
            ds.file_meta.add_new(tag, vr, value)
        for tag, (vr, value) in self.elements.items():
            ds.add_new(tag, vr, value)
        return ds


class _SeriesWriter:
    """Encodes the instances of one series: the template is encoded once, per series.

    ``template`` holds every element except the per-instance ones listed in ``dynamic`` and
    Pixel Data; ``template.meta`` holds FileMetaInformationVersion, MediaStorageSOPClassUID,
    TransferSyntaxUID, ImplementationClassUID and ImplementationVersionName.
    """

    def __init__(self, template: _Template, dynamic: Sequence[tuple[int, str]], *,
                 implicit: bool) -> None:
        self.template = template
        self.implicit = implicit
        self.dynamic = dict(dynamic)
        self.pixel_vr = _pixel_vr(int(template["BitsAllocated"]))
        self.dynamic[_PIXEL_DATA_TAG] = self.pixel_vr
        meta = sorted(template.meta.items())
        self._meta_before = b"".join(_encode_element(tag, vr, _value_bytes(vr, v), False)
                                     for tag, (vr, v) in meta if tag < 0x00020003)
        self._meta_after = b"".join(_encode_element(tag, vr, _value_bytes(vr, v), False)
                                    for tag, (vr, v) in meta if tag > 0x00020003)
        # The body: pre-encoded runs of template elements, interleaved with dynamic slots.
        self._parts: list[bytes | int] = []
        chunk: list[bytes] = []
        for tag in sorted(set(template.elements) | set(self.dynamic)):
            if tag in self.dynamic:
                if chunk:
                    self._parts.append(b"".join(chunk))
                    chunk = []
                self._parts.append(tag)
            else:
                vr, value = template.elements[tag]
                chunk.append(_encode_element(tag, vr, _value_bytes(vr, value), implicit))
        if chunk:
            self._parts.append(b"".join(chunk))

    def encode(self, values: dict[int, bytes]) -> list[bytes]:
        """The file's bytes, as a list of parts, for one instance's dynamic element values."""
        sop = values[_T_SOP_INSTANCE[0]]
        meta = self._meta_before + _encode_element(0x00020003, "UI", sop, False) + self._meta_after
        out = [_PREAMBLE + _encode_element(0x00020000, "UL", struct.pack("<I", len(meta)), False),
               meta]
        for part in self._parts:
            if isinstance(part, bytes):
                out.append(part)
                continue
            value = values[part]
            if part == _PIXEL_DATA_TAG:  # avoid copying large pixel buffers
                header = _encode_element(part, self.pixel_vr, b"", self.implicit)
                out.append(header[:-4] + struct.pack("<I", len(value)))
                out.append(value)
            else:
                out.append(_encode_element(part, self.dynamic[part], value, self.implicit))
        return out

    def dataset(self, values: dict[int, bytes]) -> Dataset:
        """The same instance as a pydicom Dataset (slow path, used for bad files and checks)."""
        with _lenient_pydicom():
            ds = self.template.dataset()
            for tag, raw in values.items():
                vr = self.dynamic[tag]
                ds.add_new(tag, vr, raw if tag == _PIXEL_DATA_TAG else raw.decode("ascii"))
            ds.file_meta.MediaStorageSOPInstanceUID = values[_T_SOP_INSTANCE[0]].decode("ascii")
        return ds


def _dataset_bytes(ds: Dataset) -> bytes:
    """Encode a dataset as a Part-10 file with pydicom, allowing invalid values."""
    buf = io.BytesIO()
    with _lenient_pydicom():
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------


class _PixelSource:
    """Seeded pixel content for one series: one base image, cheap per-instance variants.

    The base image is a smooth elliptical "body" plus low-amplitude noise (so it compresses a
    little, like real images); instance ``i`` is the base shifted by a few pixels with ``i``
    stamped into its first samples, so every instance's pixel bytes differ.
    """

    _MAX_SHIFT = 4096

    def __init__(self, rng: np.random.Generator, rows: int, columns: int, samples: int,
                 bits_allocated: int, bits_stored: int) -> None:
        self.samples = samples
        self.count = rows * columns * samples
        self.dtype = np.uint16 if bits_allocated > 8 else np.uint8
        self.max_value = (1 << bits_stored) - 1
        base = self._base_image(rng, rows, columns).reshape(-1)
        if samples > 1:
            tint = np.array([1.0, 0.96, 0.9], dtype=np.float32)[:samples]
            base = (base[:, None].astype(np.float32) * tint[None, :]).astype(self.dtype).reshape(-1)
        self.shifts = max(1, min(rows * columns, self._MAX_SHIFT))
        self.buffer = np.concatenate([base, base[: self.shifts * samples]])
        self.odd = (self.count * np.dtype(self.dtype).itemsize) % 2 == 1

    def _base_image(self, rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
        step = 8
        cr, cc = math.ceil(rows / step), math.ceil(columns / step)
        y = np.linspace(-1.0, 1.0, cr, dtype=np.float32)[:, None]
        x = np.linspace(-1.0, 1.0, cc, dtype=np.float32)[None, :]
        a, b = rng.uniform(0.55, 0.9), rng.uniform(0.6, 0.95)
        r2 = (x / a) ** 2 + (y / b) ** 2
        top = self.max_value
        img = np.where(r2 < 1.0, top * rng.uniform(0.25, 0.4) * (1.25 - 0.5 * r2), top * 0.01)
        for _ in range(3):  # a few "organs"
            ox, oy = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)
            rad = rng.uniform(0.08, 0.25)
            blob = ((x - ox) ** 2 + (y - oy) ** 2) < rad * rad
            img = np.where(blob, img + top * rng.uniform(0.05, 0.2), img)
        coarse = np.clip(img, 0, top).astype(np.float32)
        full = np.repeat(np.repeat(coarse, step, axis=0), step, axis=1)[:rows, :columns]
        noise_amp = max(2, (top + 1) // 64)
        noise = rng.integers(0, noise_amp, size=(rows, columns), dtype=np.uint16)
        out = np.minimum(full.astype(np.uint16) + noise, top)
        return out.astype(self.dtype)

    def instance(self, index: int) -> bytes:
        off = ((index * 7919) % self.shifts) * self.samples
        arr = self.buffer[off: off + self.count].copy()
        mask = self.max_value
        stamp = (index & mask, (index >> 8) & mask, (index >> 16) & mask)
        for i, v in enumerate(stamp[: min(3, self.count)]):
            arr[i] = v
        data = arr.tobytes()
        return data + b"\x00" if self.odd else data


# --------------------------------------------------------------------------------------------
# Generation state
# --------------------------------------------------------------------------------------------


@dataclass
class _Patient:
    patient_id: str
    name: str
    birth_date: date
    sex: str
    site: int


@dataclass
class _Study:
    patient: _Patient
    uid: str
    study_date: date
    time_s: int
    modality: str
    accession: str
    study_id: str
    description: str
    body_part: str
    institution: str
    station: str
    manufacturer: str
    model: str
    referring: str
    laterality: str


class _Progress:
    """Logs a counter line every few seconds during long runs."""

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label = label
        self.total = total
        self.count = 0
        self.start = time.monotonic()
        self.next_at = self.start + _PROGRESS_EVERY_S

    def tick(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now >= self.next_at:
            self.next_at = now + _PROGRESS_EVERY_S
            rate = self.count / max(now - self.start, 1e-9)
            of = f"/{self.total}" if self.total is not None else ""
            log.info("synth %s: %d%s files written (%.0f files/s)", self.label, self.count, of, rate)


def _fmt_time(seconds: int) -> str:
    seconds = max(0, min(int(seconds), 86399))
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def _age(birth: date, on: date) -> str:
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    months = max(months, 0)
    if months >= 24:
        return f"{min(months // 12, 999):03d}Y"
    if months >= 1:
        return f"{months:03d}M"
    return f"{max((on - birth).days // 7, 0):03d}W"


def _day_sampler(start: date, end: date, growth: float) -> tuple[list[date], list[float]]:
    """Days of [start, end] and cumulative weights: yearly growth, fewer studies at weekends."""
    days: list[date] = []
    cum: list[float] = []
    total = 0.0
    n = (end - start).days + 1
    for i in range(n):
        d = start + datetime.timedelta(days=i)
        w = (1.0 + growth) ** (i / 365.25)
        if d.weekday() >= 5:
            w *= _WEEKEND_FACTOR
        total += w
        days.append(d)
        cum.append(total)
    return days, cum


class _Builder:
    """Shared state of one generation run: RNG, sites/stations, directories, written files."""

    def __init__(self, root: Path, seed: int, namespace: str, *, total: int | None = None) -> None:
        self.root = root
        self.seed = seed
        self.namespace = namespace
        self.rng = random.Random(f"pacs.synth:{namespace}:{seed}")
        self.files: list[SynthFile] = []
        self.progress = _Progress(namespace, total)
        self._dirs: set[Path] = set()
        self._names: set[str] = set()
        self._ids: set[str] = set()
        self._series_counter = 0
        self.sites = [_SITES[i] for i in sorted(self.rng.sample(range(4), self.rng.choice((3, 4))))]
        self._stations: dict[tuple[int, str], list[tuple[str, str, str]]] = {}

    def uid(self, *parts: object) -> str:
        src = "|".join((self.namespace, str(self.seed), *(str(p) for p in parts)))
        return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=[src]))

    def unique_id(self, prefix: str, digits: int) -> str:
        while True:
            value = f"{prefix}{self.rng.randrange(10 ** (digits - 1), 10 ** digits)}"
            if value not in self._ids:
                self._ids.add(value)
                return value

    def file_name(self, suffix: str = ".dcm") -> str:
        while True:
            name = f"{self.rng.getrandbits(64):016x}{suffix}"
            if name not in self._names:
                self._names.add(name)
                return name

    def directory(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        if path not in self._dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path)
        return path

    def station(self, site: int, modality: str) -> tuple[str, str, str]:
        """(station name, manufacturer, model) of a site's scanner for a modality."""
        key = (site, modality)
        if key not in self._stations:
            spec = _MODALITIES[modality]
            code = self.sites[site][1]
            n = self.rng.choice((1, 1, 2))
            self._stations[key] = [
                (f"{code}_{modality}{i + 1:02d}", *self.rng.choice(spec.devices)) for i in range(n)
            ]
        return self.rng.choice(self._stations[key])

    def patient(self, *, birth_before: date, sex: str | None = None) -> _Patient:
        rng = self.rng
        sex = sex or rng.choice("FM")
        given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
        lo = date(1930, 1, 1).toordinal()
        hi = max(lo, birth_before.toordinal() - 365)
        birth = date.fromordinal(rng.randint(lo, hi))
        return _Patient(self.unique_id("SYN", 7), f"SYNTH^{given}", birth, sex,
                        rng.randrange(len(self.sites)))

    def study(self, patient: _Patient, modality: str, study_date: date, index: int) -> _Study:
        rng = self.rng
        spec = _MODALITIES[modality]
        description, body_part = rng.choice(spec.procedures)
        weekend = study_date.weekday() >= 5
        hour = rng.randint(8, 15) if weekend else rng.choice((7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18))
        site = patient.site if rng.random() < 0.85 else rng.randrange(len(self.sites))
        station, manufacturer, model = self.station(site, modality)
        if body_part in ("BREAST",):
            laterality = "B"
        elif body_part in ("HAND", "KNEE", "ANKLE", "SHOULDER", "FOOT"):
            laterality = rng.choice("LR")
        else:
            laterality = "U"
        return _Study(
            patient=patient,
            uid=self.uid("study", patient.patient_id, index),
            study_date=study_date,
            time_s=hour * 3600 + rng.randrange(3600),
            modality=modality,
            accession=self.unique_id("A", 9),
            study_id=str(rng.randint(1, 99999)),
            description=description,
            body_part=body_part,
            institution=self.sites[site][0],
            station=station,
            manufacturer=manufacturer,
            model=model,
            referring=f"{rng.choice(_DOCTORS)}^{rng.choice(_GIVEN_F + _GIVEN_M)}^^^DR",
            laterality=laterality,
        )

    # -- series ------------------------------------------------------------------------------

    def write_series(self, study: _Study, *, number: int, description: str, instances: int,
                     rows: int, columns: int, implicit: bool) -> None:
        """Write one series of ``instances`` files of ``study``."""
        writer, pixels, dynamic_fn = self.prepare_series(
            study, number=number, description=description, rows=rows, columns=columns,
            implicit=implicit,
        )
        directory = self.directory(study.station, study.study_date.strftime("%Y%m%d"))
        series_uid = str(writer.template["SeriesInstanceUID"])
        study_date = study.study_date.strftime("%Y%m%d")
        for i in range(instances):
            sop_uid = self.uid("sop", series_uid, i)
            values = dynamic_fn(i)
            values[_T_SOP_INSTANCE[0]] = sop_uid.encode("ascii")
            values[_T_INSTANCE_NUMBER[0]] = str(i + 1).encode("ascii")
            values[_T_CONTENT_TIME[0]] = _fmt_time(study.time_s + 60 * number + 2 * i).encode("ascii")
            values[_PIXEL_DATA_TAG] = pixels.instance(i)
            parts = writer.encode(values)
            path = directory / self.file_name()
            with open(path, "wb") as fh:
                fh.writelines(parts)
            os.utime(path, (GOOD_MTIME, GOOD_MTIME))
            self.files.append(SynthFile(
                path=str(path), kind=KIND_GOOD, sop_instance_uid=sop_uid,
                study_instance_uid=study.uid, series_instance_uid=series_uid,
                patient_id=study.patient.patient_id, modality=study.modality,
                study_date=study_date, size_bytes=sum(len(p) for p in parts),
            ))
            self.progress.tick()

    def series_writer(self, study: _Study, *, number: int, description: str, rows: int,
                      columns: int, implicit: bool) -> tuple[_SeriesWriter, _DynamicFn]:
        """The writer and per-instance value function of a series (no side effects)."""
        spec = _MODALITIES[study.modality]
        series_uid = self.uid("series", study.uid, number)
        for_uid = self.uid("frame", study.uid, number)
        template = _series_template(study, spec, series_uid=series_uid, for_uid=for_uid,
                                    number=number, description=description, rows=rows,
                                    columns=columns, implicit=implicit,
                                    series_time_s=study.time_s + 60 * number)
        writer = _SeriesWriter(template, (_T_SOP_INSTANCE, _T_CONTENT_TIME, _T_INSTANCE_NUMBER,
                                          *spec.dynamic), implicit=implicit)
        return writer, _dynamic_values_fn(study, template, description)

    def prepare_series(self, study: _Study, *, number: int, description: str, rows: int,
                       columns: int, implicit: bool) -> tuple[_SeriesWriter, _PixelSource, _DynamicFn]:
        """The writer, pixel source and per-instance value function of a new series."""
        self._series_counter += 1
        spec = _MODALITIES[study.modality]
        writer, dynamic_fn = self.series_writer(study, number=number, description=description,
                                                rows=rows, columns=columns, implicit=implicit)
        pixel_rng = np.random.default_rng(
            [self.seed % 2**63, zlib.crc32(self.namespace.encode("ascii")), self._series_counter]
        )
        pixels = _PixelSource(pixel_rng, rows, columns, spec.samples, spec.bits_allocated,
                              spec.bits_stored)
        return writer, pixels, dynamic_fn


def _ct_thickness(description: str) -> float:
    for marker, mm in (("1.25", 1.25), ("1MM", 1.0), ("2.5", 2.5), ("3MM", 3.0)):
        if marker in description:
            return mm
    return 5.0


def _orientation(description: str) -> str:
    if "SAG" in description:
        return "SAG"
    if "COR" in description:
        return "COR"
    return "AX"


_ORIENTATION_COSINES = {"AX": "1\\0\\0\\0\\1\\0", "SAG": "0\\1\\0\\0\\0\\-1", "COR": "1\\0\\0\\0\\0\\-1"}


def _dynamic_values_fn(study: _Study, template: _Template, description: str) -> _DynamicFn:
    """A function instance-index -> {tag: raw value} for the modality's extra dynamic elements."""
    modality = study.modality
    if modality in ("CT", "MR"):
        thickness = float(template["SliceThickness"])
        spacing = float(template["PixelSpacing"][0])
        half = spacing * int(template["Columns"]) / 2.0
        orient = _orientation(description)

        def slices(i: int) -> dict[int, bytes]:
            z = 100.0 - i * thickness
            if orient == "AX":
                pos = (-half, -half, z)
            elif orient == "SAG":
                pos = (z - 100.0 + thickness, -half, half)
            else:
                pos = (-half, z - 100.0 + thickness, half)
            loc = z if orient == "AX" else pos[0] if orient == "SAG" else pos[1]
            return {
                _T_IMAGE_POSITION[0]: "\\".join(f"{v:.3f}" for v in pos).encode("ascii"),
                _T_SLICE_LOCATION[0]: f"{loc:.3f}".encode("ascii"),
            }

        return slices
    if modality == "MG":
        def mammo(i: int) -> dict[int, bytes]:
            view, side = _MG_VIEWS[i % len(_MG_VIEWS)]
            return {_T_VIEW_POSITION[0]: view.encode("ascii"),
                    _T_LATERALITY[0]: side.encode("ascii")}

        return mammo
    if modality in ("CR", "DX"):
        side = study.laterality.encode("ascii")

        def projection(i: int) -> dict[int, bytes]:
            return {_T_VIEW_POSITION[0]: _XR_VIEWS[i % len(_XR_VIEWS)].encode("ascii"),
                    _T_LATERALITY[0]: side}

        return projection

    def nothing(i: int) -> dict[int, bytes]:
        return {}

    return nothing


def _series_template(study: _Study, spec: _ModalitySpec, *, series_uid: str, for_uid: str,
                     number: int, description: str, rows: int, columns: int, implicit: bool,
                     series_time_s: int) -> _Template:
    """Every element of a series' instances except the per-instance ones."""
    patient = study.patient
    modality = study.modality
    da = study.study_date.strftime("%Y%m%d")
    ds = _Template()
    ds["FileMetaInformationVersion"] = b"\x00\x01"
    ds["MediaStorageSOPClassUID"] = spec.sop_class_uid
    ds["TransferSyntaxUID"] = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds["ImplementationClassUID"] = PYDICOM_IMPLEMENTATION_UID
    ds["ImplementationVersionName"] = IMPLEMENTATION_VERSION_NAME
    ds["SpecificCharacterSet"] = "ISO_IR 100"
    derived = modality == "CT" and "MPR" in description
    if modality in ("CT", "MR"):
        ds["ImageType"] = [
            "DERIVED" if derived else "ORIGINAL",
            "SECONDARY" if derived else "PRIMARY",
            "AXIAL" if modality == "CT" else "OTHER",
        ]
    else:
        ds["ImageType"] = ["ORIGINAL", "PRIMARY"]
    ds["SOPClassUID"] = spec.sop_class_uid
    ds["StudyDate"] = da
    ds["SeriesDate"] = da
    ds["AcquisitionDate"] = da
    ds["ContentDate"] = da
    ds["StudyTime"] = _fmt_time(study.time_s)
    ds["SeriesTime"] = _fmt_time(series_time_s)
    ds["AccessionNumber"] = study.accession
    ds["Modality"] = modality
    if modality in ("DX", "MG"):
        ds["PresentationIntentType"] = "FOR PRESENTATION"
    ds["Manufacturer"] = study.manufacturer
    ds["InstitutionName"] = study.institution
    ds["InstitutionAddress"] = "1 SYNTHETIC WAY"
    ds["ReferringPhysicianName"] = study.referring
    ds["StationName"] = study.station
    ds["StudyDescription"] = study.description
    ds["SeriesDescription"] = description
    ds["InstitutionalDepartmentName"] = "RADIOLOGY"
    ds["OperatorsName"] = "SYNTH^TECH"
    ds["ManufacturerModelName"] = study.model
    ds["PatientName"] = patient.name
    ds["PatientID"] = patient.patient_id
    ds["IssuerOfPatientID"] = "SYNTH"
    ds["PatientBirthDate"] = patient.birth_date.strftime("%Y%m%d")
    ds["PatientSex"] = patient.sex
    ds["PatientAge"] = _age(patient.birth_date, study.study_date)
    ds["BodyPartExamined"] = study.body_part
    ds["DeviceSerialNumber"] = f"SN{zlib.crc32(study.station.encode('ascii')) % 10**6:06d}"
    ds["SoftwareVersions"] = "SYNTH 1.0"
    ds["ProtocolName"] = description
    if modality in ("CT", "MR"):
        ds["PatientPosition"] = "HFS"
    ds["StudyInstanceUID"] = study.uid
    ds["SeriesInstanceUID"] = series_uid
    ds["StudyID"] = study.study_id
    ds["SeriesNumber"] = number
    ds["AcquisitionNumber"] = 1
    ds["FrameOfReferenceUID"] = for_uid
    ds["PositionReferenceIndicator"] = ""
    ds["SamplesPerPixel"] = spec.samples
    ds["PhotometricInterpretation"] = spec.photometric
    if spec.samples > 1:
        ds["PlanarConfiguration"] = 0
    ds["Rows"] = rows
    ds["Columns"] = columns
    ds["BitsAllocated"] = spec.bits_allocated
    ds["BitsStored"] = spec.bits_stored
    ds["HighBit"] = spec.bits_stored - 1
    ds["PixelRepresentation"] = 0
    fov_scale = spec.matrices[0][1] / max(columns, 1)
    if modality == "CT":
        fov = 500.0 if study.body_part != "HEAD" else 250.0
        thick = _ct_thickness(description)
        ds["KVP"] = "120"
        ds["SliceThickness"] = f"{thick:g}"
        ds["ConvolutionKernel"] = "STANDARD" if "LUNG" not in description else "LUNG"
        ds["PixelSpacing"] = [f"{fov / columns:.6f}"] * 2
        ds["ImageOrientationPatient"] = "1\\0\\0\\0\\1\\0"
        ds["RescaleIntercept"] = "-1024"
        ds["RescaleSlope"] = "1"
        ds["RescaleType"] = "HU"
        ds["WindowCenter"] = "40"
        ds["WindowWidth"] = "400"
    elif modality == "MR":
        fov = 240.0
        ds["ScanningSequence"] = "SE"
        ds["SequenceVariant"] = "SK"
        ds["MRAcquisitionType"] = "2D"
        ds["SliceThickness"] = "4" if "AX" in description else "3"
        ds["RepetitionTime"] = "4000" if "T2" in description else "600"
        ds["EchoTime"] = "90" if "T2" in description else "12"
        ds["MagneticFieldStrength"] = "3" if "3.0T" in study.model or "Skyra" in study.model else "1.5"
        ds["PixelSpacing"] = [f"{fov / columns:.6f}"] * 2
        ds["ImageOrientationPatient"] = _ORIENTATION_COSINES[_orientation(description)]
        ds["WindowCenter"] = "600"
        ds["WindowWidth"] = "1200"
    elif modality != "US":
        pitch = {"CR": 0.15, "DX": 0.143, "MG": 0.07}[modality] * fov_scale
        ds["ImagerPixelSpacing"] = [f"{pitch:.6f}"] * 2
        ds["PixelSpacing"] = [f"{pitch:.6f}"] * 2
        ds["PatientOrientation"] = ["A", "R"] if modality == "MG" else ["P", "F"]
        ds["WindowCenter"] = str((1 << spec.bits_stored) // 2)
        ds["WindowWidth"] = str(1 << spec.bits_stored)
        if modality == "MG":
            ds["BreastImplantPresent"] = "NO"
            ds["CompressionForce"] = "90"
    ds["LossyImageCompression"] = "00"
    return ds


# --------------------------------------------------------------------------------------------
# Public generators
# --------------------------------------------------------------------------------------------


def _scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


def _check_modalities(modalities: Sequence[str]) -> list[str]:
    mods = [m.upper() for m in modalities]
    unknown = sorted(set(mods) - set(_MODALITIES))
    if unknown or not mods:
        raise ValueError(f"unknown or no modalities {unknown}; choose from {sorted(_MODALITIES)}")
    return mods


def generate_archive(
    root: str | Path,
    *,
    seed: int = 0,
    patients: int = 50,
    start: datetime.date = date(2021, 1, 1),
    end: datetime.date = date(2025, 12, 31),
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    size_scale: float = 1.0,
    count_scale: float = 1.0,
    growth: float = 0.08,
    bad: bool = False,
    duplicates: int = 0,
) -> SynthResult:
    """Write a synthetic hospital archive under ``root`` and return what was written.

    ``patients`` patients get 1-6 studies each on days drawn from [start, end] with a yearly
    ``growth`` trend and fewer studies at weekends; each study has one modality (a realistic mix
    of ``modalities``; mammography only for women). ``size_scale`` scales the image matrix in
    each dimension, ``count_scale`` the number of instances per series (at least 1).
    ``duplicates`` adds that many byte-identical copies of good files; ``bad`` adds the bad
    set of :func:`generate_bad_files` under ``root/incoming-bad`` (with the ``unsafe_path``
    link target in ``<root>-outside`` next to ``root``).
    """
    mods = _check_modalities(modalities)
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if patients < 0 or duplicates < 0 or size_scale <= 0 or count_scale <= 0:
        raise ValueError("patients and duplicates must be >= 0, scales > 0")
    root_path = Path(root).absolute()
    root_path.mkdir(parents=True, exist_ok=True)
    b = _Builder(root_path, seed, "archive")
    rng = b.rng
    days, cum = _day_sampler(start, end, growth)
    weights = [_MODALITIES[m].weight for m in mods]
    non_mg = [m for m in mods if m != "MG"]
    non_mg_weights = [_MODALITIES[m].weight for m in non_mg]
    log.info("synth archive: %d patients, %s..%s, modalities %s, seed %d", patients, start, end,
             ",".join(mods), seed)
    for _ in range(patients):
        sex = "F" if mods == ["MG"] else None
        patient = b.patient(birth_before=start, sex=sex)
        n_studies = rng.choices(range(1, 7), weights=_STUDIES_PER_PATIENT_WEIGHTS)[0]
        study_days = sorted(rng.choices(days, cum_weights=cum, k=n_studies))
        for s_index, day in enumerate(study_days):
            modality = rng.choices(mods, weights=weights)[0]
            if modality == "MG" and patient.sex != "F" and non_mg:
                modality = rng.choices(non_mg, weights=non_mg_weights)[0]
            study = b.study(patient, modality, day, s_index)
            _write_study(b, study, size_scale=size_scale, count_scale=count_scale)
    good = list(b.files)
    if duplicates:
        if not good:
            log.warning("synth archive: no good files to duplicate")
        else:
            picks = (rng.sample(good, duplicates) if duplicates <= len(good)
                     else [rng.choice(good) for _ in range(duplicates)])
            for j, original in enumerate(picks):
                b.files.append(_copy_duplicate(original, Path(original.path).parent / b.file_name(), j))
    result = SynthResult(root=root_path, files=b.files)
    if bad:
        outside = root_path.parent / (root_path.name + "-outside")
        reference = SynthResult(root=root_path, files=good)
        result.files.extend(generate_bad_files(root_path / "incoming-bad", seed=seed,
                                               reference=reference, outside=outside))
    log.info("synth archive: %s", json.dumps({**result.summary(), "counts": result.counts()}))
    return result


def _write_study(b: _Builder, study: _Study, *, size_scale: float, count_scale: float) -> None:
    rng = b.rng
    spec = _MODALITIES[study.modality]
    n_series = rng.randint(*spec.series_range)
    descriptions = (rng.sample(spec.series_descriptions, n_series)
                    if n_series <= len(spec.series_descriptions)
                    else [rng.choice(spec.series_descriptions) for _ in range(n_series)])
    base_rows, base_cols = rng.choice(spec.matrices)
    for k in range(n_series):
        if study.modality == "MR":
            base_rows, base_cols = rng.choice(spec.matrices)
        rows = max(1, round(base_rows * size_scale))
        cols = max(1, round(base_cols * size_scale))
        instances = _scaled(rng.randint(*spec.instances_range), count_scale)
        implicit = rng.random() < 0.1
        b.write_series(study, number=k + 1, description=descriptions[k], instances=instances,
                       rows=rows, columns=cols, implicit=implicit)


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
# Bad files
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


def _element_value_span(data: bytes, tag: int, implicit: bool, start: int) -> tuple[int, int]:
    """(value offset, declared length) of the first top-level ``tag`` in an encoded dataset.

    Walks the little-endian elements from ``start`` (no sequences of undefined length expected).
    """
    pos = start
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        this = group << 16 | elem
        if group == 0x0002 or not implicit:
            vr = data[pos + 4: pos + 6].decode("ascii")
            if vr in _LONG_VRS:
                length = struct.unpack_from("<I", data, pos + 8)[0]
                value_at = pos + 12
            else:
                length = struct.unpack_from("<H", data, pos + 6)[0]
                value_at = pos + 8
        else:
            length = struct.unpack_from("<I", data, pos + 4)[0]
            value_at = pos + 8
        if this == tag:
            return value_at, length
        pos = value_at + length
    raise ValueError(f"tag {tag:08X} not found")


def element_value_span(data: bytes, tag: int) -> tuple[int, int]:
    """(value offset, declared length) of the top-level ``tag`` in a little-endian Part-10 file.

    A small helper for checks (e.g. that a truncated file is shorter than its Pixel Data
    element says); the transfer syntax is read from the file meta.
    """
    if data[128:132] != b"DICM":
        raise ValueError("not a Part-10 file")
    ts_at, ts_len = _element_value_span(data, 0x00020010, False, 132)
    ts = data[ts_at: ts_at + ts_len].rstrip(b"\x00 ").decode("ascii")
    return _element_value_span(data, tag, ts == ImplicitVRLittleEndian, 132)


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
    b = _Builder(root_path, seed, "bad")
    rng = b.rng
    out: list[SynthFile] = []

    def fresh(label: str) -> Dataset:
        """A complete, valid 16x16 CT instance of its own new patient/study."""
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

    def write_ds(kind: str, ds: Dataset, mtime: float = BAD_MTIME) -> SynthFile:
        data = _dataset_bytes(ds)
        path = root_path / b.file_name()
        _write_bytes(path, data, mtime)
        return _bad_file(path, kind, ds, len(data))

    # not_dicom
    csv = ("accession,study_date,modality,status\n"
           + "".join(f"A{rng.randrange(10**8, 10**9)},2023{rng.randint(1, 12):02d}15,CT,done\n"
                     for _ in range(20))).encode("ascii")
    png = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
           + struct.pack(">IIBBBBB", 32, 32, 8, 0, 0, 0, 0) + rng.randbytes(604))
    for suffix, data in ((".csv", csv), (".png", png), (".dcm", b"")):
        path = root_path / b.file_name(suffix)
        _write_bytes(path, data, BAD_MTIME)
        out.append(_bad_file(path, "not_dicom", None, len(data)))

    # unreadable: cut in the middle of a header value, in the middle of the pixel data; garbage
    ds = fresh("unreadable-header")
    data = _dataset_bytes(ds)
    value_at, length = element_value_span(data, 0x00200037)  # ImageOrientationPatient
    cut = data[: value_at + length // 2]
    path = root_path / b.file_name()
    _write_bytes(path, cut, BAD_MTIME)
    out.append(_bad_file(path, "unreadable", ds, len(cut)))

    ds = fresh("unreadable-pixels")
    data = _dataset_bytes(ds)
    value_at, length = element_value_span(data, _PIXEL_DATA_TAG)
    cut = data[: value_at + length // 2]
    path = root_path / b.file_name()
    _write_bytes(path, cut, BAD_MTIME)
    out.append(_bad_file(path, "unreadable", ds, len(cut)))

    garbage = _PREAMBLE + rng.randbytes(2048)
    path = root_path / b.file_name()
    _write_bytes(path, garbage, BAD_MTIME)
    out.append(_bad_file(path, "unreadable", None, len(garbage)))

    # missing_tag: each required tag missing once, and an empty PatientID
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                    "SOPClassUID", "Modality"):
        ds = fresh(f"missing-{keyword}")
        del ds[keyword]
        out.append(write_ds("missing_tag", ds))
    ds = fresh("empty-PatientID")
    ds.PatientID = ""
    out.append(write_ds("missing_tag", ds))

    # invalid_uid
    too_long = UID_PREFIX + "".join(str(rng.randint(1, 9)) for _ in range(80 - len(UID_PREFIX)))
    for label, keyword, value in (
        ("long-study", "StudyInstanceUID", too_long),
        ("letters-series", "SeriesInstanceUID", "1.2.3.abc"),
        ("leading-zero-sop", "SOPInstanceUID", "1.2.03.4"),
        ("empty-component-series", "SeriesInstanceUID", "1.2..4"),
        ("hostile-study", "StudyInstanceUID", "../../x"),
    ):
        ds = fresh(f"invalid-{label}")
        _force(ds, keyword, value)
        if keyword == "SOPInstanceUID":
            _force(ds.file_meta, "MediaStorageSOPInstanceUID", value)
        out.append(write_ds("invalid_uid", ds))

    # invalid_date
    for label, value in (("feb31", "20230231"), ("garbled", "2023-01-05x")):
        ds = fresh(f"invalid-date-{label}")
        _force(ds, "StudyDate", value)
        out.append(write_ds("invalid_date", ds))

    # referring to good files of the reference archive
    good = sorted(reference.good(), key=lambda f: (f.size_bytes, f.path))
    if not good:
        log.warning("synth bad files: the reference has no good files; skipping "
                    "patient_mismatch, sop_conflict and duplicate")
    else:
        pool = good[: max(3, min(len(good), 20))]
        picks = rng.sample(pool, 3) if len(pool) >= 3 else [pool[i % len(pool)] for i in range(3)]

        # patient_mismatch: a new instance in an existing study, under another patient
        src = picks[0]
        with _lenient_pydicom():
            ds = pydicom.dcmread(src.path)
        new_uid = b.uid("mismatch-sop", src.sop_instance_uid)
        ds.SOPInstanceUID = new_uid
        ds.file_meta.MediaStorageSOPInstanceUID = new_uid
        ds.PatientID = b.unique_id("SYX", 7)
        ds.PatientName = "SYNTH^MALLORY"
        ds.InstanceNumber = 9001
        out.append(write_ds("patient_mismatch", ds, os.stat(src.path).st_mtime + LATER_BY))

        # sop_conflict: same SOP Instance UID, different instance number and pixel bytes
        src = picks[1]
        with _lenient_pydicom():
            ds = pydicom.dcmread(src.path)
        ds.InstanceNumber = int(ds.InstanceNumber or 0) + 1000
        pixels = np.frombuffer(ds.PixelData, dtype=np.uint8).copy()
        pixels[0::2] ^= 0x5A  # low bytes only: values stay within BitsStored
        ds.PixelData = pixels.tobytes()
        out.append(write_ds("sop_conflict", ds, os.stat(src.path).st_mtime + LATER_BY + 1))

        # duplicate: byte-identical copy
        src = picks[2]
        out.append(_copy_duplicate(src, root_path / b.file_name(), 2))

    # unsafe_path: a link inside root to a real DICOM file outside it
    if outside is not None:
        outside_path = Path(outside).absolute()
        outside_path.mkdir(parents=True, exist_ok=True)
        ds = fresh("unsafe-path")
        data = _dataset_bytes(ds)
        target = outside_path / b.file_name()
        _write_bytes(target, data, BAD_MTIME)
        link = root_path / b.file_name()
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)
        with contextlib.suppress(NotImplementedError, OSError):
            os.utime(link, (BAD_MTIME, BAD_MTIME), follow_symlinks=False)
        out.append(_bad_file(link, "unsafe_path", ds, len(data)))

    log.info("synth bad files: %d files in %s", len(out), root_path)
    return out


# --------------------------------------------------------------------------------------------
# Benchmark sets
# --------------------------------------------------------------------------------------------


def _bulk(root: str | Path, n: int, *, seed: int, namespace: str, modality: str,
          per_series: int,
          matrix: Callable[[_Builder, _Study, int, str], tuple[int, int]]) -> SynthResult:
    """``n`` good files in series of ``per_series``, grouped into a few studies and patients.

    ``matrix(builder, study, number, description)`` returns the series' (rows, columns).
    """
    if n < 0 or per_series < 1:
        raise ValueError("n must be >= 0 and per_series >= 1")
    root_path = Path(root).absolute()
    root_path.mkdir(parents=True, exist_ok=True)
    b = _Builder(root_path, seed, namespace, total=n)
    rng = b.rng
    spec = _MODALITIES[modality]
    days, cum = _day_sampler(date(2021, 1, 1), date(2025, 12, 31), 0.08)
    remaining = n
    patient: _Patient | None = None
    studies_left = 0
    s_index = 0
    while remaining > 0:
        if patient is None or studies_left == 0:
            patient = b.patient(birth_before=date(2021, 1, 1))
            studies_left = rng.randint(1, 3)
            s_index = 0
        study = b.study(patient, modality, rng.choices(days, cum_weights=cum)[0], s_index)
        s_index += 1
        studies_left -= 1
        for number in range(1, rng.randint(1, 4) + 1):
            if remaining <= 0:
                break
            count = min(per_series, remaining)
            description = rng.choice(spec.series_descriptions)
            rows, cols = matrix(b, study, number, description)
            b.write_series(study, number=number, description=description, instances=count,
                           rows=rows, columns=cols, implicit=False)
            remaining -= count
    result = SynthResult(root=root_path, files=b.files)
    log.info("synth %s: %s", namespace, json.dumps(result.summary()))
    return result


def generate_ct_slices(
    root: str | Path,
    n: int,
    *,
    seed: int = 0,
    rows: int = 512,
    columns: int = 512,
    per_series: int = 250,
) -> SynthResult:
    """``n`` CT slices of ``rows`` x ``columns`` 16-bit (512x512: about 0.5 MB each)."""
    return _bulk(root, n, seed=seed, namespace="ct", modality="CT", per_series=per_series,
                 matrix=lambda b, study, number, description: (rows, columns))


def generate_small_files(
    root: str | Path,
    n: int,
    *,
    seed: int = 0,
    target_size: int = 12_000,
    per_series: int = 100,
) -> SynthResult:
    """``n`` small MR images of about ``target_size`` bytes each (header plus a small matrix)."""

    def matrix(b: _Builder, study: _Study, number: int, description: str) -> tuple[int, int]:
        # The header size barely depends on Rows/Columns (fixed-size US values; only the
        # Pixel Spacing text may change by a few bytes): measure it on a 64x64 probe.
        writer, dyn = b.series_writer(study, number=number, description=description, rows=64,
                                      columns=64, implicit=False)
        values = dyn(0)
        values[_T_SOP_INSTANCE[0]] = b.uid("sop", "probe").encode("ascii")
        values[_T_INSTANCE_NUMBER[0]] = str(min(per_series, 99)).encode("ascii")
        values[_T_CONTENT_TIME[0]] = b"120000"
        values[_PIXEL_DATA_TAG] = b""
        header = sum(len(p) for p in writer.encode(values))
        pixel_bytes = max(2, target_size - header)
        cols = max(1, int(math.sqrt(pixel_bytes / 2)))
        rows_ = max(1, round(pixel_bytes / (2 * cols)))
        return rows_, cols

    return _bulk(root, n, seed=seed, namespace="small", modality="MR", per_series=per_series,
                 matrix=matrix)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pacs synth", description="Write synthetic DICOM archives (deterministic per seed)."
    )
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("archive", help="a realistic hospital archive")
    a.add_argument("--out", required=True, type=Path, help="root directory to write")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--patients", type=int, default=50)
    a.add_argument("--start", type=date.fromisoformat, default=date(2021, 1, 1))
    a.add_argument("--end", type=date.fromisoformat, default=date(2025, 12, 31))
    a.add_argument("--modalities", default=",".join(DEFAULT_MODALITIES),
                   help="comma-separated (default %(default)s)")
    a.add_argument("--size-scale", type=float, default=1.0)
    a.add_argument("--count-scale", type=float, default=1.0)
    a.add_argument("--growth", type=float, default=0.08)
    a.add_argument("--bad", action="store_true", help="also write the bad set")
    a.add_argument("--duplicates", type=int, default=0, metavar="N")

    c = sub.add_parser("ct", help="N CT slices (about 0.5 MB each)")
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--n", required=True, type=int)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--rows", type=int, default=512)
    c.add_argument("--columns", type=int, default=512)
    c.add_argument("--per-series", type=int, default=250)

    s = sub.add_parser("small", help="N small files (about 12 KB each)")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--n", required=True, type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--target-size", type=int, default=12_000)
    s.add_argument("--per-series", type=int, default=100)

    for sp in (a, c, s):
        sp.add_argument("--manifest", type=Path, default=None, help="write a JSON manifest here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``archive``, ``ct`` or ``small``; prints a one-line JSON summary."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.monotonic()
    try:
        if args.command == "archive":
            result = generate_archive(
                args.out, seed=args.seed, patients=args.patients, start=args.start, end=args.end,
                modalities=[m.strip() for m in args.modalities.split(",") if m.strip()],
                size_scale=args.size_scale, count_scale=args.count_scale, growth=args.growth,
                bad=args.bad, duplicates=args.duplicates,
            )
        elif args.command == "ct":
            result = generate_ct_slices(args.out, args.n, seed=args.seed, rows=args.rows,
                                        columns=args.columns, per_series=args.per_series)
        else:
            result = generate_small_files(args.out, args.n, seed=args.seed,
                                          target_size=args.target_size,
                                          per_series=args.per_series)
    except ValueError as exc:
        print(f"pacs synth: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - t0
    if args.manifest is not None:
        result.write_manifest(args.manifest)
    files = len(result.files)
    print(json.dumps({
        "command": args.command,
        "root": str(result.root),
        "files": files,
        "counts": result.counts(),
        **result.summary(),
        "seconds": round(elapsed, 3),
        "files_per_s": round(files / elapsed, 1) if elapsed > 0 else None,
        "manifest": str(args.manifest) if args.manifest is not None else None,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
