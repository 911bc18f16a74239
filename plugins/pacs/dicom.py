"""DICOM header reading with pydicom: the header only, never the pixel data.

:func:`read_header` parses a file up to its Pixel Data element and checks, from that element's
declared length, that the pixel data is really there (a truncated file is ``unreadable``).
It accepts Part-10 files and files without file meta information, any transfer syntax pydicom
can read (explicit/implicit VR, little/big endian, deflated, encapsulated/compressed).
On object storage the file is read through small blocks: a header costs a few KB, plus an
8-byte ranged read at the end for encapsulated pixel data.

Errors are :class:`HeaderError` subclasses carrying the archive's reason code.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from dataclasses import dataclass
from typing import IO, Any

from pydicom.charset import convert_encodings, decode_bytes, default_encoding
from pydicom.datadict import _dictionary_vr_fast, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from pydicom.valuerep import TEXT_VR_DELIMS, PersonName

log = logging.getLogger(__name__)

# Quiet pydicom's per-file warnings about odd-but-readable values; validation reports what matters.
logging.getLogger("pydicom").setLevel(logging.ERROR)

PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
ITEM_TAG = 0xFFFEE000
SEQ_DELIMITER_TAG = 0xFFFEE0DD
DEFLATED_TS = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
# A dataset without a preamble must start with one of these groups to be taken for DICOM.
_RAW_START_GROUPS = frozenset({0x0002, 0x0004, 0x0008, 0x0010})

# keyword -> (column, kind); kind is "str", "pn", "int" or "raw" (validated later).
HEADER_FIELDS: dict[str, tuple[str, str]] = {
    "PatientID": ("patient_id", "str"),
    "IssuerOfPatientID": ("issuer_of_patient_id", "str"),
    "PatientName": ("patient_name", "pn"),
    "PatientBirthDate": ("patient_birth_date", "raw"),
    "PatientSex": ("patient_sex", "str"),
    "PatientAge": ("patient_age", "str"),
    "StudyInstanceUID": ("study_instance_uid", "raw"),
    "StudyDate": ("study_date", "raw"),
    "StudyTime": ("study_time", "str"),
    "AccessionNumber": ("accession_number", "str"),
    "StudyID": ("study_id", "str"),
    "StudyDescription": ("study_description", "str"),
    "ReferringPhysicianName": ("referring_physician_name", "pn"),
    "InstitutionName": ("institution_name", "str"),
    "SeriesInstanceUID": ("series_instance_uid", "raw"),
    "Modality": ("modality", "str"),
    "SeriesNumber": ("series_number", "int"),
    "SeriesDescription": ("series_description", "str"),
    "SeriesDate": ("series_date", "raw"),
    "BodyPartExamined": ("body_part_examined", "str"),
    "Manufacturer": ("manufacturer", "str"),
    "ManufacturerModelName": ("manufacturer_model_name", "str"),
    "StationName": ("station_name", "str"),
    "SOPInstanceUID": ("sop_instance_uid", "raw"),
    "SOPClassUID": ("sop_class_uid", "raw"),
    "InstanceNumber": ("instance_number", "int"),
    "ContentDate": ("content_date", "raw"),
    "Rows": ("rows", "int"),
    "Columns": ("columns", "int"),
    "NumberOfFrames": ("number_of_frames", "int"),
    "BitsAllocated": ("bits_allocated", "int"),
}
HEADER_COLUMNS: tuple[str, ...] = (*(c for c, _ in HEADER_FIELDS.values()), "transfer_syntax_uid", "has_pixel_data")


class HeaderError(Exception):
    """A file that cannot be catalogued from its header; ``reason`` is the quarantine code."""

    reason = "unreadable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotDicomError(HeaderError):
    """The file is not DICOM at all."""

    reason = "not_dicom"


class UnreadableError(HeaderError):
    """The file is DICOM but truncated or corrupt."""

    reason = "unreadable"


@dataclass(frozen=True, slots=True)
class _PixelStop:
    tag: int
    vr: str | None
    length: int


def _looks_like_raw_dataset(head: bytes) -> bool:
    """Whether a file without preamble starts like a DICOM dataset (little or big endian)."""
    if len(head) < 8:
        return False
    le_group = struct.unpack("<H", head[:2])[0]
    be_group = struct.unpack(">H", head[:2])[0]
    return le_group in _RAW_START_GROUPS or be_group in _RAW_START_GROUPS


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    text = str(value).strip().strip("\x00").strip()
    return text or None


def _as_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if type(value).__name__ == "MultiValue" or isinstance(value, list):
        value = value[0] if len(value) else None
        if value is None:
            return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _slow_value(ds: Dataset, keyword: str, kind: str) -> Any:
    """pydicom's own conversion (used when the fast path does not apply)."""
    try:
        elem = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed optional value must not reject the file
        raw = ds.get_item(keyword)  # identifiers are read raw so that validation can name the problem
        elem = raw.value if raw is not None else None
    return _as_int(elem) if kind == "int" else _text(elem)


_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_FIELD_TAGS: tuple[tuple[int, str, str, str], ...] = tuple(
    (int(tag_for_keyword(kw)), kw, col, kind) for kw, (col, kind) in HEADER_FIELDS.items()
)


def _encodings(ds: Dataset) -> list[str]:
    elem = ds._dict.get(0x00080005)
    if elem is None:
        return [default_encoding]
    value = elem.value
    if isinstance(value, bytes):
        value = [v.strip() for v in value.decode("ascii", "replace").split("\\")]
    try:
        return convert_encodings(value)
    except Exception:  # noqa: BLE001 - an unknown charset falls back to the default
        return [default_encoding]


def _extract(ds: Dataset) -> dict[str, Any]:
    """The catalogue's header columns.

    Values are decoded straight from pydicom's raw elements (ASCII for UIDs, codes, dates and
    numbers; the dataset's Specific Character Set for names and descriptions), which is several
    times faster than pydicom's general element conversion; anything unusual falls back to it.
    """
    row: dict[str, Any] = {}
    encodings: list[str] | None = None
    elements = ds._dict
    for tag, keyword, column, kind in _FIELD_TAGS:
        elem = elements.get(tag)
        if elem is None:
            row[column] = None
            continue
        if not isinstance(elem, RawDataElement) or elem.value is None or elem.length == 0xFFFFFFFF:
            row[column] = _slow_value(ds, keyword, kind) if elem.value is not None or not isinstance(
                elem, RawDataElement) else None
            continue
        raw: bytes = elem.value
        vr = elem.VR or _dictionary_vr_fast(tag)
        try:
            if vr == "US":
                if len(raw) < 2:
                    value: Any = None
                else:
                    value = struct.unpack("<H" if elem.is_little_endian else ">H", raw[:2])[0]
            elif vr in ("IS", "DS"):
                text = raw.decode("ascii").strip(" \x00").split("\\")[0].strip()
                value = int(float(text)) if text else None
            elif vr == "PN":
                if encodings is None:
                    encodings = _encodings(ds)
                value = _text(str(PersonName(raw, encodings)))
            elif vr in _TEXT_VRS:
                if encodings is None:
                    encodings = _encodings(ds)
                value = _text(decode_bytes(raw, encodings, TEXT_VR_DELIMS))
            else:  # UI, DA, TM, CS, AS: ASCII by definition
                value = _text(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError, OverflowError, LookupError):
            value = _slow_value(ds, keyword, kind)
        if kind == "int" and not isinstance(value, int):
            value = _as_int(value)
        row[column] = value
    return row


def _walk_items(fp: IO[bytes], start: int, value_start: int, size: int) -> None:
    """Seek through encapsulated pixel data items to its sequence delimiter without reading them."""
    pos = value_start
    while pos + 8 <= size:
        fp.seek(start + pos)
        tag_group, tag_elem, length = struct.unpack("<HHL", fp.read(8))
        tag = tag_group << 16 | tag_elem
        if tag == SEQ_DELIMITER_TAG:
            return
        if tag != ITEM_TAG or length == 0xFFFFFFFF:
            raise UnreadableError(f"encapsulated pixel data is corrupt at byte {pos}")
        pos += 8 + length
    raise UnreadableError("encapsulated pixel data ends without its sequence delimiter: the file is truncated")


def _check_complete(ds: Dataset, stop: _PixelStop | None, element_start: int, size: int,
                    fp: IO[bytes], start: int) -> None:
    """Raise if the pixel data or the last header element runs past the end of the file."""
    if stop is not None:
        header_len = 12 if (not ds.original_encoding[0] and stop.vr in _LONG_VRS) else 8
        value_start = element_start + header_len
        if stop.length == 0xFFFFFFFF:
            _walk_items(fp, start, value_start, size)
        elif value_start + stop.length > size:
            raise UnreadableError(
                f"pixel data declares {stop.length} bytes but only {max(size - value_start, 0)} remain: "
                "the file is truncated"
            )
        return
    # No pixel data: the last element read must be complete.
    for elem in reversed(list(ds._dict.values())):
        if isinstance(elem, RawDataElement):
            if elem.length != 0xFFFFFFFF and elem.value_tell + elem.length > size:
                raise UnreadableError(f"element {BaseTag(elem.tag)} runs past the end of the file: truncated")
            value = elem.value
            if value is not None and elem.length != 0xFFFFFFFF and len(value) < elem.length:
                raise UnreadableError(f"element {BaseTag(elem.tag)} is cut short: the file is truncated")
        break


def parse_header(fp: IO[bytes], size: int) -> dict[str, Any]:
    """Parse the header of an open binary file of ``size`` bytes.

    Returns the catalogue's header columns (UIDs and dates as raw strings; validation checks
    them).
    """
    if size == 0:
        raise NotDicomError("empty file")
    start = fp.tell()
    head = fp.read(132)
    fp.seek(start)
    has_preamble = len(head) >= 132 and head[128:132] == b"DICM"
    if not has_preamble and not _looks_like_raw_dataset(head):
        raise NotDicomError("no DICOM preamble and no recognisable dataset at the start of the file")

    stops: list[_PixelStop] = []

    def stop_when(tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag in PIXEL_TAGS:
            stops.append(_PixelStop(int(tag), vr, length))
            return True
        return False

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_partial(fp, stop_when=stop_when, defer_size=1024, force=not has_preamble)
            element_start = fp.tell() - start
            if ds.original_encoding[0] is None:
                raise UnreadableError("transfer syntax could not be determined")
            row = _extract(ds)
    except HeaderError:
        raise
    except InvalidDicomError as exc:
        if has_preamble:
            raise UnreadableError(f"corrupt DICOM: {exc}") from exc
        raise NotDicomError(f"not a DICOM dataset: {exc}") from exc
    except Exception as exc:
        raise UnreadableError(f"corrupt DICOM ({type(exc).__name__}): {exc}") from exc
    if not has_preamble and len(ds._dict) < 2:
        raise NotDicomError("forced parse found no DICOM elements")
    meta = getattr(ds, "file_meta", None)
    ts = None
    if meta is not None:
        ts = _text(meta.get("TransferSyntaxUID"))
    if ts not in DEFLATED_TS:  # a deflated body is checked by zlib while inflating
        _check_complete(ds, stops[0] if stops else None, element_start, size, fp, start)
    if ts is None:
        implicit, little = ds.original_encoding
        ts = "1.2.840.10008.1.2" if implicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
    row["transfer_syntax_uid"] = ts
    row["has_pixel_data"] = bool(stops)
    return row


def read_header_bytes(data: bytes | memoryview) -> dict[str, Any]:
    """Parse the header of a file already in memory."""
    return parse_header(io.BytesIO(data), len(data))


def read_header(fs: Any, path: str, size: int | None = None, block_size: int = 64 * 1024) -> dict[str, Any]:
    """Parse the header of ``path`` on an fsspec filesystem with small-block reads only."""
    if size is None:
        size = int(fs.info(path)["size"])
    if size == 0:
        raise NotDicomError("empty file")

    with fs.open(path, "rb", block_size=block_size, cache_type="readahead") as f:
        return parse_header(f, size)

