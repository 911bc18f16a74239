"""What every DAG file shares, importable at parse time.

- :data:`POOL` — the catalogue writer's pool (one slot: one writer);
- :data:`CATALOGUE`, :data:`REPORT` — the Airflow Assets the DAGs produce and consume;
- :func:`default_args` — retries with backoff and the failure alert (:func:`pacs.alerts.on_failure`),
  the same for every DAG;
- :func:`task` — Airflow's ``@task`` whose terminal errors (:mod:`pacs.errors`) fail the task at
  once instead of being retried: a configuration mistake or a recall of an unknown study fails
  in seconds with its one-line message;
- :func:`run_moment` / :func:`decision_date` — the moment a run decides at: its logical date,
  never "now" (asset-triggered runs have only ``run_after``).

The DAG files import this module at the top and nothing else of the package: it imports only
the standard library, Airflow's SDK, :mod:`pacs.errors` and :mod:`pacs.alerts`, so parsing a
DAG loads none of duckdb, pyarrow, pydicom, numpy, pandas or matplotlib (a test imports each
DAG file in a fresh interpreter and checks ``sys.modules``). The heavy modules are imported
inside the tasks.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from airflow.sdk import Asset
from airflow.sdk import task as airflow_task

from pacs.alerts import on_failure
from pacs.errors import RunDateError, is_terminal

POOL = "pacs_catalogue"
"""The Airflow pool of one slot that every task writing the catalogue runs in (one writer)."""

CATALOGUE = Asset(name="pacs_catalogue", uri="pacs://catalogue")
"""Updated by ``pacs_ingest`` (and the lifecycle DAGs) after each catalogue commit."""

REPORT = Asset(name="pacs_capacity_report", uri="pacs://reports/capacity")
"""Updated by ``pacs_capacity_report`` after each report."""


def default_args(*, retries: int = 3, retry_delay: dt.timedelta = dt.timedelta(seconds=30),
                 max_retry_delay: dt.timedelta = dt.timedelta(minutes=10)) -> dict[str, Any]:
    """Every DAG's ``default_args``: retries with exponential backoff, and the failure alert."""
    return {
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": max_retry_delay,
        "on_failure_callback": on_failure,
    }


def _fail_terminal(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_terminal(exc):
                raise
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc
    return run


def task(fn: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """``@task`` / ``@task(pool=..., ...)``: Airflow's task, failing at once on a terminal error."""
    if fn is not None:
        return airflow_task(**kwargs)(_fail_terminal(fn))
    return lambda f: airflow_task(**kwargs)(_fail_terminal(f))


task.skip_if = airflow_task.skip_if  # type: ignore[attr-defined]  # @task.skip_if(condition) above @task(...)
task.run_if = airflow_task.run_if  # type: ignore[attr-defined]


def run_moment(logical_date: dt.datetime | None, run_after: dt.datetime | None) -> dt.datetime:
    """The run's logical date, else its ``run_after``, in UTC."""
    moment = logical_date or run_after
    if moment is None:
        raise RunDateError("the run has neither a logical date nor run_after")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def decision_date(logical_date: dt.datetime | None, dag_run: Any) -> dt.datetime:
    """:func:`run_moment` of a task's ``logical_date`` and ``dag_run`` (its ``run_after``)."""
    return run_moment(logical_date, getattr(dag_run, "run_after", None))
