"""IOCM rejection: the four document titles that reject instances, and reading a rejection note.

A *rejection note* is a Key Object Selection Document (SOP class
``1.2.840.10008.5.1.4.1.1.88.59``) whose document title (``ConceptNameCodeSequence[0]``) is one
of the DICOM IOCM codes in :data:`REJECTION_CODES` (scheme ``DCM``). It lists the instances it
rejects in ``CurrentRequestedProcedureEvidenceSequence`` → ``ReferencedSeriesSequence`` →
``ReferencedSOPSequence``. :func:`note_references` reads that from a parsed dataset (header only;
a note has no pixel data) as a small JSON text that travels in the staged row to the merge
(:mod:`pacs.intake.staged`), which records one ``rejection`` row per reference. Parse-light: used
by the header reader and by :mod:`pacs.admin.rejection` (``pacs reject --reason CODE``).
"""

from __future__ import annotations

import json
from typing import Any

from pacs.dicom.validation import is_valid_uid

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
"""Key Object Selection Document Storage."""

REJECTION_CODES: dict[str, str] = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
"""DCM code value → code meaning of the IOCM rejection titles."""


def _text(value: Any) -> str:
    return str(value or "").strip().rstrip("\x00").strip()


def note_references(ds: Any) -> str | None:
    """The rejection a KOS dataset ``ds`` makes, as JSON ``{"code", "meaning", "refs": [[study,
    series, sop], ...]}``; None when ``ds`` is not a rejection note (another SOP class, another
    title). References that are not valid UIDs are left out (they never reach the catalogue).
    """
    if _text(ds.get("SOPClassUID")) != KOS_SOP_CLASS:
        return None
    titles = ds.get("ConceptNameCodeSequence") or []
    if not titles:
        return None
    title = titles[0]
    code = _text(title.get("CodeValue"))
    if code not in REJECTION_CODES or _text(title.get("CodingSchemeDesignator")) != "DCM":
        return None
    refs: list[list[str]] = []
    for study_item in ds.get("CurrentRequestedProcedureEvidenceSequence") or []:
        study = _text(study_item.get("StudyInstanceUID"))
        for series_item in study_item.get("ReferencedSeriesSequence") or []:
            series = _text(series_item.get("SeriesInstanceUID"))
            for sop_item in series_item.get("ReferencedSOPSequence") or []:
                sop = _text(sop_item.get("ReferencedSOPInstanceUID"))
                if is_valid_uid(sop) and is_valid_uid(study) and is_valid_uid(series):
                    refs.append([study, series, sop])
    return json.dumps({"code": code, "meaning": REJECTION_CODES[code], "refs": refs}, separators=(",", ":"))
