"""The journal: one object for every workflow's runs, typed steps, run ids, leases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from pacs import journal
from pacs.errors import UnsafePathError
from pacs.store import Location


@pytest.fixture
def work(tmp_path: Path) -> Location:
    return Location.at("work", str(tmp_path / "work"))


def test_each_workflow_keeps_its_runs_apart(work: Location) -> None:
    ingest, lifecycle = journal.ingest(work), journal.Journal(work, journal.LIFECYCLE)
    ingest.write_json("b1", journal.MANIFEST, {"files": [{"uri": "/landing/a.dcm"}]})
    lifecycle.write_table("20260601-abc", "plan.parquet", pa.table({"study": ["1.2.3"]}))
    assert ingest.runs() == ["b1"] and lifecycle.runs() == ["20260601-abc"]
    assert ingest.has("b1", journal.Step.MANIFEST) and not lifecycle.has("b1", journal.Step.MANIFEST)
    assert lifecycle.read_table("20260601-abc", "plan.parquet").column("study").to_pylist() == ["1.2.3"]
    assert ingest.claimed_sources(ingest.open_runs()) == {"/landing/a.dcm"}
    ingest.mark("b1", journal.DONE)
    assert ingest.open_runs() == []


def test_run_ids_are_stable_per_airflow_run_and_checked(work: Location) -> None:
    day = dt.date(2026, 6, 1)
    assert journal.run_key(day, "scheduled__x") == journal.run_key(day, "scheduled__x")
    assert journal.run_key(day, "scheduled__x") != journal.run_key(day, "manual__y")
    assert journal.run_key(day, "r").startswith("20260601-")
    with pytest.raises(UnsafePathError):
        journal.ingest(work).write_json("../escape", journal.MANIFEST, {})


def test_prune_keeps_open_and_recent_runs(work: Location) -> None:
    j = journal.ingest(work)
    now = dt.datetime(2026, 6, 10, tzinfo=dt.UTC)
    old, recent, open_old = "20260101T000000-aa-0000", "20260609T000000-bb-0000", "20260102T000000-cc-0000"
    for run in (old, recent, open_old):
        j.write_json(run, journal.MANIFEST, {"files": []})
    j.mark(old, journal.DONE)
    j.mark(recent, journal.DONE)
    assert j.prune_done(dt.timedelta(days=7), now) == 1
    assert j.runs() == [open_old, recent]


def test_a_run_has_one_owner_at_a_time(work: Location) -> None:
    j = journal.ingest(work)
    with j.lease("b1") as held:
        assert held and j.is_leased("b1")
        with j.lease("b1") as again:
            assert again is False  # a second step (another run) leaves it to its owner
    assert not j.is_leased("b1")
