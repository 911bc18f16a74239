"""The ingest merge in a process of its own (``pacs.intake.merge_step`` through ``pacs.isolate``, as
the ``merge`` task runs it): killed in the middle of its transaction, it is redone whole."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import query as _q

from pacs import isolate, synth
from pacs.intake import process_batch, sweep

# loaded by the step's interpreter at start-up: SIGKILL once the merge has applied its rows, before COMMIT
KILL_BEFORE_COMMIT = textwrap.dedent("""
    import os, signal
    if os.environ.get("PACS_TEST_KILL_MERGE"):
        from pacs.catalogue import merge
        applied = merge.apply
        def apply(*args, **kwargs):
            out = applied(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
            return out
        merge.apply = apply
""")


@pytest.fixture
def processed(archive: Callable[..., Any]) -> tuple[Any, list[str], int]:
    cfg = archive(ingest={"batch_size": 10, "workers": 1, "fsync": False})
    drop = synth.generate_archive(Path(cfg.landing[0].root) / "drop", seed=11, patients=3, start=dt.date(2024, 1, 1),
                                  end=dt.date(2025, 6, 30), count_scale=0.03, size_scale=0.03)
    ids = sweep(cfg, run_id="t")
    for b in ids:
        process_batch(cfg, b)
    return cfg, ids, drop.counts()["good"]


def test_merge_killed_in_its_process_is_redone_whole(processed: tuple[Any, list[str], int], tmp_path: Path) -> None:
    cfg, ids, good = processed
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_BEFORE_COMMIT)
    with pytest.raises(isolate.StepDiedError, match="signal 9"):
        isolate.run("pacs.intake:merge_step", env={"PYTHONPATH": str(hook), "PACS_TEST_KILL_MERGE": "1"},
                    config=str(cfg.path), batch_ids=ids, run_id="t")
    assert not cfg.duckdb.exists() or _q(cfg, "SELECT count(*) FROM image")[0][0] == 0  # nothing committed
    summary = isolate.run("pacs.intake:merge_step", config=str(cfg.path), batch_ids=ids, run_id="t")
    assert summary["catalogued"] == good > 0
    assert _q(cfg, "SELECT count(*), count(DISTINCT sop_instance_uid) FROM image")[0] == (good, good)
    assert summary["snapshot_files_written"] > 0
    assert [p for p in Path(cfg.landing[0].root).rglob("*") if p.is_file()] == []  # finalized
