"""Tests for :mod:`pacs.analyst.query`: analysts' views, de-identification, outputs, and reads during a merge.

Catalogues come from real intake runs (:mod:`pacs.synth` files through :func:`pacs.intake.run_ingest`);
the merge-in-progress test runs intake in another process while this one queries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, s3fs_for, write_config

from pacs import catalogue, intake, synth
from pacs.analyst import deid, query
from pacs.catalogue import snapshot
from pacs.cli import main as pacs_main
from pacs.config import Config, load_config
from pacs.errors import QueryError, SnapshotBusyError

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A small synthetic hospital ingested for real, with one patient's birth date unknown."""
    cfg = load_config(write_config(tmp_path_factory.mktemp("hospital") / "archive"))
    synth.generate_archive(cfg.landing[0].root, seed=7, patients=12, size_scale=0.02, count_scale=0.01)
    intake.run_ingest(cfg)
    with catalogue.opened(cfg.duckdb) as con:
        pid = con.execute("SELECT min(patient_id) FROM patient").fetchall()[0][0]
        con.execute("UPDATE patient SET patient_birth_date = NULL, updated_at = now() WHERE patient_id = $p",
                    {"p": pid})
        catalogue.refresh_snapshot(con, cfg.parquet)
    return cfg


def live(cfg: Config, sql: str) -> list[tuple[Any, ...]]:
    with catalogue.opened(cfg.duckdb, read_only=True) as con:
        return con.execute(sql).fetchall()


# ---------------------------------------------------------------------------------------------
# the snapshot and the views
# ---------------------------------------------------------------------------------------------

def test_snapshot_and_live_read_the_same_catalogue(hospital: Config) -> None:
    sql = ("SELECT (SELECT count(*) FROM patient), (SELECT count(*) FROM study), (SELECT count(*) FROM series), "
           "(SELECT count(*) FROM image), (SELECT sum(size_bytes) FROM image), (SELECT count(*) FROM ingest_batch)")
    snap = query.run_query(hospital, sql).to_pylist()
    assert list(snap[0].values()) == list(live(hospital, sql)[0])
    assert query.run_query(hospital, sql, live=True).to_pylist() == snap
    years = query.run_query(hospital, "SELECT DISTINCT study_year FROM image ORDER BY 1").column(0).to_pylist()
    assert years and all(y > 2000 for y in years)  # the snapshot's partitions are readable as a column


def test_study_patient_age_and_sex_at_study_time(hospital: Config) -> None:
    rows = query.run_query(hospital, "SELECT * FROM study_patient").to_pylist()
    raw = {r[0]: r[1:] for r in live(hospital, """
        SELECT s.study_instance_uid, p.patient_birth_date, s.study_date, s.patient_age, p.patient_sex
        FROM study s JOIN patient p USING (patient_id)""")}
    assert len(rows) == len(raw) > 5
    sources = set()
    for r in rows:
        birth, study_date, dicom_age, sex = raw[r["study_instance_uid"]]
        assert r["patient_sex"] == sex
        if birth is not None and study_date is not None:
            years = study_date.year - birth.year - ((study_date.month, study_date.day) < (birth.month, birth.day))
            assert (r["age_years_at_study"], r["age_source"]) == (years, "birth_date")
        else:
            unit = {"Y": 1, "M": 12, "W": 365 / 7, "D": 365}[dicom_age[-1]]
            assert (r["age_years_at_study"], r["age_source"]) == (int(int(dicom_age[:3]) // unit), "patient_age")
        sources.add(r["age_source"])
    assert sources == {"birth_date", "patient_age"}


def test_daily_volume_modality_mix_and_tier_status(hospital: Config) -> None:
    totals = live(hospital, "SELECT count(DISTINCT study_instance_uid), count(*), sum(size_bytes) FROM image")[0]
    day = query.run_query(hospital, "SELECT sum(images), sum(bytes) FROM daily_volume").to_pylist()[0]
    assert list(day.values()) == [totals[1], totals[2]]
    per_modality = dict(live(hospital, "SELECT s.modality, sum(i.size_bytes) FROM image i JOIN series s USING "
                                       "(series_instance_uid) GROUP BY ALL"))
    mix = query.run_query(hospital, "SELECT modality, sum(bytes) b FROM modality_mix GROUP BY ALL").to_pylist()
    assert {r["modality"]: r["b"] for r in mix} == per_modality
    shares = query.run_query(hospital, "SELECT month, sum(share_of_bytes_pct) s FROM modality_mix GROUP BY ALL")
    assert all(abs(s - 100) < 0.1 for s in shares.column("s").to_pylist())
    status = query.run_query(hospital, "SELECT count(*) n, count(*) FILTER (WHERE fully_online) online, "
                                       "sum(image_count) images FROM study_tier_status").to_pylist()[0]
    assert status == {"n": totals[0], "online": totals[0], "images": totals[1]}
    tier_bytes = query.run_query(hospital, "SELECT sum(online_bytes) FROM study_tier_bytes").column(0)[0].as_py()
    assert tier_bytes == totals[2]


# ---------------------------------------------------------------------------------------------
# de-identified views
# ---------------------------------------------------------------------------------------------

def test_deidentified_refuses_without_a_key(hospital: Config, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(deid.KEY_ENV, raising=False)
    assert pacs_main(["query", "--config", str(hospital.path), "--deidentified", "SELECT * FROM deid_study"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "PACS_PSEUDONYM_KEY" in out.err and "no default key" in out.err
    monkeypatch.setenv(deid.KEY_ENV, "short")
    with pytest.raises(QueryError, match="too short"):
        query.run_query(hospital, "SELECT 1", deidentified=True)


def test_deidentified_views_hold_no_direct_identifiers(hospital: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(deid.KEY_ENV, KEY)
    identifiers = live(hospital, """
        SELECT patient_id AS v FROM patient UNION SELECT patient_name FROM patient
        UNION SELECT CAST(patient_birth_date AS VARCHAR) FROM patient WHERE patient_birth_date IS NOT NULL
        UNION SELECT study_instance_uid FROM study UNION SELECT accession_number FROM study
        UNION SELECT CAST(study_date AS VARCHAR) FROM study UNION SELECT series_instance_uid FROM series
        UNION SELECT institution_name FROM study UNION SELECT referring_physician_name FROM study
        UNION SELECT study_description FROM study""")
    secrets_ = {v for (v,) in identifiers if v}
    forbidden_columns = {"patient_id", "patient_name", "patient_birth_date", "study_instance_uid", "accession_number",
                         "study_date", "institution_name", "referring_physician_name", "study_description",
                         "series_instance_uid", "station_name", "uri", "online_uri", "sha256", "study_time"}
    for view in ("deid_patient", "deid_study", "deid_series"):  # records of individuals
        table = query.run_query(hospital, f"SELECT * FROM {view}", deidentified=True)
        assert table.num_rows > 0, view
        assert not forbidden_columns & set(table.column_names), view
        values = {str(v) for col in table.columns for v in col.to_pylist() if v is not None}
        assert not values & secrets_, view
        assert not any("date" in c or "day" in c for c in table.column_names), view
    # Aggregates carry no identifier and no cell of fewer than 11 studies.
    for view, raw in (("deid_daily_volume", "daily_volume"), ("deid_modality_mix", "modality_mix")):
        table = query.run_query(hospital, f"SELECT * FROM {view}", deidentified=True)
        assert not forbidden_columns & set(table.column_names), view
        assert all(n >= 11 for n in table.column("studies").to_pylist()), view
        big = query.run_query(hospital, f"SELECT count(*) FROM {raw} WHERE studies >= 11").column(0)[0].as_py()
        assert table.num_rows <= big
    studies = query.run_query(hospital, "SELECT * FROM deid_study", deidentified=True).to_pylist()
    assert all(r["age_years"] is None or 0 <= r["age_years"] <= 90 for r in studies)
    assert all(len(r["patient_key"]) == 32 for r in studies)


def test_pseudonyms_are_hmac_sha256_of_the_key(hospital: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(deid.KEY_ENV, KEY)
    pids = sorted(p for (p,) in live(hospital, "SELECT patient_id FROM patient"))
    keys = set(query.run_query(hospital, "SELECT patient_key FROM deid_patient", deidentified=True)
               .column(0).to_pylist())
    expected = {hmac.new(KEY.encode(), b"patient\x00" + p.encode(), hashlib.sha256).hexdigest()[:32] for p in pids}
    assert keys == expected
    # The same patient gets the same key in every view (studies join back to patients) ...
    joined = query.run_query(hospital, "SELECT count(*) FROM deid_study s JOIN deid_patient p USING (patient_key)",
                             deidentified=True).column(0)[0].as_py()
    assert joined == live(hospital, "SELECT count(*) FROM study")[0][0]
    # ... and another key gives other pseudonyms.
    monkeypatch.setenv(deid.KEY_ENV, "another-key-another-key-another-key")
    other = set(query.run_query(hospital, "SELECT patient_key FROM deid_patient", deidentified=True)
                .column(0).to_pylist())
    assert not other & keys


@pytest.mark.parametrize("sql", [
    "SELECT * FROM study",
    "SELECT * FROM study_patient",
    "SELECT pacs_pseudonym('patient', 'SYN0000001')",
    "SELECT * FROM read_parquet('{parquet}/patient/data.parquet')",
    "SELECT * FROM read_csv('/etc/hostname')",
    "SET enable_external_access = true",
    "ATTACH '{duckdb}' AS raw (READ_ONLY)",
])
def test_deidentified_mode_exposes_nothing_else(hospital: Config, monkeypatch: pytest.MonkeyPatch, sql: str) -> None:
    monkeypatch.setenv(deid.KEY_ENV, KEY)
    with pytest.raises(duckdb.Error):
        query.run_query(hospital, sql.format(parquet=hospital.parquet.root, duckdb=hospital.duckdb), deidentified=True)


def test_deidentified_live_and_describe(hospital: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(deid.KEY_ENV, KEY)
    a = query.run_query(hospital, "SELECT * FROM deid_series ORDER BY series_key", deidentified=True)
    b = query.run_query(hospital, "SELECT * FROM deid_series ORDER BY series_key", deidentified=True, live=True)
    assert a.equals(b)
    described = query.run_query(hospital, "DESCRIBE deid_study", deidentified=True).column(0).to_pylist()
    assert "patient_key" in described and "age_years" in described


# ---------------------------------------------------------------------------------------------
# the command and its outputs
# ---------------------------------------------------------------------------------------------

def test_cli_formats(hospital: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pacs.cli import main

    sql = "SELECT modality, count(*) AS series FROM series GROUP BY ALL ORDER BY modality"
    expected = live(hospital, sql)
    assert main(["query", "--config", str(hospital.path), sql]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["modality", "series"] and f"({len(expected)} rows)" in text
    assert main(["query", "--config", str(hospital.path), "--format", "csv", sql]) == 0
    csv_lines = capsys.readouterr().out.strip().splitlines()
    assert csv_lines[0] == '"modality","series"' and len(csv_lines) == len(expected) + 1
    assert main(["query", "--config", str(hospital.path), "--format", "json", sql]) == 0
    assert [tuple(r.values()) for r in json.loads(capsys.readouterr().out)] == expected
    out = tmp_path / "series.parquet"
    assert main(["query", "--config", str(hospital.path), "--out", str(out), sql]) == 0
    assert [tuple(r.values()) for r in pq.read_table(out).to_pylist()] == expected
    assert main(["query", "--config", str(hospital.path), "--format", "parquet", sql]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["query", "--config", str(hospital.path), "SELECT * FROM no_such_table"]) == 2
    assert "no_such_table" in capsys.readouterr().err


def test_table_format_truncates() -> None:
    import pyarrow as pa

    text = query.format_table(pa.table({"n": list(range(250)), "s": ["x" * 60] * 250}), max_rows=3)
    lines = text.splitlines()
    assert len(lines) == 2 + 3 + 1 and "first 3 shown" in lines[-1] and lines[2].endswith("…")


def test_live_query_is_stopped_after_max_seconds(hospital: Config) -> None:
    started = time.monotonic()
    with pytest.raises(QueryError, match="max-seconds"):
        query.run_query(hospital, "SELECT count(*) FROM range(100000000000) a", live=True, max_seconds=0.5)
    assert time.monotonic() - started < 10


def test_empty_archive_reads_as_empty(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "empty"))
    assert query.run_query(cfg, "SELECT count(*) FROM image").column(0)[0].as_py() == 0
    assert query.run_query(cfg, "SELECT count(*) FROM study_patient").column(0)[0].as_py() == 0
    with pytest.raises(QueryError, match="does not exist"):
        query.run_query(cfg, "SELECT 1", live=True)


# ---------------------------------------------------------------------------------------------
# reads while the snapshot is refreshed or a merge runs
# ---------------------------------------------------------------------------------------------

CONSISTENT = """
SELECT (SELECT count(*) FROM image) AS images,
       (SELECT coalesce(sum(image_count), 0) FROM study) AS study_images,
       (SELECT coalesce(sum(catalogued), 0) FROM ingest_batch) AS batch_images,
       (SELECT count(*) FROM series) AS series,
       (SELECT coalesce(sum(series_count), 0) FROM study) AS study_series
"""


def _consistent(row: dict[str, int]) -> bool:
    return row["images"] == row["study_images"] == row["batch_images"] and row["series"] == row["study_series"]


def test_a_query_that_saw_a_refresh_is_run_again(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "a", ingest={"batch_size": 50, "workers": 1, "fsync": False}))
    synth.generate_small_files(cfg.landing[0].root, 40, seed=1)
    intake.run_ingest(cfg)
    calls: list[int] = []

    def work(con: duckdb.DuckDBPyConnection) -> int:
        n = con.execute("SELECT count(*) FROM image").fetchall()[0][0]
        if not calls:  # a merge and refresh land while the first attempt reads
            synth.generate_small_files(cfg.landing[0].root, 30, seed=2)
            intake.run_ingest(cfg)
        calls.append(n)
        return n

    assert snapshot.with_snapshot(cfg.parquet, work) == 70
    assert calls == [40, 70]


def test_a_snapshot_that_keeps_changing_is_reported_busy(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "b", ingest={"batch_size": 50, "workers": 1, "fsync": False}))
    synth.generate_small_files(cfg.landing[0].root, 20, seed=3)
    intake.run_ingest(cfg)
    attempts: list[int] = []

    def work(con: duckdb.DuckDBPyConnection) -> int:
        n = con.execute("SELECT count(*) FROM image").fetchall()[0][0]
        attempts.append(n)
        with catalogue.opened(cfg.duckdb) as writer:  # every attempt sees a refresh land under it
            writer.execute("UPDATE study SET study_description = $d, updated_at = now()", {"d": f"v{len(attempts)}"})
            catalogue.refresh_snapshot(writer, cfg.parquet)
        return n

    with pytest.raises(SnapshotBusyError, match="kept changing"):
        snapshot.with_snapshot(cfg.parquet, work, wait=0.5)
    assert len(attempts) >= 2 and set(attempts) == {20}
    described = query.run_query(cfg, "SELECT study_description FROM study", wait=0.5).column(0).to_pylist()
    assert described == [f"v{len(attempts)}"]  # the last refresh is what a quiet snapshot shows


MERGER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {plugins!r})
    from pacs.config import load_config
    from pacs import intake, synth
    cfg = load_config({config!r})
    for round_ in range(3):
        synth.generate_small_files(cfg.landing[0].root, 50, seed=100 + round_)
        print("merged", intake.run_ingest(cfg, run_id=f"round-{{round_}}")["catalogued"], flush=True)
""")


def test_analyst_queries_during_a_merge_break_neither(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c", ingest={"batch_size": 25, "workers": 2, "fsync": False,
                                                           "merge_chunk_rows": 25}))
    synth.generate_small_files(cfg.landing[0].root, 50, seed=99)
    intake.run_ingest(cfg)
    merger = subprocess.Popen(
        [sys.executable, "-c", MERGER.format(plugins=str(ROOT / "plugins"), config=str(cfg.path))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    snapshot_rows: list[dict[str, int]] = []
    live_rows: list[dict[str, int]] = []
    deadline = time.monotonic() + 120
    while merger.poll() is None and time.monotonic() < deadline:
        snapshot_rows.append(query.run_query(cfg, CONSISTENT).to_pylist()[0])
        if len(snapshot_rows) % 3 == 0:
            live_rows.append(query.run_query(cfg, CONSISTENT, live=True, timeout=60).to_pylist()[0])
    out, err = merger.communicate(timeout=120)
    assert merger.returncode == 0, err
    assert out.count("merged 50") == 3  # the merge was not broken by the readers
    final = query.run_query(cfg, CONSISTENT).to_pylist()[0]
    assert final["images"] == 50 + 3 * 50 and _consistent(final)
    assert len(snapshot_rows) >= 5 and live_rows
    for rows in (snapshot_rows, live_rows):
        assert all(_consistent(r) for r in rows), rows  # every read saw one committed state
        counts = [r["images"] for r in rows]
        assert counts == sorted(counts)  # never older than what was already seen
        assert set(counts) <= set(range(50, 201, 25))  # whole batches of 25, committed
    assert len({r["images"] for r in snapshot_rows + live_rows}) >= 2  # reads really overlapped the merges


def test_snapshot_on_s3(s3: Any, tmp_path: Path) -> None:
    """A snapshot in s3:// (moto's server) is read through the location's fsspec filesystem."""
    s3fs_for(s3).mkdir("pacs-snapshot")
    cfg = load_config(write_config(tmp_path / "s3", catalogue={"duckdb": str(tmp_path / "s3" / "pacs.duckdb"),
                                                               "parquet": "s3://pacs-snapshot/parquet"},
                                   ingest={"batch_size": 50, "workers": 1, "fsync": False}))
    synth.generate_small_files(cfg.landing[0].root, 30, seed=4, per_series=30)
    intake.run_ingest(cfg)  # writes the snapshot to S3
    assert snapshot.snapshot_state(cfg.parquet) is not None
    sql = "SELECT (SELECT count(*) FROM image), (SELECT sum(size_bytes) FROM image), (SELECT count(*) FROM study)"
    expected = live(cfg, sql)[0]
    assert expected[0] == 30
    sql_with_view = sql.replace("count(*) FROM study)", "count(*) FROM study_patient)")
    assert tuple(query.run_query(cfg, sql_with_view).to_pylist()[0].values()) == expected


def test_dates_in_the_hospital_are_recent(hospital: Config) -> None:
    """Sanity of the fixture: the synthetic studies span several years before today."""
    first, last = live(hospital, "SELECT min(study_date), max(study_date) FROM study")[0]
    assert first < last <= dt.date(2030, 1, 1)
