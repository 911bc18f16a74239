"""The moment an Airflow run decides at: its logical date, never "now".

Asset-triggered (and some manual) runs of Airflow 3 have no logical date; they have
``run_after``, the moment the run was due. Every DAG of the archive takes its decisions at
:func:`run_moment` of its run.
"""

from __future__ import annotations

import datetime as dt


class RunDateError(ValueError):
    """A run with neither a logical date nor ``run_after``."""


def run_moment(logical_date: dt.datetime | None, run_after: dt.datetime | None) -> dt.datetime:
    """The run's logical date, else its ``run_after``, in UTC."""
    moment = logical_date or run_after
    if moment is None:
        raise RunDateError("the run has neither a logical date nor run_after")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
