"""Validation rules, the UID layout and path safety."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from pacs.dicom.layout import UnsafePathError, image_key, quarantine_key, series_pack_key, study_prefix
from pacs.dicom.validation import INVALID_DATE, INVALID_UID, MISSING_TAG, parse_date, uid_problem, validate
from pacs.store import Location

GOOD = {
    "patient_id": "P1",
    "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
    "series_instance_uid": "1.2.826.0.1.3680043.8.498.1.2",
    "sop_instance_uid": "1.2.826.0.1.3680043.8.498.1.2.3",
    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
    "modality": "CT",
    "study_date": "20240131",
    "series_date": None,
    "content_date": "",
    "patient_birth_date": "19700101",
}


@pytest.mark.parametrize(
    ("uid", "problem"),
    [
        ("1.2.840.10008.1.2", None),
        ("0.1.2", None),
        ("1." + "2" * 63, "is 65 characters long"),
        ("1.2.3.abc", "characters other than digits"),
        ("1.2.03.4", "leading zero"),
        ("1.2..4", "empty component"),
        ("1.2.4.", "empty component"),
        ("../../x", "characters other than digits"),
        ("1.2/3", "characters other than digits"),
        ("", "characters other than digits"),
    ],
)
def test_uid_rules(uid: str, problem: str | None) -> None:
    got = uid_problem(uid)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


def test_valid_header_passes_and_dates_become_dates() -> None:
    row = dict(GOOD)
    assert validate(row) is None
    assert row["study_date"] == dt.date(2024, 1, 31)
    assert row["content_date"] is None
    assert row["patient_birth_date"] == dt.date(1970, 1, 1)


@pytest.mark.parametrize("column", ["patient_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
                                    "sop_class_uid", "modality"])
def test_each_required_tag_is_required(column: str) -> None:
    for empty in (None, ""):
        row = dict(GOOD, **{column: empty})
        rejection = validate(row)
        assert rejection is not None and rejection.reason == MISSING_TAG


def test_invalid_uid_is_reported_with_the_tag_name_but_not_the_value() -> None:
    rejection = validate(dict(GOOD, series_instance_uid="1.2.3.abc"))
    assert rejection is not None
    assert rejection.reason == INVALID_UID
    assert "SeriesInstanceUID" in rejection.detail and "abc" not in rejection.detail


@pytest.mark.parametrize("value", ["20230231", "2023-01-05x", "2023", "20231301", "abcdefgh"])
def test_invalid_dates(value: str) -> None:
    rejection = validate(dict(GOOD, study_date=value))
    assert rejection is not None and rejection.reason == INVALID_DATE
    assert value not in rejection.detail


def test_birth_date_detail_never_carries_the_value() -> None:
    rejection = validate(dict(GOOD, patient_birth_date="19701345"))
    assert rejection is not None and rejection.reason == INVALID_DATE
    assert "1970" not in rejection.detail and "PatientBirthDate" in rejection.detail


def test_old_style_dates_are_accepted() -> None:
    assert parse_date("2001.02.03") == dt.date(2001, 2, 3)


def test_layout_is_deterministic() -> None:
    key = image_key(dt.date(2024, 1, 31), "1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert key == "2024/01/31/1.2.3/1.2.3.4/1.2.3.4.5.dcm"
    assert study_prefix(None, "1.2.3") == "undated/1.2.3"


@pytest.mark.parametrize(
    "hostile",
    ["../../x", "..", ".", "/etc/passwd", "1.2/../../3", "1.2.3\x00", "1.2.3/", "~root", "1.2 .3", "C:\\x",
     "1." + "9" * 70],
)
def test_hostile_uids_never_become_paths(hostile: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        image_key(dt.date(2024, 1, 1), hostile, "1.2", "1.3")
    with pytest.raises(UnsafePathError):
        image_key(dt.date(2024, 1, 1), "1.2", hostile, "1.3")
    with pytest.raises(UnsafePathError):
        image_key(dt.date(2024, 1, 1), "1.2", "1.3", hostile)
    with pytest.raises(UnsafePathError):
        series_pack_key(None, "1.2", hostile, "p1")


def test_every_key_stays_under_its_root(tmp_path: Path) -> None:
    """Whatever valid UIDs say, the path is inside the root; escaping keys are refused."""
    loc = Location(name="online", url=str(tmp_path / "online"))
    key = image_key(dt.date(1999, 12, 31), "9.9", "9.9.9", "9.9.9.9")
    assert os.path.commonpath([loc.path(key), loc.root]) == loc.root
    for bad in ("../x", "/abs", "a/../../b", "."):
        with pytest.raises(ValueError):
            loc.path(bad)


def test_quarantine_keys_come_from_reason_and_batch_only() -> None:
    assert quarantine_key("not_dicom", "20240101T000000-ab12cd34-0001", 7) == \
        "not_dicom/20240101T000000-ab12cd34-0001/000007.dcm"
    with pytest.raises(UnsafePathError):
        quarantine_key("../evil", "b", 1)
    with pytest.raises(UnsafePathError):
        quarantine_key("not_dicom", "../b", 1)
