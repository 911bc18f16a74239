"""Header faults: values with unexpected VRs, truncation before the pixel data, non-DICOM VR codes.

Every faulty file is made from one of pydicom's shipped test files, either rewritten by pydicom
with one element replaced (``DataElement`` + ``save_as``, which keeps the file's encoding) or
patched byte by byte where pydicom would not write the fault (a VR code, a cut). Expected
values are written out literally or computed with pydicom and ``struct``, never with the code
under test.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.valuerep import VR

from pacs.dicom import (
    HeaderError,
    InvalidValueError,
    UnreadableError,
    read_header_bytes,
)
from pacs.dicom.columns import HEADER_FIELDS
from pacs.dicom.validation import INVALID_VALUE

KIND_TYPES: dict[str, type] = {"str": str, "pn": str, "raw": str, "int": int}
ARROW_TYPES: dict[str, pa.DataType] = {"str": pa.string(), "pn": pa.string(), "raw": pa.string(), "int": pa.int32()}


def _bytes(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def _with_element(name: str, keyword: str, vr: str, value: Any) -> bytes:
    """A shipped file rewritten by pydicom with ``keyword`` replaced by an element of ``vr``."""
    ds = pydicom.dcmread(get_testdata_file(name))
    tag = tag_for_keyword(keyword)
    if tag in ds:
        del ds[tag]
    ds.add(DataElement(tag, vr, value))
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _element_start(data: bytes, keyword: str, header_len: int = 8) -> int:
    """Byte offset of an element's tag, found by pydicom (``file_tell`` is where its value starts)."""
    return pydicom.dcmread(io.BytesIO(data), force=True)[keyword].file_tell - header_len


def _patch_vr(data: bytes, keyword: str, old: bytes, new: bytes, header_len: int = 8) -> bytes:
    """Overwrite the two VR bytes of an explicit-VR element (checking they were ``old``)."""
    at = _element_start(data, keyword, header_len) + 4
    assert data[at:at + 2] == old, data[at - 4:at + 4]
    return data[:at] + new + data[at + 2:]


def _header_types_match(header: dict[str, Any]) -> None:
    for column, kind in HEADER_FIELDS.values():
        value = header[column]
        assert value is None or type(value) is KIND_TYPES[kind], (column, kind, value)
        if kind == "int" and value is not None:
            assert -(2**31) <= value <= 2**31 - 1, (column, value)


def _invalid(data: bytes) -> InvalidValueError:
    with pytest.raises(InvalidValueError) as caught:
        read_header_bytes(data)
    assert caught.value.reason == INVALID_VALUE == "invalid_value"
    return caught.value


# --- values with an unexpected VR -------------------------------------------------------------


@pytest.mark.parametrize(("vr", "value", "expected"), [("DS", "12.5", "12.5"), ("IS", "42", "42"), ("US", 7, "7")])
def test_institution_name_sent_as_a_number_is_catalogued_as_text(vr: str, value: Any, expected: str) -> None:
    header = read_header_bytes(_with_element("CT_small.dcm", "InstitutionName", vr, value))
    assert header["institution_name"] == expected
    _header_types_match(header)


def test_institution_name_sent_as_us_is_catalogued_as_text_in_big_endian_too() -> None:
    data = _with_element("MR_small_bigendian.dcm", "InstitutionName", "US", 7)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    assert read_header_bytes(data)["institution_name"] == "7"


def test_several_binary_values_are_joined_with_backslashes() -> None:
    header = read_header_bytes(_with_element("MR_small_bigendian.dcm", "InstitutionName", "SL", [-5, 70000]))
    assert header["institution_name"] == "-5\\70000"


def test_patient_id_sent_as_us_is_catalogued_as_text() -> None:
    header = read_header_bytes(_with_element("CT_small.dcm", "PatientID", "US", 7))
    assert header["patient_id"] == "7"
    _header_types_match(header)


@pytest.mark.parametrize(("vr", "value", "expected"), [("FD", 12.5, "12.5"), ("FD", [1.0, 2.5], "1\\2.5"),
                                                       ("FL", 0.1, "0.1")])
def test_study_description_sent_as_a_float_is_catalogued_as_its_decimal_text(vr: str, value: Any,
                                                                              expected: str) -> None:
    header = read_header_bytes(_with_element("CT_small.dcm", "StudyDescription", vr, value))
    assert header["study_description"] == expected
    _header_types_match(header)


def test_station_name_with_one_flipped_vr_byte_is_catalogued_as_its_decoded_numbers() -> None:
    data = _bytes("CT_small.dcm")
    value = pydicom.dcmread(io.BytesIO(data))["StationName"].value.encode("ascii")
    value += b" " * (len(value) % 2)
    flipped = _patch_vr(data, "StationName", b"SH", b"SS")  # one byte: H -> S
    numbers = struct.unpack(f"<{len(value) // 2}h", value)
    assert read_header_bytes(flipped)["station_name"] == "\\".join(str(n) for n in numbers)


def test_values_encoded_as_un_are_read_as_their_dictionary_vr() -> None:
    rows = _patch_vr(_with_element("CT_small.dcm", "Rows", "OB", b"\x80\x00"), "Rows", b"OB", b"UN", header_len=12)
    assert read_header_bytes(rows)["rows"] == 128
    name = _patch_vr(_with_element("CT_small.dcm", "InstitutionName", "OB", b"JFK IMAGING CENTER"),
                     "InstitutionName", b"OB", b"UN", header_len=12)
    assert read_header_bytes(name)["institution_name"] == "JFK IMAGING CENTER"


@pytest.mark.parametrize(("vr", "value", "expected"), [("LO", "512", 512), ("DS", "512.0", 512), ("UL", 300, 300),
                                                       ("SS", 64, 64)])
def test_rows_sent_as_another_number_vr_is_catalogued_as_an_int(vr: str, value: Any, expected: int) -> None:
    header = read_header_bytes(_with_element("CT_small.dcm", "Rows", vr, value))
    assert header["rows"] == expected
    _header_types_match(header)


def test_rows_sent_as_a_non_numeric_string_is_an_invalid_value_naming_the_tag() -> None:
    error = _invalid(_with_element("CT_small.dcm", "Rows", "CS", "ABC"))
    assert error.detail == "(0028,0010) Rows: value 'ABC' (VR CS) is not an integer"


def test_columns_with_a_fraction_is_an_invalid_value() -> None:
    error = _invalid(_with_element("CT_small.dcm", "Columns", "DS", "12.5"))
    assert error.detail.startswith("(0028,0011) Columns:") and "not an integer" in error.detail


@pytest.mark.parametrize(("keyword", "tag"), [("Rows", "(0028,0010)"), ("SeriesNumber", "(0020,0011)")])
def test_an_integer_too_large_for_int32_is_an_invalid_value(keyword: str, tag: str) -> None:
    error = _invalid(_with_element("CT_small.dcm", keyword, "UL", 4_000_000_000))
    assert error.detail == f"{tag} {keyword}: value 4000000000 (VR UL) is out of range for a 32-bit integer"


@pytest.mark.parametrize(("text", "expected"), [("2147483647", 2**31 - 1), ("-2147483648", -(2**31)),
                                                ("2147483648", None), ("-2147483649", None)])
def test_instance_numbers_at_the_int32_bounds(text: str, expected: int | None) -> None:
    data = _with_element("CT_small.dcm", "InstanceNumber", "IS", text)
    if expected is None:
        assert "out of range" in _invalid(data).detail
    else:
        assert read_header_bytes(data)["instance_number"] == expected


def test_series_number_sent_as_unparseable_text_is_catalogued_as_absent() -> None:
    header = read_header_bytes(_with_element("CT_small.dcm", "SeriesNumber", "LO", "abc"))
    assert header["series_number"] is None
    _header_types_match(header)


def test_a_binary_value_of_a_broken_length_is_an_invalid_value() -> None:
    # StudyDescription LO -> FD: its text is then a binary value whose length is not a multiple of 8.
    data = _bytes("CT_small.dcm")
    length = pydicom.dcmread(io.BytesIO(data))["StudyDescription"].file_tell
    text_len = struct.unpack("<H", data[length - 2:length])[0]
    assert text_len % 8
    error = _invalid(_patch_vr(data, "StudyDescription", b"LO", b"FD"))
    assert error.detail == (f"(0008,1030) StudyDescription: value with VR FD has {text_len} bytes, "
                            "not a whole number of 8-byte values")


def test_a_sequence_for_a_text_column_is_an_invalid_value() -> None:
    item = pydicom.Dataset()
    item.CodeValue = "X"
    error = _invalid(_with_element("CT_small.dcm", "InstitutionName", "SQ", [item]))
    assert error.detail.startswith("(0008,0080) InstitutionName: value with VR SQ")


def test_rows_with_several_us_values_is_catalogued_as_the_first_and_empty_rows_as_absent() -> None:
    header = read_header_bytes(_with_element("CT_small.dcm", "Rows", "US", [128, 64]))
    assert (header["rows"], header["columns"]) == (128, 128)
    header = read_header_bytes(_with_element("CT_small.dcm", "Rows", "US", None))
    assert (header["rows"], header["columns"]) == (None, 128)


def _with_undefined_length(keyword: str, vr: bytes, value: bytes) -> bytes:
    """CT_small.dcm with ``keyword`` rewritten as an explicit-VR ``vr`` element of undefined length
    holding ``value`` and a sequence delimiter."""
    data = _with_element("CT_small.dcm", keyword, "UT", "ABCD")
    at = _element_start(data, keyword, header_len=12)
    assert data[at + 4:at + 6] == b"UT"
    delimiter = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return data[:at + 4] + vr + b"\x00\x00" + struct.pack("<L", 0xFFFFFFFF) + value + delimiter + data[at + 16:]


def test_a_text_value_of_undefined_length_is_an_invalid_value() -> None:
    error = _invalid(_with_undefined_length("InstitutionName", b"UT", b"ABCD"))
    assert error.detail == "(0008,0080) InstitutionName: value with VR UT has an undefined length, not a value"


def test_an_un_value_of_undefined_length_read_as_a_sequence_is_an_invalid_value() -> None:
    empty_item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    error = _invalid(_with_undefined_length("InstitutionName", b"UN", empty_item))
    assert error.detail == "(0008,0080) InstitutionName: value with VR SQ is a sequence, not a value"


@pytest.mark.parametrize(("keyword", "vr", "column"), [("StudyDate", b"DA", "study_date"),
                                                       ("Modality", b"CS", "modality")])
def test_an_ascii_value_with_a_non_ascii_byte_is_catalogued_as_pydicom_reads_it(keyword: str, vr: bytes,
                                                                                 column: str) -> None:
    data = bytearray(_bytes("CT_small.dcm"))
    at = _element_start(bytes(data), keyword)
    assert data[at + 4:at + 6] == vr
    data[at + 8] = 0xE9
    expected = str(pydicom.dcmread(io.BytesIO(bytes(data)))[keyword].value).strip()
    assert expected[0] == "\u00e9"
    assert read_header_bytes(bytes(data))[column] == expected


# --- no PHI in details --------------------------------------------------------------------------


def test_the_detail_of_a_bad_patient_name_does_not_contain_the_name() -> None:
    data = _bytes("CT_small.dcm")
    name = pydicom.dcmread(io.BytesIO(data))["PatientName"].value
    raw = str(name).encode("ascii")
    assert len(raw) % 4  # so that as SL it is a broken binary value
    error = _invalid(_patch_vr(data, "PatientName", b"PN", b"SL"))
    assert error.detail.startswith("(0010,0010) PatientName: value with VR SL")
    for part in str(name).split("^"):
        assert part not in error.detail


def test_the_detail_of_a_bad_patient_id_does_not_contain_the_id() -> None:
    data = _with_element("CT_small.dcm", "PatientID", "OB", b"PID-0042-SECRET")
    error = _invalid(data)
    assert error.detail == "(0010,0020) PatientID: value with VR OB is not text"
    assert "0042" not in error.detail and "SECRET" not in error.detail


def test_the_detail_of_a_patient_name_as_bulk_data_does_not_contain_the_name() -> None:
    error = _invalid(_with_element("CT_small.dcm", "PatientName", "OB", b"Doe^Jane"))
    assert "Doe" not in error.detail and "Jane" not in error.detail
    assert error.detail == "(0010,0010) PatientName: value with VR OB is not text"


# --- truncation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "JPEG2000.dcm", "SC_rgb_small_odd.dcm"])
def test_an_image_truncated_right_before_its_pixel_data_is_unreadable(name: str) -> None:
    data = _bytes(name)
    full = pydicom.dcmread(io.BytesIO(data))
    assert full.Rows and full.Columns
    implicit = full.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    header_len = 8 if implicit else 12  # OB/OW in explicit VR: tag, VR, reserved, 4-byte length
    cut = full["PixelData"].file_tell - header_len
    assert struct.unpack("<HH" if full.is_little_endian else ">HH", data[cut:cut + 4]) == (0x7FE0, 0x0010)
    # pydicom itself reads the cut file without complaint: the check is the archive's.
    assert "PixelData" not in pydicom.dcmread(io.BytesIO(data[:cut]))
    with pytest.raises(UnreadableError, match="pixel data is missing: the file is truncated"):
        read_header_bytes(data[:cut])


def test_an_image_truncated_inside_the_pixel_data_element_header_is_unreadable() -> None:
    data = _bytes("CT_small.dcm")
    cut = pydicom.dcmread(io.BytesIO(data))["PixelData"].file_tell - 6
    with pytest.raises(UnreadableError, match="truncated"):
        read_header_bytes(data[:cut])


def test_a_file_truncated_in_the_middle_of_a_header_value_is_unreadable() -> None:
    data = _bytes("CT_small.dcm")
    value_at = pydicom.dcmread(io.BytesIO(data))["InstitutionName"].file_tell
    with pytest.raises(UnreadableError, match=r"\(0008,0080\).*truncated"):
        read_header_bytes(data[:value_at + 5])


@pytest.mark.parametrize("into", [2, 4, 6])
def test_a_file_truncated_inside_a_header_elements_tag_or_length_is_unreadable(into: int) -> None:
    # Cut before Rows, so that only the element structure can tell.
    data = _bytes("CT_small.dcm")
    start = _element_start(data, "InstitutionName")
    assert start < _element_start(data, "Rows")
    cut = data[:start + into]
    assert pydicom.dcmread(io.BytesIO(cut)).get("InstitutionName") is None  # pydicom drops the stub silently
    with pytest.raises(UnreadableError, match="inside the next element's header: the file is truncated"):
        read_header_bytes(cut)


def test_a_header_only_file_of_an_image_class_without_rows_and_columns_is_still_catalogued() -> None:
    # pydicom's TINY_ALPHA images are CT Image Storage headers without Rows, Columns or pixel data.
    path = get_testdata_file("TINY_ALPHA/PT000000/ST000000/SE000000/IM000000")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert "Rows" not in ds and "PixelData" not in ds
    header = read_header_bytes(Path(path).read_bytes())
    assert header["has_pixel_data"] is False and header["rows"] is None


# --- VR codes that are not DICOM VRs ---------------------------------------------------------


@pytest.mark.parametrize(("code", "shown"), [(b"ZZ", "'ZZ'"), (b"zz", "'zz'"), (b"\x00\x01", "0x0001"),
                                             (b"A\x00", "0x4100")])
def test_an_element_with_a_vr_code_that_is_not_a_dicom_vr_is_unreadable(code: bytes, shown: str) -> None:
    data = _patch_vr(_bytes("CT_small.dcm"), "InstitutionName", b"LO", code)
    with pytest.raises(UnreadableError) as caught:
        read_header_bytes(data)
    assert caught.value.reason == "unreadable"
    assert caught.value.detail == f"element (0008,0080) has VR {shown}, which is not a DICOM VR"


def test_a_bad_vr_code_in_a_big_endian_file_is_unreadable() -> None:
    data = _patch_vr(_bytes("MR_small_bigendian.dcm"), "InstitutionName", b"LO", b"\x01\x02")
    with pytest.raises(UnreadableError, match=r"element \(0008,0080\) has VR 0x0102, which is not a DICOM VR"):
        read_header_bytes(data)


@pytest.mark.parametrize(("code", "shown"), [(b"ZZ", "'ZZ'"), (b"\x00\x01", "0x0001")])
def test_a_file_meta_element_with_a_vr_code_that_is_not_a_dicom_vr_is_unreadable(code: bytes, shown: str) -> None:
    data = _bytes("CT_small.dcm")
    at = data.index(b"\x02\x00\x03\x00UI") + 4  # (0002,0003) Media Storage SOP Instance UID
    with pytest.raises(UnreadableError) as caught:
        read_header_bytes(data[:at] + code + data[at + 2:])
    assert caught.value.detail == f"element (0002,0003) has VR {shown}, which is not a DICOM VR"


def test_a_transfer_syntax_element_that_swallows_the_dataset_is_unreadable_without_showing_it() -> None:
    data = _bytes("CT_small.dcm")
    at = data.index(b"\x02\x00\x10\x00UI") + 4  # (0002,0010) Transfer Syntax UID
    name = str(pydicom.dcmread(io.BytesIO(data)).PatientName)
    with pytest.raises(UnreadableError) as caught:
        read_header_bytes(data[:at] + b"\x00\x01" + data[at + 2:])
    assert "Transfer Syntax UID is not a UID" in caught.value.detail
    assert name.split("^")[0] not in caught.value.detail


# --- every shipped file ---------------------------------------------------------------------------


def _parsed_shipped_files() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(get_testdata_files()):
        if not os.path.isfile(path):
            continue
        try:
            out.append((path, read_header_bytes(Path(path).read_bytes())))
        except HeaderError:
            continue
    return out


def test_every_shipped_file_that_parses_has_columns_of_its_kinds_type() -> None:
    parsed = _parsed_shipped_files()
    assert len(parsed) > 100  # pydicom ships ~170 files, most of them DICOM
    for path, header in parsed:
        try:
            _header_types_match(header)
        except AssertionError as exc:
            raise AssertionError(f"{path}: {exc}") from exc


def test_every_shipped_file_that_parses_builds_a_staged_arrow_row() -> None:
    for path, header in _parsed_shipped_files():
        for column, kind in HEADER_FIELDS.values():
            pa.array([header[column]], type=ARROW_TYPES[kind])  # raises on a wrong type or an int32 overflow
        assert path


@pytest.mark.parametrize(("vr", "value"), [("US", 7), ("SS", -3), ("UL", 70000), ("SL", -70000), ("FL", 1.5),
                                           ("FD", 2.25), ("DS", "3.5"), ("IS", "9"), ("AT", 0x00100010),
                                           ("CS", "ABC"), ("DA", "20240101"), ("UI", "1.2.3")])
def test_every_odd_vr_for_a_text_column_still_builds_a_staged_arrow_row(vr: str, value: Any) -> None:
    for keyword in ("InstitutionName", "PatientID", "ReferringPhysicianName", "StudyDate"):
        header = read_header_bytes(_with_element("CT_small.dcm", keyword, vr, value))
        _header_types_match(header)
        column, kind = HEADER_FIELDS[keyword]
        assert isinstance(header[column], str)
        pa.array([header[column]], type=ARROW_TYPES[kind])


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm"])
def test_any_dicom_vr_code_on_any_catalogue_field_gives_its_kinds_type_or_a_header_error(name: str) -> None:
    """Each catalogue field's VR bytes replaced by every DICOM VR in turn: the file is catalogued
    with columns of the right types, or rejected with a reason; nothing else escapes."""
    data = _bytes(name)
    ds = pydicom.dcmread(io.BytesIO(data))
    vrs = sorted(vr.value for vr in VR if len(vr.value) == 2)
    reasons: set[str] = set()
    catalogued = 0
    for keyword in HEADER_FIELDS:
        if keyword not in ds:
            continue
        at = ds[keyword].file_tell - 4  # VR bytes; the catalogue's fields all have VRs with a 2-byte length
        for vr in vrs:
            try:
                header = read_header_bytes(data[:at] + vr.encode("ascii") + data[at + 2:])
            except HeaderError as exc:
                reasons.add(exc.reason)
                continue
            _header_types_match(header)
            catalogued += 1
    assert reasons == {"unreadable", "invalid_value"} and catalogued > 0
