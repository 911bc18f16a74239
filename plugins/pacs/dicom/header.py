"""DICOM header reading with pydicom: the header only, never the pixel data.

:func:`read_header` parses a file up to its Pixel Data element and checks, from that element's
declared length, that the pixel data is really there (a truncated file is ``unreadable``).
It accepts Part-10 files and files without file meta information, any transfer syntax pydicom
can read (explicit/implicit VR, little/big endian, deflated, encapsulated/compressed).
On object storage the file is read through small blocks: a header costs a few KB, plus an
8-byte ranged read at the end for encapsulated pixel data.

Errors are :class:`HeaderError` subclasses carrying the archive's reason code.

Rules for values (``invalid_value``)
------------------------------------
Every column of :data:`HEADER_FIELDS` comes out as exactly the Python type its kind requires:
``str`` or ``None`` for kinds ``str``, ``pn`` and ``raw``; ``int`` or ``None`` for ``int``, and
an ``int`` always fits a signed 32-bit integer. An element that arrives with a VR other than
its dictionary VR is coerced when its value has a sensible form for the column:

* to text: text VRs are decoded as text (a DS ``12.5`` stays ``"12.5"``); binary numbers (US,
  SS, UL, SL, SV, UV, FL, FD) are decoded in the dataset's byte order and written in decimal
  (a US 7 becomes ``"7"``, an FD 12.5 ``"12.5"``), tags (AT) as ``(gggg,eeee)``, several
  values joined with ``\\``; UN is decoded as the element's dictionary VR;
* to an integer: the first value of a binary number, or of a text value written as an
  integer (``"12"``, ``" +12 "``, ``"12.0"``, ``"1e1"``).

A value that cannot be coerced is ``invalid_value`` (:class:`InvalidValueError`), with a
detail naming the tag, the keyword, the VR and what is wrong, e.g.
``(0028,0010) Rows: value 'abc' (VR CS) is not an integer``. That is: an integer outside
-2**31..2**31-1 (any int column); a sequence, bulk binary data (OB, OW, OD, OF, OL, OV) or an
undefined-length value for any column; binary numbers whose length is not a whole number of
values; for Rows, Columns and BitsAllocated, any value that is not an integer. The one
leniency: for the optional SeriesNumber, InstanceNumber and NumberOfFrames, a value that is
not an integer at all (``"1A"``, ``"abc"``, ``"12.5"``, a tag) is catalogued as ``None``, as
if absent (the image is still usable; pydicom's own reading does the same). The detail never
shows the value of PatientName, PatientID, IssuerOfPatientID, PatientBirthDate,
AccessionNumber or of any PN element ("value with VR US is not text" instead).
A value longer than the parser's deferral size is not read and is catalogued as ``None``.

Rules for structure (``unreadable``)
------------------------------------
* An element of the top-level dataset of an explicit-VR file whose two VR bytes are not a
  DICOM VR (``pydicom.valuerep.VR``) is ``unreadable``: "element (0008,0080) has VR 'ZZ',
  which is not a DICOM VR". pydicom 3.0.2's ``read_partial`` does not raise on them: two
  capital letters (``ZZ``) are read as an unknown VR with a 2-byte length, anything else
  (``\\x00\\x01``, ``zz``) as a switch to implicit VR, taking the VR and 2-byte length for a
  4-byte length, which usually runs past the end of the file and silently ends the dataset.
  Either way the element's length cannot be trusted. The file meta information is checked
  the same way; its Transfer Syntax UID, which pydicom has converted by then, must be a UID
  (digits and dots, at most 64 characters), else the file is ``unreadable`` (the value is not
  shown: a corrupt meta element can swallow the dataset, patient data included). Sequence
  contents are left to pydicom, which tolerates writers that switch to implicit VR inside
  sequences.
* With a Pixel Data stop, its declared length (or its fragments' sequence delimiter) must fit
  in the file. Without one, the last element must end exactly at the end of the file: an
  element that runs past it, or 1-7 stray bytes after it (the file ends inside the next
  element's tag and length), mean the file is truncated.
* A dataset that has Rows and Columns (both non-zero) but no Pixel Data, Float Pixel Data or
  Double Float Pixel Data element is ``unreadable`` ("image has Rows/Columns but its pixel
  data is missing: the file is truncated"). The SOP Class alone is not used: header-only
  files of image storage classes without Rows/Columns (e.g. pydicom's TINY_ALPHA set) are
  catalogued.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import IO, Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import _dictionary_vr_fast, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag

from pacs.dicom.acquisition import acquisition_values
from pacs.dicom.columns import HEADER_FIELDS, LENIENT_INT_COLUMNS, PHI_KEYWORDS
from pacs.dicom.dose_sr import DOSE_SR_SOP_CLASSES, dose_report_json
from pacs.dicom.rejection_note import KOS_SOP_CLASS, note_references
from pacs.dicom.values import (
    DICOM_VRS,
    TEXT_ERRORS,
    Unusable,
    as_text,
    ascii_int,
    coerce_raw,
    decoded_text,
    from_converted,
)
from pacs.errors import HeaderError, InvalidValueError, NotDicomError, UnreadableError

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
UNDEFINED_LENGTH = 0xFFFFFFFF


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


def _slow_value(ds: Dataset, keyword: str, kind: str) -> str | int | None:
    """pydicom's own conversion (used when the fast path does not apply): ``int`` or None for
    the int kind, ``str`` or None for every other kind; raises :class:`Unusable`."""
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed optional value must not reject the file
        raw = ds.get_item(keyword)  # identifiers are read raw so that validation can name the problem
        value = raw.value if raw is not None else None
    return from_converted(value, kind)


_UID_TEXT = re.compile(r"[0-9.]+")
# (tag, keyword, column, kind, dictionary VR)
_FIELD_TAGS: tuple[tuple[int, str, str, str, str], ...] = tuple(
    (int(tag_for_keyword(kw)), kw, col, kind, _dictionary_vr_fast(int(tag_for_keyword(kw))))
    for kw, (col, kind) in HEADER_FIELDS.items()
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


def _invalid(tag: int, keyword: str, vr: str | None, dict_vr: str, exc: Unusable) -> InvalidValueError:
    vr = vr or dict_vr
    where = f"{BaseTag(tag)} {keyword}"
    if exc.shown is not None and keyword not in PHI_KEYWORDS and "PN" not in (vr, dict_vr):
        return InvalidValueError(f"{where}: value {exc.shown} (VR {vr}) {exc.problem}")
    return InvalidValueError(f"{where}: value with VR {vr} {exc.problem}")


def _extract(ds: Dataset) -> dict[str, Any]:
    """The catalogue's header columns, each of exactly its kind's type (see the module rules).

    Values are decoded straight from pydicom's raw elements (ASCII for UIDs, codes, dates and
    numbers; the dataset's Specific Character Set for names and descriptions), which is several
    times faster than pydicom's general element conversion; anything unusual falls back to it
    or to :func:`coerce_raw`. Raises :class:`InvalidValueError` for a value a column cannot take.
    """
    row: dict[str, Any] = {}
    encodings: list[str] | None = None

    def get_encodings() -> list[str]:
        nonlocal encodings
        if encodings is None:
            encodings = _encodings(ds)
        return encodings

    elements = ds._dict
    for tag, keyword, column, kind, dict_vr in _FIELD_TAGS:
        elem = elements.get(tag)
        if elem is None:
            row[column] = None
            continue
        try:
            row[column] = _element_value(ds, elem, keyword, kind, dict_vr, get_encodings)
        except Unusable as exc:
            if not (exc.not_integer and column in LENIENT_INT_COLUMNS):
                raise _invalid(tag, keyword, elem.VR, dict_vr, exc) from None
            row[column] = None
    return row


def _element_value(ds: Dataset, elem: Any, keyword: str, kind: str, dict_vr: str,
                   encodings: Callable[[], list[str]]) -> str | int | None:
    """One element of a header column as the column's type; raises :class:`Unusable`."""
    if not isinstance(elem, RawDataElement):  # a sequence, or already converted
        return None if elem.value is None else _slow_value(ds, keyword, kind)
    raw: bytes | None = elem.value
    if raw is None:  # deferred: longer than the deferral size, not read
        return None
    if elem.length == UNDEFINED_LENGTH:
        raise Unusable("has an undefined length, not a value")
    vr = elem.VR or dict_vr  # implicit VR: the dictionary's
    if vr != dict_vr:
        return coerce_raw(elem, vr, dict_vr, kind, encodings)
    if kind == "int":
        return _raw_int(elem, raw, vr, encodings)
    try:
        return decoded_text(raw, vr, encodings)
    except TEXT_ERRORS:
        return _slow_value(ds, keyword, kind)


def _raw_int(elem: RawDataElement, raw: bytes, vr: str,
             encodings: Callable[[], list[str]]) -> str | int | None:
    """A raw element of an int column, with its dictionary VR, as an int (or None)."""
    if vr != "US":
        return ascii_int(raw)
    if len(raw) == 2:
        return struct.unpack("<H" if elem.is_little_endian else ">H", raw)[0]
    # empty, several values, or a broken length
    return coerce_raw(elem, vr, vr, "int", encodings)


def _walk_items(fp: IO[bytes], start: int, value_start: int, size: int) -> None:
    """Seek through encapsulated pixel data items to its sequence delimiter without reading them."""
    pos = value_start
    while pos + 8 <= size:
        fp.seek(start + pos)
        tag_group, tag_elem, length = struct.unpack("<HHL", fp.read(8))
        tag = tag_group << 16 | tag_elem
        if tag == SEQ_DELIMITER_TAG:
            return
        if tag != ITEM_TAG or length == UNDEFINED_LENGTH:
            raise UnreadableError(f"encapsulated pixel data is corrupt at byte {pos}")
        pos += 8 + length
    raise UnreadableError("encapsulated pixel data ends without its sequence delimiter: the file is truncated")


def _vr_code_text(code: bytes) -> str:
    text = code.decode("latin-1")
    return repr(text) if text.isprintable() else f"0x{code.hex().upper()}"


def _check_vrs(elements: Collection[Any]) -> None:
    """Raise if an explicit-VR element among ``elements`` (one dataset's top level, or the file
    meta information) has VR bytes that are not a DICOM VR.

    pydicom keeps two unknown capital letters as the VR (read with a 2-byte length) and takes
    anything else for a switch to implicit VR (VR None, the VR and 2-byte length read as a
    4-byte length, whose bytes give the VR code back).
    """
    for elem in elements:  # a top level is read in one mode: all implicit VR, or explicit
        if isinstance(elem, RawDataElement):
            if elem.is_implicit_VR:
                return
            break
    for elem in elements:
        vr = elem.VR
        if vr in DICOM_VRS:
            continue
        if vr is None:
            if not isinstance(elem, RawDataElement):
                continue
            code = struct.pack("<L" if elem.is_little_endian else ">L", elem.length)[:2]
        else:
            code = vr.encode("latin-1", "replace")
        raise UnreadableError(f"element {BaseTag(elem.tag)} has VR {_vr_code_text(code)}, which is not a DICOM VR")


def _position(elem: Any) -> int:
    return elem.value_tell if isinstance(elem, RawDataElement) else (elem.file_tell or -1)


def _check_complete(ds: Dataset, row: dict[str, Any], stop: _PixelStop | None, element_start: int, size: int,
                    fp: IO[bytes], start: int, *, positions_known: bool = True) -> None:
    """Raise if the pixel data or the last header element runs past the end of the file, or if an
    image's pixel data is missing. ``positions_known`` is False for a deflated body, whose element
    positions are in the inflated stream (zlib checks it while inflating)."""
    if stop is not None:
        if not positions_known:
            return
        header_len = 12 if (not ds.original_encoding[0] and stop.vr in _LONG_VRS) else 8
        value_start = element_start + header_len
        if stop.length == UNDEFINED_LENGTH:
            _walk_items(fp, start, value_start, size)
        elif value_start + stop.length > size:
            raise UnreadableError(
                f"pixel data declares {stop.length} bytes but only {max(size - value_start, 0)} remain: "
                "the file is truncated"
            )
        return
    # No pixel data: the last element read must be complete and end the file.
    if positions_known and ds._dict:
        last = max(ds._dict.values(), key=_position)
        if isinstance(last, RawDataElement) and last.length != UNDEFINED_LENGTH:
            end = last.value_tell - start + last.length
            if end > size:
                raise UnreadableError(f"element {BaseTag(last.tag)} runs past the end of the file: truncated")
            value = last.value
            if value is not None and len(value) < last.length:
                raise UnreadableError(f"element {BaseTag(last.tag)} is cut short: the file is truncated")
            if end < size:
                raise UnreadableError(
                    f"the file ends {size - end} bytes after element {BaseTag(last.tag)}, inside the next "
                    "element's header: the file is truncated"
                )
    if row.get("rows") and row.get("columns"):
        raise UnreadableError("image has Rows/Columns but its pixel data is missing: the file is truncated")


def _open_dataset(fp: IO[bytes], size: int) -> tuple[int, bool]:
    """Where the file starts in ``fp`` and whether it has a Part-10 preamble; raises
    :class:`NotDicomError` for a file that is neither."""
    if size == 0:
        raise NotDicomError("empty file")
    start = fp.tell()
    head = fp.read(132)
    fp.seek(start)
    has_preamble = len(head) >= 132 and head[128:132] == b"DICM"
    if not has_preamble and not _looks_like_raw_dataset(head):
        raise NotDicomError("no DICOM preamble and no recognisable dataset at the start of the file")
    return start, has_preamble


@dataclass(slots=True)
class _Parsed:
    ds: Dataset
    meta: Dataset | None
    row: dict[str, Any]
    stop: _PixelStop | None
    element_start: int  # where the stop element (or the end of the dataset) is, from the start


def _read_dataset(fp: IO[bytes], start: int, has_preamble: bool) -> _Parsed:
    """Read the dataset up to its pixel data, check its VRs and extract the header columns;
    pydicom's errors are raised as :class:`HeaderError` subclasses."""
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
            meta = getattr(ds, "file_meta", None)
            if meta is not None:
                _check_vrs(meta._dict.values())
            _check_vrs(ds._dict.values())
            row = _extract(ds)
    except HeaderError:
        raise
    except InvalidDicomError as exc:
        if has_preamble:
            raise UnreadableError(f"corrupt DICOM: {exc}") from exc
        raise NotDicomError(f"not a DICOM dataset: {exc}") from exc
    except Exception as exc:
        raise UnreadableError(f"corrupt DICOM ({type(exc).__name__}): {exc}") from exc
    return _Parsed(ds, meta, row, stops[0] if stops else None, element_start)


def _meta_transfer_syntax(meta: Dataset | None) -> str | None:
    """The file meta information's Transfer Syntax UID (None without one); raises
    :class:`UnreadableError` if it is not a UID."""
    if meta is None:
        return None
    ts = as_text(meta.get("TransferSyntaxUID"))
    if ts is not None and (len(ts) > 64 or not _UID_TEXT.fullmatch(ts)):
        # Not shown: a corrupt meta element can swallow the dataset, patient data included.
        raise UnreadableError("the file meta information's Transfer Syntax UID is not a UID: it is corrupt")
    return ts


def _encoding_transfer_syntax(ds: Dataset) -> str:
    """The uncompressed transfer syntax a dataset without one in its meta information was read in."""
    implicit, little = ds.original_encoding
    return "1.2.840.10008.1.2" if implicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")


def parse_header(fp: IO[bytes], size: int) -> dict[str, Any]:
    """Parse the header of an open binary file of ``size`` bytes.

    Returns the catalogue's header columns (UIDs and dates as raw strings; validation checks
    them), each of its kind's type (see the module rules), and the departmental values as JSON
    texts: ``acquisition`` (:mod:`pacs.dicom.acquisition`; a malformed value there is left empty
    and counted, never ``invalid_value``) and ``dose_report`` (a dose SR's events and totals,
    :mod:`pacs.dicom.dose_sr`), each None when the file has none.
    """
    start, has_preamble = _open_dataset(fp, size)
    parsed = _read_dataset(fp, start, has_preamble)
    ds, row = parsed.ds, parsed.row
    if not has_preamble and len(ds._dict) < 2:
        raise NotDicomError("forced parse found no DICOM elements")
    ts = _meta_transfer_syntax(parsed.meta)
    _check_complete(ds, row, parsed.stop, parsed.element_start, size, fp, start,
                    positions_known=ts not in DEFLATED_TS)
    row["transfer_syntax_uid"] = ts if ts is not None else _encoding_transfer_syntax(ds)
    row["has_pixel_data"] = parsed.stop is not None
    # a KOS rejection note's references travel with it to the merge (one string compare otherwise)
    row["rejection_note"] = _rejection_note(ds) if row.get("sop_class_uid") == KOS_SOP_CLASS else None
    # departmental values from the same dataset (one dict lookup for a modality without a table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row["acquisition"] = acquisition_values(ds, row.get("modality"), lambda: _encodings(ds))
        row["dose_report"] = dose_report_json(ds) if row.get("sop_class_uid") in DOSE_SR_SOP_CLASSES else None
    return row


def _rejection_note(ds: Dataset) -> str | None:
    """What a Key Object Selection document rejects (None: not a rejection note); raises
    :class:`UnreadableError` when its title or evidence sequences cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return note_references(ds)
    except Exception as exc:
        raise UnreadableError(f"Key Object Selection document: its title or evidence sequence is corrupt "
                              f"({type(exc).__name__})") from exc


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
