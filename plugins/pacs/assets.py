"""The Airflow Assets the archive's DAGs produce and consume."""

from __future__ import annotations

from airflow.sdk import Asset

CATALOGUE = Asset(name="pacs_catalogue", uri="pacs://catalogue")
"""Updated by ``pacs_ingest`` (and the lifecycle DAGs) after each catalogue commit."""

REPORT = Asset(name="pacs_capacity_report", uri="pacs://reports/capacity")
"""Updated by ``pacs_capacity_report`` after each report."""
