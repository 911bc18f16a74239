"""Little-endian DICOM byte encoding: data elements, VR helpers, Part-10 files and a span finder.

The per-series fast path (:class:`pacs.synth.series._SeriesWriter`) is built from
:func:`_encode_element` and :func:`_value_bytes`; the bad files, which need invalid values, go
through pydicom with :func:`_lenient_pydicom` and :func:`_dataset_bytes`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import struct
import warnings
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

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


def _sequence_bytes(items: Sequence, implicit: bool) -> bytes:
    """A sequence value of defined length whose items have defined lengths, as pydicom writes a
    sequence it read that way (items of simple elements only)."""
    out = []
    for item in items:
        body = b"".join(_encode_element(int(elem.tag), elem.VR, _value_bytes(elem.VR, elem.value), implicit)
                        for elem in sorted(item, key=lambda e: e.tag))
        out.append(struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body)
    return b"".join(out)


def _element_bytes(tag: int, vr: str, value: Any, implicit: bool) -> bytes:
    """One template element, simple or a sequence (:func:`_sequence_bytes`)."""
    if vr == "SQ":
        return _encode_element(tag, vr, _sequence_bytes(value, implicit), implicit)
    return _encode_element(tag, vr, _value_bytes(vr, value), implicit)


def _pixel_vr(bits_allocated: int) -> str:
    return "OW" if bits_allocated > 8 else "OB"


@functools.cache
def _tag_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, dictionary_VR(tag)


_BINARY_CODES = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}


def _value_bytes(vr: str, value: Any) -> bytes:
    """The unpadded encoding of a simple value (text VRs, binary numbers, or raw bytes)."""
    if isinstance(value, bytes):
        return value
    if vr in _BINARY_CODES:
        values = value if isinstance(value, list | tuple) else [value]
        return struct.pack(f"<{len(values)}{_BINARY_CODES[vr]}", *values)
    if isinstance(value, list | tuple):
        value = "\\".join(str(v) for v in value)
    return str(value).encode("latin-1")  # ISO_IR 100


def _fmt_time(seconds: int) -> str:
    """A TM value ``HHMMSS`` for seconds since midnight (clamped to the day)."""
    seconds = max(0, min(int(seconds), 86399))
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def _dataset_bytes(ds: Dataset) -> bytes:
    """Encode a dataset as a Part-10 file with pydicom, allowing invalid values."""
    buf = io.BytesIO()
    with _lenient_pydicom():
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


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
