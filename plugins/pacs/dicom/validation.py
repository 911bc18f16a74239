"""Validation rules and the quarantine reason codes they produce.

A header that passes :func:`validate` has every required tag, valid UIDs (so they may become
path components) and valid dates (converted to :class:`datetime.date`). The two rules that
need the catalogue (``patient_mismatch``, ``sop_conflict``) are applied by the merge, which is
the only step that sees the catalogue. Details never carry patient names or birth dates.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, NamedTuple

from pacs.errors import HeaderError

NOT_DICOM = "not_dicom"
UNREADABLE = "unreadable"
MISSING_TAG = "missing_tag"
INVALID_UID = "invalid_uid"
INVALID_DATE = "invalid_date"
PATIENT_MISMATCH = "patient_mismatch"
SOP_CONFLICT = "sop_conflict"
UNSAFE_PATH = "unsafe_path"
INVALID_VALUE = "invalid_value"
SERIES_CONFLICT = "series_conflict"

REASONS: dict[str, str] = {
    NOT_DICOM: "not a DICOM file",
    UNREADABLE: "DICOM but truncated or corrupt",
    MISSING_TAG: "a required tag is missing or empty",
    INVALID_UID: "a UID is not a valid DICOM UID",
    INVALID_DATE: "a date is not a valid DICOM date",
    PATIENT_MISMATCH: "the study is already catalogued under another patient",
    SOP_CONFLICT: "the SOP instance is already catalogued with different bytes",
    UNSAFE_PATH: "a link that points outside its landing root",
    INVALID_VALUE: "a header element the catalogue reads has a value it cannot take (the tag is named)",
    SERIES_CONFLICT: "the series is already catalogued, or was received earlier, under another study",
}

REQUIRED: tuple[tuple[str, str], ...] = (
    ("PatientID", "patient_id"),
    ("StudyInstanceUID", "study_instance_uid"),
    ("SeriesInstanceUID", "series_instance_uid"),
    ("SOPInstanceUID", "sop_instance_uid"),
    ("SOPClassUID", "sop_class_uid"),
    ("Modality", "modality"),
)
UIDS: tuple[tuple[str, str], ...] = (
    ("StudyInstanceUID", "study_instance_uid"),
    ("SeriesInstanceUID", "series_instance_uid"),
    ("SOPInstanceUID", "sop_instance_uid"),
    ("SOPClassUID", "sop_class_uid"),
)
DATES: tuple[tuple[str, str], ...] = (
    ("StudyDate", "study_date"),
    ("SeriesDate", "series_date"),
    ("ContentDate", "content_date"),
    ("PatientBirthDate", "patient_birth_date"),
)
_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_UID_CHARS = re.compile(r"[0-9.]+")
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")  # the rule pydicom's UID.is_valid applies


class Rejection(NamedTuple):
    """Why a file is quarantined: a reason code and a human-readable detail."""

    reason: str
    detail: str


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a valid DICOM UID, or None if it is."""
    if len(value) > 64:
        return f"is {len(value)} characters long (at most 64)"
    if _UID.fullmatch(value):
        return None
    if not _UID_CHARS.fullmatch(value):
        return "has characters other than digits and dots"
    if any(part == "" for part in value.split(".")):
        return "has an empty component"
    if any(len(part) > 1 and part.startswith("0") for part in value.split(".")):
        return "has a component with a leading zero"
    return "is not a valid UID"


def is_valid_uid(value: Any) -> bool:
    return isinstance(value, str) and uid_problem(value) is None


def parse_date(value: str | None) -> dt.date | None:
    """A DICOM DA value (``YYYYMMDD``, or the old ``YYYY.MM.DD``) as a date; None if empty."""
    if value is None or value == "":
        return None
    m = _DA.fullmatch(value.strip())
    if not m:
        raise ValueError("expected YYYYMMDD")
    return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def validate(row: dict[str, Any]) -> Rejection | None:
    """Check a header row in place; dates become :class:`datetime.date`.

    Returns the first problem found, in the order: missing tags, UIDs, dates.
    """
    missing = [kw for kw, col in REQUIRED if not row.get(col)]
    if missing:
        return Rejection(MISSING_TAG, f"missing or empty: {', '.join(missing)}")
    for kw, col in UIDS:
        problem = uid_problem(row[col])
        if problem:
            return Rejection(INVALID_UID, f"{kw} {problem}")
    for kw, col in DATES:
        try:
            row[col] = parse_date(row.get(col))
        except ValueError:
            return Rejection(INVALID_DATE, f"{kw} is not a valid DICOM date (expected YYYYMMDD)")
    return None


def judge(header: dict[str, Any] | None, problem: HeaderError | None) -> Rejection | None:
    """Intake's verdict on one file from reading its header: the reader's problem (``not_dicom``,
    ``unreadable``, ``invalid_value``), else the first rule :func:`validate` finds (dates are
    converted in place); None when the file is to be catalogued. The process step and
    ``pacs header`` both decide through this function."""
    if problem is not None:
        return Rejection(problem.reason, problem.detail)
    assert header is not None  # the reader returns a header or raises
    return validate(header)
