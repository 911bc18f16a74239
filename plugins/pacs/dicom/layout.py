"""Deterministic storage layout: where a file lives in a tier, built from validated UIDs only.

``YYYY/MM/DD/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` (``undated/`` when a
study has no date). Every UID is re-checked here, so a value that is not a valid DICOM UID can
never become a path component, whatever the caller did before. Quarantine keys are built from
the reason code and the batch, never from tag values.
"""

from __future__ import annotations

import datetime as dt
import re

from pacs.dicom.validation import REASONS, uid_problem
from pacs.errors import UnsafePathError

_BATCH_ID = re.compile(r"[0-9A-Za-z_-]{1,80}")


def _checked(kind: str, uid: str) -> str:
    problem = uid_problem(uid) if isinstance(uid, str) else "is not a string"
    if problem:
        raise UnsafePathError(f"{kind} {problem}; it cannot be used in a path")
    return uid


def study_prefix(study_date: dt.date | None, study_uid: str) -> str:
    """The folder of a study in a tier."""
    day = study_date.strftime("%Y/%m/%d") if study_date else "undated"
    return f"{day}/{_checked('StudyInstanceUID', study_uid)}"


def series_prefix(study_date: dt.date | None, study_uid: str, series_uid: str) -> str:
    return f"{study_prefix(study_date, study_uid)}/{_checked('SeriesInstanceUID', series_uid)}"


def image_key(study_date: dt.date | None, study_uid: str, series_uid: str, sop_uid: str) -> str:
    """The key of one image in a tier (relative to the tier's root)."""
    return f"{series_prefix(study_date, study_uid, series_uid)}/{_checked('SOPInstanceUID', sop_uid)}.dcm"


def series_pack_key(study_date: dt.date | None, study_uid: str, series_uid: str, pack_id: str) -> str:
    """The key of a packed series container (a tar of its images) in the offline tier."""
    if not _BATCH_ID.fullmatch(pack_id):
        raise UnsafePathError("pack id has unsafe characters")
    return f"{series_prefix(study_date, study_uid, series_uid)}.{pack_id}.tar"


def checked_batch_id(batch_id: str) -> str:
    if not _BATCH_ID.fullmatch(batch_id):
        raise UnsafePathError("batch id has unsafe characters")
    return batch_id


def quarantine_key(reason: str, batch_id: str, row: int, suffix: str = ".dcm") -> str:
    """Where a rejected file's original bytes go: by reason, batch and row — never tag values."""
    if reason not in REASONS:
        raise UnsafePathError(f"unknown reason code {reason!r}")
    if suffix not in (".dcm", ".link"):
        raise UnsafePathError("bad quarantine suffix")
    return f"{reason}/{checked_batch_id(batch_id)}/{row:06d}{suffix}"
