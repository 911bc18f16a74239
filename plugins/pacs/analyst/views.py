"""The analysts' views over the catalogue (``include/sql/views.sql``), and the de-identified ones."""

from __future__ import annotations

import duckdb

from pacs import catalogue
from pacs.analyst.deid import register_pseudonym

ANALYST_VIEWS = ("study_patient", "daily_volume", "modality_mix", "study_tier_status", "study_tier_bytes",
                 "accepted_study", "accepted_series", "accepted_image", "dose_per_study", "ct_dose_by_protocol",
                 "ct_acquisition_by_protocol", "accepted_dose_event", "departmental_invalid_values")


def add_views(con: duckdb.DuckDBPyConnection, *, key: bytes | None = None) -> None:
    """The analysts' views, and the de-identified ones when a pseudonym key is given."""
    catalogue.run(con, "views")
    if key is not None:
        register_pseudonym(con, key)
        catalogue.run(con, "views_deid")
