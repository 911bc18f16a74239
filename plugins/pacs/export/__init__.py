"""Cohort export: the archive's files for a selection of studies, series or instances.

:mod:`pacs.export.export` selects and copies (``pacs export``, the ``pacs_export`` DAG);
:mod:`pacs.export.deidentify` applies DICOM PS3.15's Basic Application Level Confidentiality
Profile to the exported copies.
"""
