"""What every DAG file shares, importable at parse time.

- :data:`POOL` — the catalogue writer's pool (one slot: one writer), and :data:`CATALOGUE_QUEUE`,
  the Celery queue of every task that opens the catalogue (only workers that can reach the
  DuckDB file consume it);
- :data:`CATALOGUE`, :data:`REPORT` — the Airflow Assets the DAGs produce and consume;
- :func:`default_args` — retries with backoff and the failure alert (:func:`pacs.alerts.on_failure`),
  the same for every DAG;
- :func:`task` — Airflow's ``@task`` whose terminal errors (:mod:`pacs.errors`) fail the task at
  once instead of being retried: a configuration mistake or a recall of an unknown study fails
  in seconds with its one-line message;
- :func:`run_moment` / :func:`decision_date` — the moment a run decides at: its logical date,
  never "now" (asset-triggered runs have only ``run_after``);
- :func:`queued_deadline` / :func:`daily_deadline` — Airflow Deadline Alerts (a run not finished
  in time), configured from the environment and sent through :func:`pacs.alerts.on_deadline_missed`;
- :class:`PlanApproval` — the human approval of a lifecycle plan (policy ``approve_plan``).

Importing it also makes ``dag.test()`` / ``airflow dags test`` run our DAGs without their
deadline alerts (:func:`_test_without_pacs_deadlines`: a workaround of an Airflow 3.3.2 bug).

The DAG files import this module at the top and nothing else of the package: it imports only
the standard library, Airflow's SDK and standard provider, :mod:`pacs.errors` and
:mod:`pacs.alerts`, so parsing a DAG loads none of duckdb, pyarrow, pydicom, numpy, pandas or
matplotlib (a test imports each DAG file in a fresh interpreter and checks ``sys.modules``). The
heavy modules are imported inside the tasks.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable
from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator
from airflow.sdk import DAG, Asset, DeadlineAlert, DeadlineReference, SyncCallback
from airflow.sdk import task as airflow_task
from airflow.sdk.exceptions import AirflowSkipException

from pacs.alerts import on_deadline_missed, on_failure
from pacs.errors import ConfigError, RunDateError, is_terminal

POOL = "pacs_catalogue"
"""The Airflow pool of one slot that every task writing the catalogue runs in (one writer)."""

CATALOGUE_QUEUE = os.environ.get("PACS_CATALOGUE_QUEUE", "catalogue")
"""The Celery queue of every task that opens the catalogue (the tasks in :data:`POOL`).

Only workers on the machine that holds the DuckDB file consume it; every other task stays on
the default queue. LocalExecutor and ``airflow dags test`` ignore queues.
"""

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


# ── Deadline Alerts ───────────────────────────────────────────────────────────────────────────
def _env_number(name: str, default: float, *, lowest: float, highest: float | None = None) -> float | None:
    """A number from the environment; ``off`` gives None (no deadline). A bad value fails the DAG's parse."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() == "off":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value >= lowest and (highest is None or value <= highest)):
        bounds = f"from {lowest:g} to {highest:g}" if highest is not None else f"of at least {lowest:g}"
        raise ConfigError(f"{name}={raw!r}: expected a number {bounds}, or 'off'")
    return value


def _alert(reference: Any, interval: dt.timedelta, expected: str) -> DeadlineAlert:
    return DeadlineAlert(reference=reference, interval=interval, name=expected,
                         callback=SyncCallback(on_deadline_missed, kwargs={"expected": expected}))


def queued_deadline(env: str, *, default_minutes: float) -> DeadlineAlert | None:
    """Alert when a run is not finished ``$env`` minutes (default ``default_minutes``) after it was queued.

    ``$env=off`` gives no deadline. The alert goes through :func:`pacs.alerts.on_deadline_missed`.
    """
    minutes = _env_number(env, default_minutes, lowest=0.01)
    if minutes is None:
        return None
    return _alert(DeadlineReference.DAGRUN_QUEUED_AT, dt.timedelta(minutes=minutes),
                  f"finished within {minutes:g} minutes of being queued")


_DEADLINE_CALLBACK = f"{on_deadline_missed.__module__}.{on_deadline_missed.__qualname__}"


def _test_without_pacs_deadlines() -> None:
    """``dag.test()`` / ``airflow dags test`` run a pacs DAG without its Deadline Alerts.

    Airflow 3.3.2's ``DAG.test()`` crashes when a run of a DAG with a deadline succeeds
    (reproduced here: its in-memory scheduler DAG holds encoded alerts where
    ``DagRun.update_state`` expects their ids, and the run ends in ``'dict' object has no
    attribute 'hex'``; no upstream report was found, so check on upgrading Airflow). A test run
    has no scheduler to watch deadlines, so dropping ours for its duration loses nothing;
    scheduled and triggered runs keep them.
    Only alerts whose callback is :func:`pacs.alerts.on_deadline_missed` are dropped.
    """
    original = DAG.test
    if getattr(original, "pacs_without_deadlines", False):
        return

    @functools.wraps(original)
    def test(self: DAG, *args: Any, **kwargs: Any) -> Any:
        saved = list(self.deadline or [])
        kept = [a for a in saved if getattr(a.callback, "path", "") != _DEADLINE_CALLBACK]
        if len(kept) == len(saved):
            return original(self, *args, **kwargs)
        self.deadline = kept or None
        try:
            return original(self, *args, **kwargs)
        finally:
            self.deadline = saved

    test.pacs_without_deadlines = True  # type: ignore[attr-defined]
    DAG.test = test  # type: ignore[method-assign]


_test_without_pacs_deadlines()


def _daily_start(schedule: str) -> int | None:
    """Minutes after midnight a cron schedule fires at, when it fires at one time of day (``M H * * *``)."""
    fields = {"@daily": "0 0 * * *", "@midnight": "0 0 * * *"}.get(schedule.strip(), schedule).split()
    if len(fields) == 5 and fields[0].isdigit() and fields[1].isdigit():
        return int(fields[1]) * 60 + int(fields[0])
    return None


def daily_deadline(env: str, schedule: str, *, default_hour: float) -> DeadlineAlert | None:
    """Alert when a run is not finished by the hour ``$env`` (UTC, default ``default_hour``) of its day.

    The deadline is the run's logical date plus the time from the schedule's time of day to that
    hour (schedule ``0 2 * * *`` and hour 6: four hours, 06:00 UTC; ``30 22 * * *`` and 6: 07:30
    later, the next morning). A schedule without one time of day gets 24 hours. ``$env=off`` gives
    no deadline; a run without a logical date (triggered through the API without one) gets none.
    """
    hour = _env_number(env, default_hour, lowest=0, highest=23.99)
    if hour is None:
        return None
    start = _daily_start(schedule)
    if start is None:
        return _alert(DeadlineReference.DAGRUN_LOGICAL_DATE, dt.timedelta(hours=24),
                      "finished within 24 hours of its logical date")
    at = round(hour * 60)
    minutes = (at - start) % (24 * 60) or 24 * 60
    by = f"{at // 60:02d}:{at % 60:02d}"
    return _alert(DeadlineReference.DAGRUN_LOGICAL_DATE, dt.timedelta(minutes=minutes),
                  f"done by {by} UTC ({minutes / 60:g} h after its scheduled start)")


# ── Approval of a lifecycle plan ──────────────────────────────────────────────────────────────
def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def plan_message(planned: dict[str, Any]) -> tuple[str, str]:
    """The subject and Markdown body that show a lifecycle plan to its approver (counts only, no PHI)."""
    subject = (f"Lifecycle plan for {planned.get('logical_date')}: {planned.get('studies', 0)} studies, "
               f"{_size(int(planned.get('bytes', 0)))} — approve?")
    rows = "\n".join(f"| {rule} | {v['studies']} | {v['images']} | {_size(int(v['bytes']))} |"
                     for rule, v in sorted((planned.get("by_rule") or {}).items()))
    body = (f"Plan `{planned.get('plan_id')}` at the run's date {planned.get('logical_date')}: "
            f"**{planned.get('studies', 0)} studies, {planned.get('images', 0)} images, "
            f"{_size(int(planned.get('bytes', 0)))}**.\n\n"
            "| rule | studies | images | bytes |\n| --- | --- | --- | --- |\n"
            f"{rows}\n\n"
            "`archive_copy` studies only get their permanent offline copy; every other rule moves the "
            "study offline and deletes its online copy once the offline one is verified.\n\n"
            f"The plan, study by study: `{planned.get('plan_file')}` (and the `lifecycle_plan` table).\n\n"
            f"**{PlanApproval.APPROVE}**: migrate and switch run. **{PlanApproval.REJECT}**: nothing is "
            "copied, switched or deleted; the plan is recorded as rejected.")
    return subject, body


def purge_message(planned: dict[str, Any]) -> tuple[str, str]:
    """The subject and Markdown body that show a purge plan to its approver (counts only, no PHI)."""
    subject = (f"Purge plan {planned.get('plan_id')}: delete {planned.get('instances', 0)} instances, "
               f"{_size(int(planned.get('bytes') or 0))}, from both tiers — approve?")
    rows = "\n".join(f"| {why} | {v['instances']} | {_size(int(v['bytes']))} |"
                     for why, v in sorted((planned.get("by_why") or {}).items()))
    body = (f"Plan `{planned.get('plan_id')}`: **{planned.get('instances', 0)} instances, "
            f"{_size(int(planned.get('bytes') or 0))}** to delete from the online and offline tiers "
            "(packed series are rewritten without them).\n\n"
            "| why | instances | bytes |\n| --- | --- | --- |\n"
            f"{rows}\n\n"
            f"Refused (kept): {planned.get('refused_held', 0)} held, {planned.get('refused_pinned', 0)} pinned, "
            f"{planned.get('refused_busy', 0)} migrating. Instance by instance: table `purge_plan`.\n\n"
            f"**{PlanApproval.APPROVE}**: the instances are deleted, with an audit row per copy. "
            f"**{PlanApproval.REJECT}**: nothing is deleted; the plan is recorded as rejected.")
    return subject, body


class PlanApproval(HITLBranchOperator):
    """Waits for a person to approve the lifecycle plan before anything moves (policy ``approve_plan``).

    The plan task's result says whether to ask (``needs_approval``: the policy asks, it is not a
    dry run and the plan is not empty). When it does not ask, this task is skipped and the run
    goes on as without it. Otherwise the plan's summary (studies, bytes, rules) is shown in the
    Required Actions page, and the answer — in the UI or through the REST API
    (``PATCH /api/v2/dags/<dag>/dagRuns/<run>/taskInstances/<task>/-1/hitlDetails`` with
    ``{"chosen_options": ["Approve"]}`` or ``["Reject"]``) — follows ``approve_to`` or ``reject_to``;
    the other branch is skipped. A waiting task holds no pool slot and no worker.
    """

    APPROVE = "Approve"
    REJECT = "Reject"

    def __init__(self, *, plan_task_id: str, approve_to: str, reject_to: str,
                 message: Callable[[dict[str, Any]], tuple[str, str]] = plan_message, **kwargs: Any) -> None:
        super().__init__(subject="Approve the plan", options=[self.APPROVE, self.REJECT],
                         options_mapping={self.APPROVE: approve_to, self.REJECT: reject_to}, **kwargs)
        self.plan_task_id = plan_task_id
        self.message = message

    def execute(self, context: Any) -> Any:
        planned = context["ti"].xcom_pull(task_ids=self.plan_task_id) or {}
        if not planned.get("needs_approval"):
            raise AirflowSkipException("no approval asked (policy approve_plan is off, a dry run, or an empty plan)")
        self.subject, self.body = self.message(planned)
        return super().execute(context)
