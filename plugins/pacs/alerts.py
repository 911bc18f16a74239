"""Failure alerts for the archive's DAGs (Airflow ``on_failure_callback``).

An alert is logged at ERROR, written as JSON under the reports location
(``alerts/<YYYY-MM-DD>/<dag>.<task>.<run>.json``, for dashboards and audits), and, when
``PACS_ALERT_WEBHOOK`` is set, POSTed there (a chat or incident webhook). Alerts carry the
DAG, task, run and the error message — the archive's messages never contain patient data.
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
    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "try_number": getattr(ti, "try_number", None),
        "error": f"{type(exc).__name__}: {exc}" if exc is not None else "task failed",
        "at": dt.datetime.now(dt.UTC).isoformat(),
    }


def on_failure(context: dict[str, Any]) -> None:
    """Airflow callback: log, record and (optionally) forward the failure. Never raises."""
    alert = build_alert(context)
    log.error("PACS ALERT %s.%s (%s): %s", alert["dag_id"], alert["task_id"], alert["run_id"], alert["error"])
    try:
        from pacs.config import load_config

        reports = load_config().reports
        name = re.sub(r"[^0-9A-Za-z_.-]", "_", f"{alert['dag_id']}.{alert['task_id']}.{alert['run_id']}") + ".json"
        key = f"alerts/{alert['at'][:10]}/{name}"
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
