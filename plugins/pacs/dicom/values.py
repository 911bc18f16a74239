"""Element values as the catalogue's columns need them: text, integers, coerced raw values.

A header element may arrive with any VR, whatever the DICOM dictionary says; these helpers turn
what pydicom converted, or the raw bytes of an element it did not, into the Python type of the
column's kind (``str`` or ``int``), or raise :class:`Unusable` saying why they cannot (the header
reader turns that into an ``invalid_value`` naming the tag, with patient data never shown).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydicom.charset import decode_bytes
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import TEXT_VR_DELIMS, VR, PersonName

from pacs.errors import PacsError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
BULK_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV"})
DICOM_VRS = frozenset(vr.value for vr in VR if len(vr.value) == 2)


class Unusable(PacsError):
    """Why a value cannot be coerced; :func:`_extract` turns it into :class:`InvalidValueError`.

    ``shown`` is the value as it may appear in a detail (omitted for PHI); ``not_integer`` marks
    the one case the lenient int columns catalogue as None.
    """

    def __init__(self, problem: str, shown: str | None = None, *, not_integer: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.shown = shown
        self.not_integer = not_integer


def as_text(value: Any) -> str | None:
    """Any value as stripped text (None when empty); never anything but ``str`` or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join("" if v is None else value_text(v) for v in value)
    elif not isinstance(value, str):
        value = value_text(value)
    text = value.strip().strip("\x00").strip()
    return text or None


def float_text(number: float, single: bool = False) -> str:
    """A float in its shortest decimal form (for FL, the shortest that gives the float32 back)."""
    if not math.isfinite(number):
        return str(number)
    if number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    if single:
        packed = struct.pack("<f", number)
        for digits in range(1, 10):
            text = f"{number:.{digits}g}"
            if struct.pack("<f", float(text)) == packed:
                return text
    return repr(number)


def value_text(value: Any) -> str:
    """One converted value (pydicom's or a decoded binary number) as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace")
    if isinstance(value, BaseTag):
        return str(value)
    if isinstance(value, bool | int):
        return str(int(value))
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Sequence | Dataset):
        raise Unusable("is a sequence, not a value")
    return str(value)


def check_int32(number: int) -> int:
    if not INT32_MIN <= number <= INT32_MAX:
        raise Unusable("is out of range for a 32-bit integer", str(number))
    return number


def int_from_text(text: str) -> int | None:
    """The first value of a text value written as an integer; None when empty."""
    first = text.split("\\", 1)[0].strip(" \x00\t\r\n")
    if not first:
        return None
    try:
        if "_" in first:  # Python's int() accepts digit separators; DICOM does not
            raise ValueError(first)
        return check_int32(int(first))
    except ValueError:
        pass
    try:
        number = float(first)
    except ValueError:
        raise Unusable("is not an integer", repr(first[:64]), not_integer=True) from None
    if not number.is_integer():
        raise Unusable("is not an integer", repr(first[:64]), not_integer=True)
    return check_int32(int(number))


def int_from_number(number: Any) -> int:
    """A decoded number (or one of pydicom's converted values) as an int."""
    if isinstance(number, BaseTag):
        raise Unusable("is a tag, not an integer", str(number), not_integer=True)
    if isinstance(number, bool | int):
        return check_int32(int(number))
    if isinstance(number, float | Decimal):
        if not math.isfinite(number) or not float(number).is_integer():
            raise Unusable("is not an integer", str(number), not_integer=True)
        return check_int32(int(number))
    raise Unusable("is not an integer", not_integer=True)


def int_from_value(value: Any) -> int | None:
    """One of pydicom's converted values as an int (the first of several); None when empty."""
    if value is None:
        return None
    if isinstance(value, Sequence | Dataset):
        raise Unusable("is a sequence, not a value")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        if not len(value):
            return None
        value = value[0]
        if value is None:
            return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise Unusable("is not an integer", not_integer=True) from None
    if isinstance(value, str):
        return int_from_text(value)
    return int_from_number(value)


def from_converted(value: Any, kind: str) -> str | int | None:
    """pydicom's converted value as the column's type."""
    if isinstance(value, Sequence | Dataset):
        raise Unusable("is a sequence, not a value")
    return int_from_value(value) if kind == "int" else as_text(value)


TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})


# Binary numbers: VR -> (struct code, size of one value).
BINARY_VRS: dict[str, tuple[str, int]] = {
    "US": ("H", 2), "SS": ("h", 2), "UL": ("L", 4), "SL": ("l", 4), "SV": ("q", 8), "UV": ("Q", 8),
    "FL": ("f", 4), "FD": ("d", 8), "AT": ("HH", 4),
}


def unpack_numbers(raw: bytes, vr: str, little_endian: bool) -> list[Any]:
    code, size = BINARY_VRS[vr]
    if len(raw) % size:
        raise Unusable(f"has {len(raw)} bytes, not a whole number of {size}-byte values")
    count = len(raw) // size
    values = list(struct.unpack(("<" if little_endian else ">") + code * count, raw))
    if vr == "AT":
        return [BaseTag(g << 16 | e) for g, e in zip(values[::2], values[1::2], strict=True)]
    return values


def coerce_raw(elem: RawDataElement, vr: str, dict_vr: str, kind: str,
                encodings: Callable[[], list[str]]) -> str | int | None:
    """A raw element whose VR is not its dictionary VR, as the column's type."""
    raw: bytes = elem.value
    if vr == "UN":  # the value is encoded as the element's real (dictionary) VR
        vr = dict_vr
    if vr in BINARY_VRS:
        numbers = unpack_numbers(raw, vr, elem.is_little_endian)
        if not numbers:
            return None
        if kind == "int":
            return int_from_number(numbers[0])
        single = vr == "FL"
        return as_text("\\".join(float_text(n, single) if isinstance(n, float) else value_text(n) for n in numbers))
    if vr == "SQ":
        raise Unusable("is a sequence, not a value")
    if vr in BULK_VRS or vr not in DICOM_VRS:
        raise Unusable("is not an integer" if kind == "int" else "is not text")
    if kind == "int":
        return ascii_int(raw)
    try:  # any text VR is decoded with the dataset's character set
        return decoded_text(raw, "PN" if vr == "PN" else "LO", encodings)
    except TEXT_ERRORS:
        return as_text(raw.decode("latin-1", "replace"))


TEXT_ERRORS = (UnicodeDecodeError, ValueError, OverflowError, LookupError)


def ascii_int(raw: bytes) -> int | None:
    """A text-encoded integer value (IS, or text in another VR) as an int."""
    try:
        return int_from_text(raw.decode("ascii"))
    except UnicodeDecodeError:
        raise Unusable("is not an integer", not_integer=True) from None


def decoded_text(raw: bytes, vr: str, encodings: Callable[[], list[str]]) -> str | None:
    """A raw text value of ``vr``: names and descriptions in the dataset's character set, the
    rest (UI, DA, TM, CS, AS) ASCII by definition; raises one of ``TEXT_ERRORS``."""
    if vr == "PN":
        return as_text(str(PersonName(raw, encodings())))
    if vr in TEXT_VRS:
        return as_text(decode_bytes(raw, encodings(), TEXT_VR_DELIMS))
    return as_text(raw.decode("ascii"))
