"""Acquisition parameters per modality, read from the already-parsed header (no extra read).

Owns the departmental acquisition tables' columns (:data:`ACQUISITION_TABLES`: ``ct_acquisition``,
``mr_acquisition``, ``dx_exposure`` for CR/DX/MG, ``us_acquisition``) and :func:`acquisition_values`,
which the header reader calls on the dataset it has already parsed: one small JSON text per
image of those modalities (None for any other file, and for an image that carries none of its
table's elements). The text travels in the staged row (column ``acquisition``) to the merge,
which inserts the row of its table from it (``include/sql/merge_departmental.sql``). A test holds
the DDL (``schema_departmental.sql``) and the merge to the fields listed here.

**One row per image** (keyed by ``sop_instance_uid``, with the series and study UIDs for joins),
never per series: the values are per image in the header and do vary within a series (tube
current modulation changes mA, mAs and CTDIvol slice by slice; a multi-echo or inversion-recovery
MR series has several echo or inversion times), and a per-series row would need a rule for
images that disagree and an update of rows the archive already holds whenever a series grows
across merges. Analysts aggregate per series in SQL (``include/sql/views.sql``).

**Malformed values are left empty and counted, never a reason to quarantine.** A value that is
not a number where one is expected (``KVP`` ``"abc"``), not finite, negative (every quantity
here is non-negative), a sequence or bulk data where a value is expected, or longer than the
reader reads (deferred) becomes None, and its keyword is listed in the row's ``invalid``
(``invalid_values`` in the catalogue); the image itself is catalogued as usual. Values are
decoded from pydicom's raw elements (text VRs as text, binary numbers in the dataset's byte
order, whatever VR the element arrived with), the first of several values for a number. Only
keywords are ever reported, never values.

Columns are the DICOM keywords in snake_case, in the units DICOM defines for them: KVP kV,
XRayTubeCurrent mA, Exposure mAs, CTDIvol mGy, SliceThickness mm, MagneticFieldStrength T,
RepetitionTime/EchoTime/InversionTime ms, FlipAngle degrees, ExposureInuAs µAs,
DistanceSourceToDetector and BodyPartThickness mm, EntranceDoseInmGy mGy, OrganDose dGy,
TransducerFrequency kHz. For ultrasound, the Sequence of Ultrasound Regions gives one entry per
region in ``physical_units_x_direction`` / ``physical_units_y_direction`` (unit names, e.g.
``cm``, ``seconds``, ``cm/sec``) and the first region's TransducerFrequency where present.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacs.dicom.values import BINARY_VRS, BULK_VRS, TEXT_ERRORS, Unusable, as_text, decoded_text
from pacs.errors import PacsError

Kind = Literal["number", "text", "integer", "text_list"]


class Field(NamedTuple):
    """One column of a departmental acquisition table."""

    keyword: str   # the DICOM keyword (for region-derived columns: the region item's keyword)
    column: str    # the catalogue column (snake_case of the keyword)
    kind: Kind     # number: DOUBLE; text: VARCHAR; integer: INTEGER; text_list: VARCHAR[]


def _f(keyword: str, column: str, kind: Kind = "number") -> Field:
    return Field(keyword, column, kind)


_KVP = _f("KVP", "kvp")
ACQUISITION_TABLES: dict[str, tuple[Field, ...]] = {
    "ct_acquisition": (
        _KVP, _f("XRayTubeCurrent", "x_ray_tube_current"), _f("Exposure", "exposure"), _f("CTDIvol", "ctdivol"),
        _f("SliceThickness", "slice_thickness"), _f("ConvolutionKernel", "convolution_kernel", "text"),
        _f("ProtocolName", "protocol_name", "text"),
    ),
    "mr_acquisition": (
        _f("MagneticFieldStrength", "magnetic_field_strength"), _f("ScanningSequence", "scanning_sequence", "text"),
        _f("SequenceVariant", "sequence_variant", "text"), _f("RepetitionTime", "repetition_time"),
        _f("EchoTime", "echo_time"), _f("InversionTime", "inversion_time"), _f("FlipAngle", "flip_angle"),
    ),
    "dx_exposure": (
        _KVP, _f("ExposureInuAs", "exposure_in_uas"), _f("DistanceSourceToDetector", "distance_source_to_detector"),
        _f("BodyPartThickness", "body_part_thickness"), _f("EntranceDoseInmGy", "entrance_dose_in_mgy"),
        _f("OrganDose", "organ_dose"),
    ),
    "us_acquisition": (
        _f("TransducerType", "transducer_type", "text"),
        _f("SequenceOfUltrasoundRegions", "region_count", "integer"),
        _f("PhysicalUnitsXDirection", "physical_units_x_direction", "text_list"),
        _f("PhysicalUnitsYDirection", "physical_units_y_direction", "text_list"),
        _f("TransducerFrequency", "transducer_frequency"),
    ),
}
"""Departmental table -> its value columns (each table also has sop_instance_uid, series_instance_uid,
study_instance_uid, invalid_values, created_at and updated_at)."""

TABLE_FOR_MODALITY: dict[str, str] = {
    "CT": "ct_acquisition", "MR": "mr_acquisition", "CR": "dx_exposure", "DX": "dx_exposure", "MG": "dx_exposure",
    "US": "us_acquisition",
}

PHYSICAL_UNITS: dict[int, str] = {
    0x0000: "none", 0x0001: "percent", 0x0002: "dB", 0x0003: "cm", 0x0004: "seconds", 0x0005: "hertz",
    0x0006: "dB/seconds", 0x0007: "cm/sec", 0x0008: "cm2", 0x0009: "cm2/sec", 0x000A: "cm3", 0x000B: "cm3/sec",
    0x000C: "degrees",
}
"""Physical Units X/Y Direction (0018,6024)/(0018,6026) codes, by their DICOM names."""

_REGIONS_KEYWORD = "SequenceOfUltrasoundRegions"
_REGION_FIELDS = frozenset({"PhysicalUnitsXDirection", "PhysicalUnitsYDirection", "TransducerFrequency"})
_TAGS: dict[str, int] = {f.keyword: int(tag_for_keyword(f.keyword)) for fields in ACQUISITION_TABLES.values()
                         for f in fields}
UNDEFINED_LENGTH = 0xFFFFFFFF


class _Malformed(PacsError):
    """A value its column cannot take (left empty and counted). Internal to this module, never raised
    out of it; a PacsError like every error of the package."""


def _first_number(text: str) -> float | None:
    first = text.split("\\", 1)[0].strip(" \x00\t\r\n")
    if not first:
        return None
    try:
        return float(first)
    except ValueError:
        raise _Malformed from None


def _raw_value(elem: RawDataElement, kind: Kind, encodings: Callable[[], list[str]]) -> Any:
    """A raw element's value as ``kind`` (number or text); raises :class:`_Malformed`."""
    raw: bytes | None = elem.value
    if raw is None:  # deferred (longer than the reader reads): no such value is that long
        raise _Malformed
    if elem.length == UNDEFINED_LENGTH:
        raise _Malformed
    vr = elem.VR or "UN"
    if vr == "UN":
        vr = dictionary_VR(elem.tag)  # an implicit or UN element is encoded as its dictionary VR
    if vr in BINARY_VRS and vr != "AT":
        try:
            numbers = _unpack(raw, vr, elem.is_little_endian)
        except Unusable:
            raise _Malformed from None
        if kind == "number":
            return float(numbers[0]) if numbers else None
        return as_text("\\".join(str(n) for n in numbers))
    if vr in BULK_VRS or vr in ("SQ", "AT"):
        raise _Malformed
    if kind == "number" and vr in ("DS", "IS"):  # ASCII digits: no character set to apply
        try:
            return _first_number(raw.decode("ascii"))
        except UnicodeDecodeError:
            raise _Malformed from None
    try:
        text = decoded_text(raw, "LO" if vr in ("LO", "SH", "ST", "LT", "UT", "UC") else vr, encodings)
    except TEXT_ERRORS:
        text = as_text(raw.decode("latin-1", "replace"))
    if text is None:
        return None
    return _first_number(text) if kind == "number" else text


def _unpack(raw: bytes, vr: str, little_endian: bool) -> list[Any]:
    code, size = BINARY_VRS[vr]
    if len(raw) % size:
        raise Unusable("not a whole number of values")
    return list(struct.unpack(("<" if little_endian else ">") + code * (len(raw) // size), raw))


def _converted_value(value: Any, kind: Kind) -> Any:
    """A value pydicom already converted (e.g. inside a sequence it read), as ``kind``."""
    if value is None or value == "":
        return None
    if isinstance(value, Dataset | Sequence):
        raise _Malformed
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        if kind == "text":
            return as_text("\\".join("" if v is None else str(v) for v in value))
        if not len(value):
            return None
        value = value[0]
    if kind == "text":
        return as_text(str(value))
    if isinstance(value, bytes):
        raise _Malformed
    if isinstance(value, str):
        return _first_number(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Malformed from None


def _element(ds: Dataset, keyword: str, kind: Kind, encodings: Callable[[], list[str]]) -> Any:
    """The value of ``keyword`` in ``ds`` as ``kind`` (None when absent or empty); raises
    :class:`_Malformed` for a value the column cannot take."""
    elem = ds._dict.get(_TAGS[keyword])
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        value = _raw_value(elem, kind, encodings)
    else:
        value = _converted_value(elem.value, kind)
    if kind == "number" and value is not None and (not math.isfinite(value) or value < 0):
        raise _Malformed
    return value


def _units(regions: list[Dataset], keyword: str, encodings: Callable[[], list[str]],
           invalid: list[str]) -> list[str | None]:
    """Each region's physical units along one direction, by name (None: absent or unknown)."""
    names: list[str | None] = []
    for region in regions:
        try:
            code = _element(region, keyword, "number", encodings)
        except _Malformed:
            code = -1.0
        name = PHYSICAL_UNITS.get(int(code)) if code is not None and code.is_integer() else None
        if code is not None and name is None and keyword not in invalid:
            invalid.append(keyword)
        names.append(name)
    return names


def _frequency(regions: list[Dataset], encodings: Callable[[], list[str]], invalid: list[str]) -> float | None:
    """The first region's transducer frequency that is present (kHz)."""
    for region in regions:
        try:
            frequency = _element(region, "TransducerFrequency", "number", encodings)
        except _Malformed:
            if "TransducerFrequency" not in invalid:
                invalid.append("TransducerFrequency")
            continue
        if frequency is not None:
            return frequency
    return None


def _regions(ds: Dataset, encodings: Callable[[], list[str]], out: dict[str, Any], invalid: list[str]) -> None:
    """The Sequence of Ultrasound Regions: region count, physical units per region, the first
    region's transducer frequency."""
    if _TAGS[_REGIONS_KEYWORD] not in ds._dict:
        return
    try:
        regions = list(ds.get(_REGIONS_KEYWORD) or [])  # pydicom reads the sequence (deferred or not)
    except OSError:
        raise  # reading a deferred value failed: the file's fault, not a malformed value
    except Exception:  # noqa: BLE001 - a corrupt sequence is a malformed value, not a bad file
        invalid.append(_REGIONS_KEYWORD)
        return
    if not regions:
        return
    out["region_count"] = len(regions)
    for keyword, column in (("PhysicalUnitsXDirection", "physical_units_x_direction"),
                            ("PhysicalUnitsYDirection", "physical_units_y_direction")):
        out[column] = _units(regions, keyword, encodings, invalid)  # one entry per region, None: unknown
    frequency = _frequency(regions, encodings, invalid)
    if frequency is not None:
        out["transducer_frequency"] = frequency


def acquisition_values(ds: Dataset, modality: str | None, encodings: Callable[[], list[str]]) -> str | None:
    """The departmental acquisition row of an image, as JSON ``{"table": <table>, <column>: value,
    ..., "invalid": [keyword, ...]}`` (None-valued columns and an empty ``invalid`` left out);
    None for a modality without a table, or when the image carries none of its table's elements.

    ``ds`` is the dataset the header reader parsed; ``encodings`` gives its character sets (for
    the text values). Never raises for a value: a malformed one is left out and its keyword listed.
    """
    table = TABLE_FOR_MODALITY.get(modality or "")
    if table is None:
        return None
    encodings = functools.cache(encodings)  # the character sets, worked out once per image if at all
    out: dict[str, Any] = {"table": table}
    invalid: list[str] = []
    for field in ACQUISITION_TABLES[table]:
        if field.keyword == _REGIONS_KEYWORD:
            _regions(ds, encodings, out, invalid)
            continue
        if field.keyword in _REGION_FIELDS:
            continue
        try:
            value = _element(ds, field.keyword, field.kind, encodings)
        except Exception:  # noqa: BLE001 - _Malformed, or whatever else is wrong with one value: the image is catalogued
            invalid.append(field.keyword)
            continue
        if value is not None:
            out[field.column] = value
    if invalid:
        out["invalid"] = invalid
    if len(out) == 1:
        return None
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)
