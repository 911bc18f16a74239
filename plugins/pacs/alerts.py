"""Alerts of the archive's DAGs: a task that failed, a run that missed its deadline.

Two Airflow callbacks feed one path: :func:`on_failure` (every task's ``on_failure_callback``,
through :func:`pacs.dagkit.default_args`) and :func:`on_deadline_missed` (the DAGs' Deadline
Alerts, run by the executor as a ``SyncCallback`` when the scheduler finds a deadline passed).
An alert is logged at ERROR, written as JSON under the reports location
(``alerts/<YYYY-MM-DD>/<dag>.<task or "deadline">.<run>.json``, for dashboards and audits), and,
when ``PACS_ALERT_WEBHOOK`` is set, POSTed there (a chat or incident webhook). Alerts carry the
DAG, task, run, times and the error message — never a run's ``conf`` or any patient data (the
archive's messages never contain it).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import urllib.request
from typing import Any

log = logging.getLogger(__name__)


def build_alert(context: dict[str, Any]) -> dict[str, Any]:
    """The record of a failed task, from its Airflow context."""
    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    return {
        "kind": "task_failed",
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "try_number": getattr(ti, "try_number", None),
        "error": f"{type(exc).__name__}: {exc}" if exc is not None else "task failed",
        "at": dt.datetime.now(dt.UTC).isoformat(),
    }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def build_deadline_alert(context: dict[str, Any] | None, expected: str) -> dict[str, Any]:
    """The record of a missed deadline, from the context Airflow gives a deadline callback.

    That context is ``{"dag_run": <the run as the REST API shows it>, "deadline": {"id", "deadline_time"}}``;
    only identifiers and times are taken from it (not the run's ``conf``).
    """
    run = (context or {}).get("dag_run") or {}
    deadline = (context or {}).get("deadline") or {}
    when = _text(deadline.get("deadline_time"))
    return {
        "kind": "deadline_missed",
        "dag_id": run.get("dag_id"),
        "task_id": None,
        "run_id": run.get("dag_run_id") or run.get("run_id"),
        "logical_date": _text(run.get("logical_date")),
        "queued_at": _text(run.get("queued_at")),
        "deadline": when,
        "error": f"deadline missed: the run was not {expected} (deadline {when})",
        "at": dt.datetime.now(dt.UTC).isoformat(),
    }


def publish(alert: dict[str, Any]) -> None:
    """Log, record and (optionally) forward one alert. Never raises: an alert must not fail its caller."""
    log.error("PACS ALERT %s.%s (%s): %s", alert["dag_id"], alert["task_id"] or "deadline", alert["run_id"],
              alert["error"])
    try:
        from pacs.config import load_config

        reports = load_config().reports
        name = f"{alert['dag_id']}.{alert['task_id'] or 'deadline'}.{alert['run_id']}"
        key = f"alerts/{alert['at'][:10]}/{re.sub(r'[^0-9A-Za-z_.-]', '_', name)}.json"
        from pacs import store

        store.put(reports, reports.path(key), json.dumps(alert, indent=1).encode())
    except Exception:
        log.exception("could not record the alert")
    url = os.environ.get("PACS_ALERT_WEBHOOK")
    if url and url.startswith(("https://", "http://")):
        try:
            req = urllib.request.Request(url, data=json.dumps(alert).encode(), method="POST",  # noqa: S310
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10)  # noqa: S310 - operator-configured http(s) URL
        except Exception:
            log.exception("could not POST the alert to PACS_ALERT_WEBHOOK")


def on_failure(context: dict[str, Any]) -> None:
    """Airflow ``on_failure_callback``: publish the failure. Never raises."""
    publish(build_alert(context))


def on_deadline_missed(context: dict[str, Any] | None = None, *, expected: str = "finished in time") -> None:
    """Airflow Deadline Alert callback (``SyncCallback``): publish the missed deadline. Never raises.

    The executor calls it with the callback's kwargs (``expected``: what the run should have
    been, e.g. "finished within 60 minutes of being queued") and ``context``.
    """
    publish(build_deadline_alert(context, expected))
