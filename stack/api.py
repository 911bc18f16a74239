"""A small client of Airflow 3's public REST API (``/api/v2``), as an operator's script would use it.

Authentication is the simple auth manager's: ``POST /auth/token`` with a user name and password
gives a JWT, sent as ``Authorization: Bearer``; a 401 (an expired token) fetches a new one once.
Only the standard library: the stack test must not depend on the client being in the venv.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TERMINAL_RUN_STATES = {"success", "failed"}
DONE_TI_STATES = {"success", "skipped"}


class ApiError(RuntimeError):
    """An HTTP error of the API: the method, the path, the status and the body's detail."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {detail[:500]}")
        self.status = status


class Airflow:
    """The REST API of the api-server at ``base`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base, self.username, self.password = base.rstrip("/"), username, password
        self._token: str | None = None

    # ── transport ────────────────────────────────────────────────────────────────────────────
    def token(self) -> str:
        body = json.dumps({"username": self.username, "password": self.password}).encode()
        req = urllib.request.Request(f"{self.base}/auth/token", data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310  (our own 127.0.0.1 api-server)
            self._token = json.loads(resp.read())["access_token"]
        return self._token

    def request(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                timeout: float = 60.0) -> Any:
        url = f"{self.base}/api/v2{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._token or self.token()}", "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                    raw = resp.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")
                if exc.code == 401 and attempt == 1:
                    self._token = None
                    continue
                raise ApiError(method, path, exc.code, detail) from exc
        raise AssertionError("unreachable")

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)

    # ── what the stack test asks ─────────────────────────────────────────────────────────────
    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}/api/v2/monitor/health", timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read())

    def dag_ids(self, prefix: str) -> set[str]:
        data = self.get("/dags", dag_id_pattern=prefix, limit=100)
        return {d["dag_id"] for d in data["dags"]}

    def import_errors(self) -> list[dict[str, Any]]:
        return self.get("/importErrors", limit=100)["import_errors"]

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", {"is_paused": False}, query={"update_mask": "is_paused"})

    def trigger(self, dag_id: str, run_id: str, *, logical_date: str, conf: dict[str, Any] | None = None) -> str:
        body = {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf or {}}
        return self.request("POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.get(f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances",
                            limit=100, offset=len(out))
            out.extend(page["task_instances"])
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def tries(self, ti: dict[str, Any]) -> list[dict[str, Any]]:
        """Every try of a task instance (hostname, queue, state of each)."""
        path = (f"/dags/{ti['dag_id']}/dagRuns/{urllib.parse.quote(ti['dag_run_id'], safe='')}/taskInstances/"
                f"{ti['task_id']}/{ti['map_index']}/tries")
        return self.get(path)["task_instances"]

    def log_lines(self, ti: dict[str, Any], lines: int = 40) -> list[str]:
        """The last ``lines`` events of a task instance's latest try, as text."""
        path = (f"/dags/{ti['dag_id']}/dagRuns/{urllib.parse.quote(ti['dag_run_id'], safe='')}/taskInstances/"
                f"{ti['task_id']}/logs/{max(ti['try_number'], 1)}")
        data = self.get(path, map_index=ti["map_index"], full_content="true")
        content = data.get("content") or []
        out = []
        for item in content:
            if isinstance(item, dict):
                text = " ".join(str(item.get(k, "")) for k in ("timestamp", "level", "event") if item.get(k))
                if item.get("error_detail"):
                    text += " " + json.dumps(item["error_detail"])[:2000]
                out.append(text)
            else:
                out.append(str(item))
        return out[-lines:]

    def hitl_details(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The human-in-the-loop tasks (approvals) of one DAG run, answered or not."""
        return self.get(f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/hitlDetails")["hitl_details"]

    def answer_hitl(self, dag_id: str, run_id: str, task_id: str, map_index: int, option: str) -> dict[str, Any]:
        path = (f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/"
                f"{map_index}/hitlDetails")
        return self.request("PATCH", path, {"chosen_options": [option], "params_input": {}})


def wait_for_run(api: Airflow, dag_id: str, run_id: str, *, timeout: float, alive: Any = None,
                 every: float = 2.0) -> str:
    """Poll a DAG run until it succeeds or fails; its final state, or why it did not end in ``timeout``."""
    t0 = time.monotonic()
    state = "unknown"
    while time.monotonic() - t0 < timeout:
        if alive is not None:
            alive()
        state = api.run_state(dag_id, run_id)
        if state in TERMINAL_RUN_STATES:
            return state
        if state == "queued" and time.monotonic() - t0 > min(timeout, 120):
            return "still queued after 120s (not started by the scheduler: see logs/scheduler.log)"
        time.sleep(every)
    return f"not finished after {timeout:.0f}s (state {state})"
