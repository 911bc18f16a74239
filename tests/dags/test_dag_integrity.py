"""DAG integrity: every DAG imports cleanly and carries what the team relies on in the UI."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"pacs_ingest", "pacs_lifecycle", "pacs_recall", "pacs_fixity", "pacs_capacity_report", "pacs_admin",
            "pacs_purge", "pacs_backup", "pacs_export"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_expected_dags_present(dagbag) -> None:
    assert set(dagbag.dag_ids) >= EXPECTED


def test_every_dag_has_tags_retries_docs(dagbag) -> None:
    from pacs.alerts import on_failure

    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert "pacs" in dag.tags, f"{dag_id} lacks the 'pacs' tag"
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} has no real doc_md"
        assert dag.catchup is False, f"{dag_id} catches up"
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"
            assert t.retry_exponential_backoff, f"{dag_id}.{t.task_id} retries without backoff"
            callbacks = t.on_failure_callback if isinstance(t.on_failure_callback, list) else [t.on_failure_callback]
            assert on_failure in callbacks, f"{dag_id}.{t.task_id} sends no failure alert"


def test_catalogue_writers_use_the_single_slot_pool(dagbag) -> None:
    """Only tasks in the pacs_catalogue pool may write DuckDB (one slot: one writer at a time)."""
    writers = {
        "pacs_ingest": {"resubmit", "merge"},
        "pacs_lifecycle": {"plan", "switch", "discard"},  # discard: records a plan its approver rejected
        "pacs_recall": {"recall"},
        "pacs_fixity": {"plan", "record"},
        "pacs_admin": {"correct"},
        "pacs_purge": {"plan", "purge", "discard"},
        "pacs_export": {"select"},  # reads the catalogue once; the copy runs anywhere
        "pacs_backup": {"backup"},  # holds the catalogue's lock while it copies the file
    }
    for dag_id, tasks in writers.items():
        pools = {t.task_id: t.pool for t in dagbag.dags[dag_id].tasks}
        in_pool = {t for t, p in pools.items() if p == "pacs_catalogue"}
        assert in_pool == tasks, f"{dag_id}: catalogue writers {in_pool} != {tasks}"


def test_ingest_schedule_and_concurrency(dagbag) -> None:
    ingest = dagbag.dags["pacs_ingest"]
    assert ingest.max_active_runs == 1
    assert ingest.timetable.expression == "*/15 * * * *"
    assert set(ingest.params.keys()) >= {"resubmit_reasons", "resubmit_ids"}


def test_dag_files_are_thin(project_root: Path) -> None:
    """No heavy imports at module level: pacs logic is imported inside tasks."""
    for f in (project_root / "dags").glob("*.py"):
        text = f.read_text()
        head = text.split("@dag", 1)[0]
        for heavy in ("import duckdb", "import pydicom", "import pandas", "import pyarrow", "import s3fs"):
            assert heavy not in head, f"{f.name} imports {heavy.split()[-1]} at import time"


HEAVY = ("duckdb", "pyarrow", "pydicom", "numpy", "pandas", "matplotlib")
_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (ROOT / "dags").glob("*.py")))
def test_each_dag_file_parses_without_the_data_stack(dag_file: str) -> None:
    """Importing a DAG file in a fresh interpreter loads none of the heavy data libraries."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), str(ROOT / "dags" / dag_file)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_airflow_plugin_loader_executes_no_module_of_the_package() -> None:
    """plugins/ holds the package, not plugins: Airflow's loader must not run its modules."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory\n"
        "plugins, errors = _load_plugins_from_plugin_directory(sys.argv[1])\n"
        "names = ('config', 'storage', 'ingest', 'catalogue', 'synth', 'dicom', *sys.argv[2:])\n"
        "print(json.dumps({'loaded': sorted(m for m in names if m in sys.modules), 'errors': list(errors)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "plugins"), *HEAVY], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"loaded": [], "errors": []}
