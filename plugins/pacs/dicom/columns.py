"""The catalogue's header columns: one table from which everything else follows.

Each :class:`Column` names a DICOM keyword, its snake_case catalogue column, how the header
reader coerces it (``kind``), its Arrow type and the catalogue table it describes. The header reader's field map
(:data:`HEADER_FIELDS`), the staged rows' header schema (:data:`HEADER_SCHEMA`) and the list
of columns a header yields (:data:`HEADER_COLUMNS`) are derived from :data:`COLUMNS`, so a
column is added in one place; a test holds the catalogue's DDL (``include/sql/schema.sql``)
and the merge's upserts (``merge_apply.sql``) to the same table.

Kinds: ``str`` (text, stripped), ``pn`` (a person name, as text), ``int`` (an integer;
non-integers are ``invalid_value`` unless the column is lenient) and ``raw`` (UIDs and dates,
kept as text and validated by :mod:`pacs.dicom.validation`).
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa


class Column(NamedTuple):
    keyword: str       # the DICOM keyword
    name: str          # the catalogue column (snake_case of the keyword)
    kind: str          # how the header reader coerces it
    arrow: pa.DataType  # its type in staged rows and the catalogue
    table: str         # the catalogue table it describes (patient, study, series or image)


_S, _D, _I = pa.string(), pa.date32(), pa.int32()

COLUMNS: tuple[Column, ...] = (
    Column("PatientID", "patient_id", "str", _S, "patient"),
    Column("IssuerOfPatientID", "issuer_of_patient_id", "str", _S, "patient"),
    Column("PatientName", "patient_name", "pn", _S, "patient"),
    Column("PatientBirthDate", "patient_birth_date", "raw", _D, "patient"),
    Column("PatientSex", "patient_sex", "str", _S, "patient"),
    Column("PatientAge", "patient_age", "str", _S, "study"),
    Column("StudyInstanceUID", "study_instance_uid", "raw", _S, "study"),
    Column("StudyDate", "study_date", "raw", _D, "study"),
    Column("StudyTime", "study_time", "str", _S, "study"),
    Column("AccessionNumber", "accession_number", "str", _S, "study"),
    Column("StudyID", "study_id", "str", _S, "study"),
    Column("StudyDescription", "study_description", "str", _S, "study"),
    Column("ReferringPhysicianName", "referring_physician_name", "pn", _S, "study"),
    Column("InstitutionName", "institution_name", "str", _S, "study"),
    Column("SeriesInstanceUID", "series_instance_uid", "raw", _S, "series"),
    Column("Modality", "modality", "str", _S, "series"),
    Column("SeriesNumber", "series_number", "int", _I, "series"),
    Column("SeriesDescription", "series_description", "str", _S, "series"),
    Column("SeriesDate", "series_date", "raw", _D, "series"),
    Column("BodyPartExamined", "body_part_examined", "str", _S, "series"),
    Column("Manufacturer", "manufacturer", "str", _S, "series"),
    Column("ManufacturerModelName", "manufacturer_model_name", "str", _S, "series"),
    Column("StationName", "station_name", "str", _S, "series"),
    Column("SOPInstanceUID", "sop_instance_uid", "raw", _S, "image"),
    Column("SOPClassUID", "sop_class_uid", "raw", _S, "image"),
    Column("InstanceNumber", "instance_number", "int", _I, "image"),
    Column("ContentDate", "content_date", "raw", _D, "image"),
    Column("Rows", "rows", "int", _I, "image"),
    Column("Columns", "columns", "int", _I, "image"),
    Column("NumberOfFrames", "number_of_frames", "int", _I, "image"),
    Column("BitsAllocated", "bits_allocated", "int", _I, "image"),
)

HEADER_FIELDS: dict[str, tuple[str, str]] = {c.keyword: (c.name, c.kind) for c in COLUMNS}
"""keyword -> (column, kind), for the header reader."""

HEADER_SCHEMA: list[tuple[str, pa.DataType]] = [*((c.name, c.arrow) for c in COLUMNS),
                                                ("transfer_syntax_uid", _S)]
"""The header columns a staged row carries, with their Arrow types."""

STAGED_HEADER_COLUMNS: tuple[str, ...] = tuple(name for name, _ in HEADER_SCHEMA)

DEPARTMENTAL_COLUMNS: tuple[str, ...] = ("acquisition", "dose_report")
"""The departmental values a header yields, as JSON texts a staged row carries to the merge
(:mod:`pacs.dicom.acquisition`, :mod:`pacs.dicom.dose_sr`; ``include/sql/merge_departmental.sql``)."""

HEADER_COLUMNS: tuple[str, ...] = (*STAGED_HEADER_COLUMNS, "has_pixel_data", "rejection_note", *DEPARTMENTAL_COLUMNS)
"""Every key a parsed header has (``rejection_note``: what a KOS rejection note rejects, as JSON,
else None; see :mod:`pacs.dicom.rejection_note`; ``acquisition`` and ``dose_report``: the
departmental values, else None)."""

LENIENT_INT_COLUMNS = frozenset({"series_number", "instance_number", "number_of_frames"})
"""Optional integer columns: a value that is not an integer at all is catalogued as None."""

PHI_KEYWORDS = frozenset({"PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "AccessionNumber"})
"""Keywords whose values never appear in a detail (nor does any PN element's)."""
