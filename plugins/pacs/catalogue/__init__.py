"""The DuckDB catalogue: Patient → Study → Series → Image, with quarantine and the ingest audit.

- :mod:`pacs.catalogue.db`        connections (one writer, lock-aware), transactions, the schema
- :mod:`pacs.catalogue.sql`       named SQL from ``include/sql``
- :mod:`pacs.catalogue.merge`     decide → record placements → apply, for the ingest merge
- :mod:`pacs.catalogue.snapshot`  the Parquet snapshot: read consistently, one refresh's state
- :mod:`pacs.catalogue.snapshot_refresh`  its refresh: new immutable files for what changed, manifest last
- :mod:`pacs.catalogue.checks`    ``summary`` and the invariant ``check``

The names most callers need are importable from here.
"""

from pacs.catalogue.db import connect, ensure_schema, opened, run, run_all, set_memory_limit, transaction
from pacs.catalogue.merge import MergeResult, Outcome, merged_batches, outcomes_from_catalogue
from pacs.catalogue.snapshot import SNAPSHOT_MANIFEST, refresh, refresh_snapshot, with_snapshot, write_query
from pacs.errors import CatalogueBusyError

__all__ = ["SNAPSHOT_MANIFEST", "CatalogueBusyError", "MergeResult", "Outcome", "connect", "ensure_schema",
           "merged_batches", "opened", "outcomes_from_catalogue", "refresh", "refresh_snapshot", "run", "run_all",
           "set_memory_limit", "transaction", "with_snapshot", "write_query"]
