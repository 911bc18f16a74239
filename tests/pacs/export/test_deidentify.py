"""De-identification of exported copies (PS3.15 Basic Application Level Confidentiality Profile),
on pydicom's own test files: CT, MR, RT plan and dose, SR, ECG waveform, an enhanced multi-frame,
overlays, and JPEG, JPEG 2000, RLE, deflated and big-endian encodings.

What must not survive is computed from PS3.15 Table E.1-1 as dicom-anonymizer ships it, read
here directly rather than through the module; pseudonyms are computed with
:func:`pacs.analyst.deid.pseudonym` and the kind that ``include/sql/views_deid.sql`` uses.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from helpers import ROOT
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from pacs.analyst.deid import pseudonym
from pacs.errors import ConfigError, DeidentificationError
from pacs.export.deidentify import TABLE_EDITION, Deidentifier, profile_table

# rtdose.dcm holds an invalid UID on purpose; the tests read it lazily, element by element
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")

KEY = b"analysts-pseudonym-key-0123456789"
OTHER_KEY = b"another-pseudonym-key-9876543210"

FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "rtdose.dcm", "test-SR.dcm", "reportsi.dcm",
         "waveform_ecg.dcm", "liver_1frame.dcm", "examples_overlay.dcm", "JPEG-lossy.dcm", "SC_rgb_rle.dcm",
         "MR_small_jp2klossless.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"]
WITH_PRIVATE = ["CT_small.dcm", "JPEG2000.dcm", "waveform_ecg.dcm", "examples_overlay.dcm", "examples_ybr_color.dcm",
                "J2K_pixelrep_mismatch.dcm"]
# The direct identifiers the issue names: each must be one the table removes, empties or replaces.
NAMED_IDENTIFIERS = ["PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "AccessionNumber",
                     "ReferringPhysicianName", "InstitutionName", "InstitutionAddress", "StationName", "OperatorsName",
                     "PerformingPhysicianName", "StudyID", "DeviceSerialNumber", "RequestingPhysician",
                     "PhysiciansOfRecord", "PatientAddress", "StudyDate", "StudyDescription", "PatientComments"]


def _table() -> dict[str, list[tuple[int, ...]]]:
    return dicom_anonymization_database_selector(TABLE_EDITION)


def _identifier_tags() -> set[int]:
    """Tags the profile removes, empties or replaces by a dummy (every category but plain U)."""
    return {(t[0] << 16) | t[1] for category, tags in _table().items()
            if category not in ("U_TAGS", "ALL_TAGS") for t in tags if len(t) == 2}


def _data(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _elements(ds: Dataset) -> Iterator[Any]:
    """Every element at every depth (sequence items included), file meta first."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from meta
    stack = [ds]
    while stack:
        for elem in stack.pop():
            yield elem
            if elem.VR == "SQ":
                stack.extend(elem.value)


def _values(elem: Any) -> set[str]:
    value = elem.value
    if value is None or value == "" or elem.VR in ("SQ", "UI"):
        return set()
    items = value if isinstance(value, list | pydicom.multival.MultiValue) else [value]
    return {str(v) for v in items if str(v) != ""}


def _instance_uids(ds: Dataset) -> set[str]:
    """The UIDs of the file that name instances (or equipment, or anything): all but class UIDs,
    transfer syntaxes, coding schemes and the standard's registered UIDs."""
    out = set()
    for elem in _elements(ds):
        if elem.VR != "UI" or elem.keyword.endswith("ClassUID") or "TransferSyntax" in elem.keyword \
                or elem.keyword == "CodingSchemeUID":
            continue
        for v in elem.value if isinstance(elem.value, list | pydicom.multival.MultiValue) else [elem.value]:
            if v and UID(v).name == v:  # a registered UID's name is its title, not its digits
                out.add(str(v))
    return out


@pytest.fixture(scope="module")
def deid() -> Deidentifier:
    return Deidentifier(KEY)


def test_the_table_is_ps3_15_table_e_1_1_and_lists_every_named_direct_identifier() -> None:
    table = _table()
    assert len(table["ALL_TAGS"]) >= 650  # the 2026c edition of Table E.1-1 lists 655 attributes
    identifiers = _identifier_tags()
    for keyword in NAMED_IDENTIFIERS:
        assert pydicom.datadict.tag_for_keyword(keyword) in identifiers, keyword
    loaded = profile_table()
    assert len(loaded.single) + len(loaded.masked) == len(table["ALL_TAGS"])
    assert loaded.action(0x00100010) == "Z" and loaded.action(0x0020000D) == "U"
    assert loaded.action(0x60023000) == "X" and loaded.action(0x50001234) == "X"  # overlay data, curves


@pytest.mark.parametrize("name", FILES)
def test_no_attribute_the_profile_removes_keeps_its_original_value_anywhere(deid: Deidentifier, name: str) -> None:
    original = _read(_data(name))
    identifiers = _identifier_tags()
    before: dict[int, set[str]] = {}
    for elem in _elements(original):
        if elem.tag in identifiers:
            before.setdefault(elem.tag, set()).update(_values(elem))
    out = deid(_data(name))
    for elem in _elements(_read(out)):
        if elem.tag in identifiers and elem.tag not in (0x00100010, 0x00100020):
            kept = _values(elem) & before.get(elem.tag, set())
            assert not kept, f"{name}: {elem.keyword} keeps an original value"
    # and no name, ID or description of those attributes appears anywhere in the written bytes (unless the
    # same text is part of an attribute the profile keeps: InstitutionName "TOSHIBA", Manufacturer "TOSHIBA_MEC")
    texts = {v for elem in _elements(original) if elem.tag in identifiers and elem.VR in ("PN", "LO", "SH", "ST", "LT")
             for v in _values(elem) if len(v) >= 5}
    kept = [v for elem in _elements(original) if elem.tag not in identifiers and not elem.tag.is_private
            for v in _values(elem)]
    texts = {t for t in texts if not any(t in v for v in kept)}
    for text in texts:
        assert text.encode() not in out, f"{name}: an identifier's text survives in the bytes"


def test_the_corpus_holds_the_named_identifiers_so_the_check_is_not_vacuous() -> None:
    found = set()
    for name in FILES:
        found |= {e.keyword for e in _elements(_read(_data(name))) if e.keyword in NAMED_IDENTIFIERS and _values(e)}
    assert {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "ReferringPhysicianName",
            "InstitutionName", "InstitutionAddress", "StationName", "OperatorsName", "StudyID", "DeviceSerialNumber",
            "RequestingPhysician", "StudyDescription"} <= found


@pytest.mark.parametrize("name", WITH_PRIVATE)
def test_no_private_attribute_curve_or_overlay_survives(deid: Deidentifier, name: str) -> None:
    original = _read(_data(name))
    assert any(e.tag.is_private for e in _elements(original))
    ds = _read(deid(_data(name)))
    assert not [e for e in _elements(ds) if e.tag.is_private]
    assert not [e for e in _elements(ds) if e.tag.group & 0xFF00 in (0x5000, 0x6000)]  # curves, overlay planes
    if name == "examples_overlay.dcm":
        assert 0x60003000 in original  # Overlay Data


@pytest.mark.parametrize("name", FILES)
def test_no_original_uid_appears_anywhere_in_the_output_bytes(deid: Deidentifier, name: str) -> None:
    data = _data(name)
    original = _read(data)
    uids = _instance_uids(original)
    assert original.SOPInstanceUID in uids and original.StudyInstanceUID in uids
    out = deid(data)
    for uid in uids:
        if len(uid) >= 8:  # reportsi.dcm references a SOP instance "0", a substring of anything
            assert uid.encode() not in out, f"{name}: an original UID survives"
    ds = _read(out)
    assert not uids & _instance_uids(ds)
    for uid in _instance_uids(ds):
        assert UID(uid).is_valid and uid.startswith("2.25.") and len(uid) <= 64


@pytest.mark.parametrize("name", FILES)
def test_pixel_data_sop_class_and_transfer_syntax_are_unchanged(deid: Deidentifier, name: str) -> None:
    data = _data(name)
    original = _read(data)
    out = deid(data)
    assert out[128:132] == b"DICM" and out[:128] == bytes(128)
    ds = pydicom.dcmread(io.BytesIO(out))  # a Part-10 file: no force needed
    assert ds.SOPClassUID == original.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == deid.uid(original.SOPInstanceUID)
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in original:
            assert bytes(ds[keyword].value) == bytes(original[keyword].value)
    if "WaveformSequence" in original:
        assert [bytes(w.WaveformData) for w in ds.WaveformSequence] == \
               [bytes(w.WaveformData) for w in original.WaveformSequence]


def test_patient_id_is_the_analysts_pseudonym_so_an_export_joins_the_deidentified_views(deid: Deidentifier) -> None:
    sql = (ROOT / "include" / "sql" / "views_deid.sql").read_text()
    kinds = set(re.findall(r"pacs_pseudonym\('(\w+)',\s*(?:\w+\.)?patient_id\)", sql))
    assert len(kinds) == 1
    kind = kinds.pop()
    for name in ("CT_small.dcm", "MR_small.dcm", "waveform_ecg.dcm"):
        original = _read(_data(name))
        ds = _read(deid(_data(name)))
        assert ds.PatientID == pseudonym(KEY, kind, original.PatientID) == deid.patient_pseudonym(original.PatientID)
        assert str(ds.PatientName) == ds.PatientID
        assert ds.AccessionNumber == ""
    effective = _read(deid(_data("CT_small.dcm"), patient_id="MERGED-INTO-7"))
    assert effective.PatientID == pseudonym(KEY, kind, "MERGED-INTO-7")


def test_two_exports_with_the_same_key_write_the_same_bytes_and_another_key_other_pseudonyms() -> None:
    first, second, other = Deidentifier(KEY), Deidentifier(KEY), Deidentifier(OTHER_KEY)
    for name in ("CT_small.dcm", "rtplan.dcm", "JPEG2000.dcm"):
        data = _data(name)
        assert first(data) == second(data)
        a, b = _read(first(data)), _read(other(data))
        assert a.PatientID != b.PatientID
        assert a.StudyInstanceUID != b.StudyInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert first.uid("1.2.3.4") == second.uid("1.2.3.4") != other.uid("1.2.3.4")


def _copy_of_ct(sop_uid: str, referenced: str | None = None) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    if referenced:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, referenced
        ds.ReferencedImageSequence = [item]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_two_files_of_one_series_share_their_new_study_series_and_frame_of_reference(deid: Deidentifier) -> None:
    first_uid, second_uid = generate_uid(), generate_uid()
    first = _read(deid(_copy_of_ct(first_uid)))
    second = _read(deid(_copy_of_ct(second_uid, referenced=first_uid)))
    original = _read(_data("CT_small.dcm"))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert first[keyword].value == second[keyword].value == deid.uid(original[keyword].value)
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPClassUID == original.SOPClassUID


def test_references_inside_sequences_are_remapped_with_the_same_mapping(deid: Deidentifier) -> None:
    original = _read(_data("rtplan.dcm"))
    ds = _read(deid(_data("rtplan.dcm")))
    old = original.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID
    assert ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == deid.uid(old) != old
    sr = _read(_data("test-SR.dcm"))
    out = _read(deid(_data("test-SR.dcm")))
    names = [str(item.VerifyingObserverName) for item in sr.VerifyingObserverSequence]
    assert names and all(names)
    assert [str(item.get("VerifyingObserverName", "")) for item in out.VerifyingObserverSequence] != names
    assert not set(names) & {str(item.get("VerifyingObserverName", "")) for item in out.VerifyingObserverSequence}


def test_dates_follow_the_basic_profile_without_the_retain_longitudinal_option(deid: Deidentifier) -> None:
    for name in ("CT_small.dcm", "waveform_ecg.dcm", "examples_overlay.dcm"):
        original = _read(_data(name))
        ds = _read(deid(_data(name)))
        assert ds.get("StudyDate", "") == "" and ds.get("StudyTime", "") == ""
        assert ds.get("PatientBirthDate", "") == ""
        assert ds.get("ContentDate", "19000101") == "19000101"
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        dates = {v for e in _elements(original) if e.VR in ("DA", "DT") for v in _values(e)}
        assert not dates & {v for e in _elements(ds) if e.VR in ("DA", "DT") for v in _values(e)}


def test_the_file_says_how_it_was_deidentified(deid: Deidentifier) -> None:
    ds = _read(deid(_data("MR_small.dcm")))
    assert ds.PatientIdentityRemoved == "YES"
    assert "Basic Profile" in str(ds.DeidentificationMethod)
    codes = [(c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning) for c in ds.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM", "Basic Application Confidentiality Profile")]
    again = _read(deid(deid(_data("MR_small.dcm"))))
    assert len(again.DeidentificationMethodCodeSequence) == 1  # de-identifying twice does not repeat the code


def test_a_bare_dataset_and_a_filled_preamble_become_a_clean_part_10_file(deid: Deidentifier) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta, ds.preamble = pydicom.dataset.FileMetaDataset(), None
    bare = io.BytesIO()
    ds.save_as(bare, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    assert bare.getvalue()[128:132] != b"DICM"
    out = deid(bare.getvalue())
    written = pydicom.dcmread(io.BytesIO(out))
    assert written.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert bytes(written.PixelData) == bytes(ds.PixelData)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.preamble = b"II*\x00 PATIENT JOHN DOE ".ljust(128, b"\x00")
    filled = io.BytesIO()
    ds.save_as(filled, enforce_file_format=True)
    assert deid(filled.getvalue())[:128] == bytes(128)


def test_an_instance_with_burned_in_annotation_is_refused_without_naming_the_patient(deid: Deidentifier) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.BurnedInAnnotation = "YES"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(DeidentificationError) as info:
        deid(buf.getvalue())
    assert str(ds.PatientName) not in str(info.value) and ds.PatientID not in str(info.value)
    assert info.value.terminal and info.value.reason == "burned_in_annotation"


def test_bad_input_and_a_short_key_are_refused(deid: Deidentifier) -> None:
    with pytest.raises(DeidentificationError):
        deid(b"\x00" * 128 + b"DICM" + b"\x00" * 16)
    with pytest.raises(DeidentificationError):
        deid(b"not a dicom file at all")
    with pytest.raises(ConfigError):
        Deidentifier(b"short")


def test_nothing_of_the_patient_is_logged_or_printed(deid: Deidentifier, caplog: pytest.LogCaptureFixture,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("CT_small.dcm", "waveform_ecg.dcm", "rtdose.dcm"):
        original = _read(_data(name))
        deid(_data(name))
        shown = caplog.text + "".join(capsys.readouterr())
        assert str(original.PatientName) not in shown and original.PatientID not in shown
