"""Run ``pacs_ingest`` once with ``dag.test()`` in this process, after warming Airflow's
in-process execution API (the FastAPI app, its lifespan and its first request, which
``airflow dags test`` otherwise pays lazily inside the DAG run, on its first task — a scheduler
deployment has its API server running already).

Helper of ``bench/ingest_rate.py`` and ``bench/backlog_rss.py``; run it with the environment of
an Airflow home (``AIRFLOW_HOME``, dags/plugins folders, ``PACS_CONFIG``). Prints one JSON line:
the warm-up time, the ``dag.test()`` wall time and the returned DagRun's recorded duration.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))


def main() -> int:
    t_start = time.perf_counter()
    from airflow.sdk.execution_time.supervisor import in_process_api_server
    from airflow.utils.cli import get_bagged_dag

    dag = get_bagged_dag(bundle_names=None, dag_id="pacs_ingest")
    t_loaded = time.perf_counter()
    api = in_process_api_server()
    api.app  # noqa: B018 - builds the cached FastAPI app before the run
    t_app = time.perf_counter()
    # Building the app is not enough: its lifespan starts with the transport, and the first
    # request through it takes seconds more (lazy per-version routing); one GET warms both.
    import httpx

    with httpx.Client(transport=api.transport, base_url="http://in-process.invalid./") as client:
        status = client.get("/health").status_code
    t_warm = time.perf_counter()
    dr = dag.test()
    t_done = time.perf_counter()
    duration = (dr.end_date - dr.start_date).total_seconds() if dr.start_date and dr.end_date else None
    print(json.dumps({
        "state": str(dr.state), "run_id": dr.run_id,
        "import_and_parse_s": round(t_loaded - t_start, 3), "warm_api_s": round(t_warm - t_loaded, 3),
        "warm_app_s": round(t_app - t_loaded, 3), "warm_first_request_s": round(t_warm - t_app, 3),
        "warm_request_status": status,
        "dag_test_wall_s": round(t_done - t_warm, 3), "dag_run_duration_s": duration,
        "start_date": dr.start_date.isoformat() if dr.start_date else None,
        "end_date": dr.end_date.isoformat() if dr.end_date else None,
    }))
    return 0 if str(dr.state).endswith("success") else 1


if __name__ == "__main__":
    raise SystemExit(main())
