"""Tests for :mod:`pacs.catalogue.snapshot_refresh`: a snapshot refresh writes what changed and stays exact.

Catalogues come from real intake runs of :mod:`pacs.synth` files; the snapshot is read back
through :func:`pacs.catalogue.snapshot.with_snapshot` (what ``pacs query`` uses), through the
published ``_snapshot.sql`` in a plain DuckDB, and as a folder of Parquet files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import s3fs_for, write_config

from pacs import catalogue, intake, store, synth
from pacs.catalogue import snapshot
from pacs.catalogue import snapshot_refresh as refresh
from pacs.config import Config, load_config

TABLES = refresh.TABLE_NAMES


def _config(base: Path, **overrides: Any) -> Config:
    return load_config(write_config(base, ingest={"batch_size": 50, "workers": 1, "fsync": False}, **overrides))


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[Any, ...]]:
    cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] != "study_year"]
    sel = ", ".join(f'"{c}"' for c in cols)
    return sorted(con.execute(f"SELECT {sel} FROM {table}").fetchall(), key=repr)


def catalogue_rows(cfg: Config) -> dict[str, list[tuple[Any, ...]]]:
    with catalogue.opened(cfg.duckdb, read_only=True) as con:
        return {t: _rows(con, t) for t in TABLES}


def snapshot_rows(cfg: Config) -> dict[str, list[tuple[Any, ...]]]:
    return snapshot.with_snapshot(cfg.parquet, lambda con: {t: _rows(con, t) for t in TABLES})


def assert_exact(cfg: Config) -> None:
    """The snapshot holds exactly the catalogue's rows, table by table, no row twice."""
    live, snap = catalogue_rows(cfg), snapshot_rows(cfg)
    for table in TABLES:
        assert snap[table] == live[table], table


def _refresh(cfg: Config) -> dict[str, Any]:
    with catalogue.opened(cfg.duckdb) as con:
        return catalogue.refresh_snapshot(con, cfg.parquet)


def _ingest(cfg: Config, n: int, seed: int, **kw: Any) -> dict[str, Any]:
    synth.generate_small_files(cfg.landing[0].root, n, seed=seed, **kw)
    return intake.run_ingest(cfg)


def test_a_refresh_writes_only_what_the_run_added(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    first = _ingest(cfg, 200, seed=1, per_series=50)["snapshot"]
    assert first["full"] and first["rows_written"] >= 200
    before = {p: s for p, s in store.iter_files(cfg.parquet)}
    second = _ingest(cfg, 10, seed=2, per_series=10)["snapshot"]  # a new patient, study and series
    # 10 images (and their 10 mr_acquisition rows), 1 study, 1 series, 1 patient, 1 batch: nothing
    # already published was written again
    assert (second["full"], second["replaced"], second["rows_written"]) == (False, 0, 24)
    after = {p: s for p, s in store.iter_files(cfg.parquet)}
    assert {p: s for p, s in after.items() if p in before and not p.endswith((".json", ".sql"))} == {
        p: s for p, s in before.items() if not p.endswith((".json", ".sql"))}  # old files untouched
    assert second["bytes_written"] == sum(s for p, s in after.items() if p not in before)
    assert _refresh(cfg)["written"] == 0  # nothing changed, nothing written
    assert_exact(cfg)


def test_changed_rows_replace_only_the_files_holding_them(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    _ingest(cfg, 60, seed=3, per_series=20)
    _ingest(cfg, 20, seed=4, per_series=20)
    with catalogue.opened(cfg.duckdb) as con:  # one study sent offline, as lifecycle does
        study = con.execute("SELECT min(study_instance_uid) FROM study").fetchall()[0][0]
        con.execute("UPDATE image SET tier = 'offline', updated_at = now() WHERE study_instance_uid = $s", {"s": study})
        con.execute("UPDATE study SET tier_state = 'offline', updated_at = now() WHERE study_instance_uid = $s",
                    {"s": study})
        images = con.execute("SELECT count(*) FROM image WHERE study_instance_uid = $s", {"s": study}).fetchall()[0][0]
        info = catalogue.refresh_snapshot(con, cfg.parquet)
    assert not info["full"] and info["replaced"] == 2  # that study's image file and study file
    assert info["rows_written"] == images + 1
    assert_exact(cfg)
    offline = snapshot.with_snapshot(cfg.parquet, lambda c: c.execute(
        "SELECT count(*) FROM image WHERE tier = 'offline'").fetchall()[0][0])
    assert offline == images


def test_a_study_whose_date_changes_moves_partition_with_its_series_and_images(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    _ingest(cfg, 30, seed=5, per_series=10)
    with catalogue.opened(cfg.duckdb) as con:
        con.execute("UPDATE study SET study_date = DATE '2011-05-04', updated_at = now()")
        catalogue.refresh_snapshot(con, cfg.parquet)
    assert_exact(cfg)
    years = snapshot.with_snapshot(cfg.parquet, lambda c: c.execute(
        "SELECT DISTINCT study_year FROM image UNION SELECT DISTINCT study_year FROM series").fetchall())
    assert years == [(2011,)]
    assert not [p for p, _ in store.iter_files(cfg.parquet) if "study_year=" in p and "study_year=2011" not in p]


def test_small_files_are_compacted_so_a_partition_stays_bounded(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    for seed in range(12):  # twelve runs, each one new study in the same year
        _ingest(cfg, 3, seed=100 + seed, per_series=3)
    state = snapshot.snapshot_state(cfg.parquet)
    assert state is not None
    per_part: dict[str, int] = {}
    for f in state.files("image"):
        part = f.rsplit("/", 1)[0]
        per_part[part] = per_part.get(part, 0) + 1
    assert per_part and max(per_part.values()) <= refresh.MAX_SMALL_FILES
    assert_exact(cfg)


def test_plain_duckdb_reads_the_published_views_and_the_folder(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    _ingest(cfg, 40, seed=6, per_series=20)
    _ingest(cfg, 20, seed=7, per_series=20)
    live = catalogue_rows(cfg)
    con = duckdb.connect()
    con.execute(Path(cfg.parquet.path(refresh.SNAPSHOT_VIEWS)).read_text())
    for table in TABLES:
        assert _rows(con, table) == live[table], table
    glob = con.execute(f"SELECT count(*) FROM read_parquet('{cfg.parquet.root}/image/*/*.parquet', "
                       "hive_partitioning = true)").fetchall()[0][0]
    assert glob == len(live["image"])  # between refreshes the folder holds exactly one state


def test_plain_duckdb_gets_the_analyst_views_without_rejected_instances(tmp_path: Path) -> None:
    """`.read _snapshot.sql` defines the views `pacs query` has, and they leave out a rejected
    series exactly as `pacs query` does."""
    from pacs.admin import reject
    from pacs.analyst import query

    cfg = _config(tmp_path)
    _ingest(cfg, 40, seed=6, per_series=10)
    with catalogue.opened(cfg.duckdb, read_only=True) as con:
        series, n = con.execute("SELECT series_instance_uid, image_count FROM series ORDER BY 1 LIMIT 1").fetchall()[0]
    reject(cfg, series=series, code="113001", reason="test", run_id="reject")
    con = duckdb.connect()
    con.execute(Path(cfg.parquet.path(refresh.SNAPSHOT_VIEWS)).read_text())
    plain = {v: con.execute(f"SELECT count(*) FROM {v}").fetchall()[0][0]
             for v in ("accepted_image", "accepted_series", "accepted_study", "study_patient", "daily_volume")}
    assert plain["accepted_image"] == 40 - n and con.execute(
        "SELECT count(*) FROM accepted_series WHERE series_instance_uid = $s", {"s": series}).fetchall() == [(0,)]
    images = con.execute("SELECT sum(images) FROM daily_volume").fetchall()[0][0]
    assert images == 40 - n
    for view, count in plain.items():
        assert query.run_query(cfg, f"SELECT count(*) FROM {view}").column(0).to_pylist() == [count], view


def test_a_deleted_or_older_snapshot_is_rebuilt_whole(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    _ingest(cfg, 30, seed=8, per_series=10)
    root = Path(cfg.parquet.root)
    # the layout before this format: one data.parquet per partition and a manifest of partitions
    for path in root.rglob("*.parquet"):
        path.rename(path.with_name("data.parquet"))
    (root / refresh.SNAPSHOT_MANIFEST).write_text(json.dumps({"partitions": {}}))
    info = _refresh(cfg)
    assert info["full"] and info["removed"] >= 5
    assert not list(root.rglob("data.parquet"))
    assert_exact(cfg)
    store.remove_tree(cfg.parquet, cfg.parquet.root)  # someone deleted the folder
    assert _refresh(cfg)["full"]
    assert_exact(cfg)


def test_a_refresh_that_crashed_before_publishing_leaves_the_snapshot_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(tmp_path)
    _ingest(cfg, 30, seed=9, per_series=10)
    published = snapshot_rows(cfg)
    synth.generate_small_files(cfg.landing[0].root, 10, seed=10, per_series=10)
    real_put = store.put

    def crash(loc: Any, path: str, data: bytes, **kw: Any) -> None:
        if path.endswith(refresh.SNAPSHOT_MANIFEST):
            raise OSError("power cut while publishing the manifest")
        real_put(loc, path, data, **kw)

    monkeypatch.setattr(store, "put", crash)
    with pytest.raises(OSError, match="power cut"):
        intake.run_ingest(cfg)
    monkeypatch.setattr(store, "put", real_put)
    assert snapshot_rows(cfg) == published  # readers still see the last published state
    info = _refresh(cfg)  # the next refresh publishes the change, and the crash's files are gone
    assert info["removed"] >= 1
    assert_exact(cfg)
    state = snapshot.snapshot_state(cfg.parquet)
    assert state is not None
    listed = set(state.all_files)
    assert {cfg.parquet.key(p) for p, _ in store.iter_files(cfg.parquet) if p.endswith(".parquet")} == listed


def test_an_incremental_snapshot_on_s3(s3: Any, tmp_path: Path) -> None:
    s3fs_for(s3).mkdir("pacs-snapshot")
    cfg = _config(tmp_path, catalogue={"duckdb": str(tmp_path / "pacs.duckdb"), "parquet": "s3://pacs-snapshot/p"})
    _ingest(cfg, 30, seed=11, per_series=10)
    _ingest(cfg, 10, seed=11, per_series=10)  # the same files again: duplicates, nothing catalogued
    with catalogue.opened(cfg.duckdb) as con:
        con.execute("UPDATE image SET tier = 'offline', updated_at = now() WHERE instance_number <= 5")
        info = catalogue.refresh_snapshot(con, cfg.parquet)
    assert not info["full"] and info["replaced"] >= 1
    assert_exact(cfg)
    state = snapshot.snapshot_state(cfg.parquet)
    assert state is not None
    keys = {cfg.parquet.key(p) for p, _ in store.iter_files(cfg.parquet) if p.endswith(".parquet")}
    assert keys == set(state.all_files)  # replaced objects were deleted

