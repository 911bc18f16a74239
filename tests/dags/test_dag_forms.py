"""What a user meets in Airflow's UI: a one-line description, a trigger form without false
"required" marks, and the same default args (retries, the failure alert) on every task.

Airflow 3.3's trigger form marks a param required when its schema has a ``type`` that does not
allow null (``!!schema.type && (!Array.isArray(schema.type) || !schema.type.includes("null"))``
in the UI's FlexibleForm); every param of these DAGs is optional, so each must allow null.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import ROOT

DAGS = {"pacs_ingest", "pacs_lifecycle", "pacs_recall", "pacs_fixity", "pacs_capacity_report", "pacs_admin",
        "pacs_purge", "pacs_backup", "pacs_export"}


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    assert set(bag.dag_ids) >= DAGS
    return {d: bag.dags[d] for d in DAGS}


def _required_in_trigger_form(schema: dict[str, Any]) -> bool:
    """The UI's rule (Airflow 3.3 FlexibleForm), restated."""
    kind = schema.get("type")
    return bool(kind) and (not isinstance(kind, list) or "null" not in kind)


def test_every_dag_has_a_one_line_description(dags: dict[str, Any]) -> None:
    for dag_id, dag in dags.items():
        text = dag.description or ""
        assert text.strip() and "\n" not in text and len(text) <= 120, f"{dag_id}: description {text!r}"


def test_no_optional_param_is_marked_required_in_the_trigger_form(dags: dict[str, Any]) -> None:
    seen = 0
    for dag_id, dag in dags.items():
        for name in dag.params:
            param = dag.params.get_param(name)
            schema = param.serialize()["schema"]  # what the REST API hands the form
            assert not _required_in_trigger_form(schema), f"{dag_id}.{name} is marked required: {schema}"
            param.resolve(param.value)  # its default still validates ...
            param.resolve(None)  # ... and so does an emptied field
            seen += 1
    assert seen >= 7  # ingest 2, lifecycle 1, recall 4


def test_a_param_that_does_not_allow_null_would_be_marked_required() -> None:
    assert _required_in_trigger_form({"type": "array"}) and _required_in_trigger_form({"type": ["array"]})
    assert not _required_in_trigger_form({"type": ["null", "array"]}) and not _required_in_trigger_form({})


def test_every_task_of_every_dag_has_the_shared_default_args_and_the_failure_alert(dags: dict[str, Any]) -> None:
    from pacs.alerts import on_failure
    from pacs.dagkit import default_args

    shared = set(default_args())
    for dag_id, dag in dags.items():
        assert set(dag.default_args) == shared, f"{dag_id} does not use pacs.dagkit.default_args"
        assert dag.default_args["on_failure_callback"] is on_failure
        for t in dag.tasks:
            callbacks = t.on_failure_callback if isinstance(t.on_failure_callback, list) else [t.on_failure_callback]
            assert on_failure in callbacks, f"{dag_id}.{t.task_id} sends no failure alert"
            assert t.retries == dag.default_args["retries"] and t.retry_exponential_backoff, f"{dag_id}.{t.task_id}"
    assert "approve" in dags["pacs_lifecycle"].task_dict  # the approval operator gets them too
