"""DICOM: the catalogue's header columns, the header reader, validation and tier paths.

- :mod:`pacs.dicom.columns`     the one column table (keyword, column, kind, Arrow type)
- :mod:`pacs.dicom.header`      header reading with pydicom (header only, never pixel data)
- :mod:`pacs.dicom.values`      element values coerced to their column's type
- :mod:`pacs.dicom.validation`  reason codes and the rules that produce them
- :mod:`pacs.dicom.layout`      deterministic tier paths built from validated UIDs only
- :mod:`pacs.dicom.rejection_note`  the IOCM rejection codes and what a KOS rejection note rejects
- :mod:`pacs.dicom.acquisition`  acquisition parameters per modality, from the parsed header
- :mod:`pacs.dicom.dose_sr`  the irradiation events and totals of a Radiation Dose SR
"""

from pacs.dicom.header import (
    HeaderError,
    InvalidValueError,
    NotDicomError,
    UnreadableError,
    parse_header,
    read_header,
    read_header_bytes,
)

__all__ = ["HeaderError", "InvalidValueError", "NotDicomError", "UnreadableError", "parse_header",
           "read_header", "read_header_bytes"]
