"""What every DAG file shares, importable at parse time: the catalogue writer's pool.

The DAG files import this module (and :mod:`pacs.assets`, :mod:`pacs.alerts`,
:mod:`pacs.runs`) at the top and nothing else of the package: it imports only the standard
library, so parsing a DAG loads none of duckdb, pyarrow, pydicom, numpy, pandas or matplotlib
(a test imports each DAG file in a fresh interpreter and checks ``sys.modules``). The heavy
modules are imported inside the tasks.
"""

from __future__ import annotations

POOL = "pacs_catalogue"
"""The Airflow pool of one slot that every task writing the catalogue runs in (one writer)."""
