"""The sorted SOP-instance index beside the catalogue (``pacs.catalogue.sop_index``) never lets a
duplicate in, however it came to be out of step.

Real intake runs of :mod:`pacs.synth` files. After each way the index can be left behind the
catalogue — the process killed between the merge's COMMIT and the index update (the old index
put back), the index deleted or its files damaged, the catalogue restored from an older copy
while the index is newer — a resend of what the catalogue holds is a duplicate, and what it
does not hold is catalogued. The index's lookup equals a join with ``image_sop`` on hashes that
repeat across its block boundaries, and its delta files stay bounded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from helpers import query as _q

from pacs import catalogue, synth
from pacs.catalogue import sop_index
from pacs.catalogue.checks import check
from pacs.intake import run_ingest


@pytest.fixture
def hospital(tmp_path: Path) -> synth.SynthResult:
    return synth.generate_archive(tmp_path / "source", seed=23, patients=6, count_scale=0.03, size_scale=0.05)


def _send(cfg: Any, files: list[Any], tag: str) -> dict[str, Any]:
    landing = Path(cfg.landing[0].root)
    for i, f in enumerate(files):
        shutil.copy(f.path, landing / f"{tag}-{i}.dcm")
    return run_ingest(cfg)


def _meta(cfg: Any) -> dict[str, Any]:
    return json.loads((sop_index.index_dir(cfg.duckdb) / sop_index.META).read_text())


def _token(cfg: Any) -> str | None:
    rows = _q(cfg, "SELECT value FROM catalogue_meta WHERE key = 'image_sop_token'")
    return rows[0][0] if rows else None


def _images(cfg: Any) -> int:
    return _q(cfg, "SELECT count(*) FROM image")[0][0]


def _halves(hospital: synth.SynthResult) -> tuple[list[Any], list[Any]]:
    files = sorted(hospital.good(), key=lambda f: (f.series_instance_uid, f.path))
    return files[: len(files) // 2], files[len(files) // 2:]


def test_the_index_follows_every_merge_and_matches_the_catalogue(archive, hospital: synth.SynthResult) -> None:
    first, second = _halves(hospital)
    cfg = archive(ingest={"merge_chunk_rows": 5})
    _send(cfg, first, "a")
    meta = _meta(cfg)
    assert meta["token"] == _token(cfg)
    assert sop_index.SopIndex(sop_index.index_dir(cfg.duckdb), meta).rows == _images(cfg) == len(first)
    _send(cfg, second, "b")
    assert _meta(cfg)["token"] == _token(cfg), "the index was not updated after the merge's commit"
    images = _images(cfg)
    with catalogue.opened(cfg.duckdb) as con:
        index = sop_index.open_index(con, cfg.duckdb)
        assert index is not None and index.rows == images
    again = _send(cfg, first + second, "c")
    assert again["duplicates"] == len(first) + len(second) and again["catalogued"] == 0
    assert check(cfg) == []


@pytest.mark.parametrize("how", ["killed_before_the_index_update", "deleted", "damaged", "garbled_meta"])
def test_an_index_left_behind_is_rebuilt_and_a_resend_is_a_duplicate(archive, hospital: synth.SynthResult,
                                                                      tmp_path: Path, how: str) -> None:
    first, second = _halves(hospital)
    cfg = archive()
    _send(cfg, first, "a")
    root = sop_index.index_dir(cfg.duckdb)
    saved = tmp_path / "index-after-first"
    shutil.copytree(root, saved)
    _send(cfg, second, "b")  # the index now holds both halves
    if how == "killed_before_the_index_update":
        # the catalogue committed the second merge, the index update never happened
        shutil.rmtree(root)
        shutil.copytree(saved, root)
    elif how == "deleted":
        shutil.rmtree(root)
    elif how == "damaged":
        meta = _meta(cfg)
        (root / f"base-{meta['base']}.hash.npy").write_bytes(b"\x93NUMPY truncated")
    else:
        (root / sop_index.META).write_text("{not json")
    resend = _send(cfg, second, "again")
    assert resend["duplicates"] == len(second) and resend["catalogued"] == 0, resend
    assert _images(cfg) == len(first) + len(second)
    assert _meta(cfg)["token"] == _token(cfg)
    assert check(cfg) == []


def test_a_catalogue_restored_from_an_older_copy_is_not_fooled_by_a_newer_index(
        archive, hospital: synth.SynthResult, tmp_path: Path) -> None:
    first, second = _halves(hospital)
    cfg = archive()
    _send(cfg, first, "a")
    backup = tmp_path / "pacs.duckdb.backup"
    shutil.copyfile(cfg.duckdb, backup)
    _send(cfg, second, "b")
    shutil.copyfile(backup, cfg.duckdb)  # the administrator restores last night's catalogue
    assert _images(cfg) == len(first)
    back = _send(cfg, second, "b-again")  # not catalogued any more: catalogued now, not "duplicate"
    assert back["catalogued"] == len(second) and back["duplicates"] == 0, back
    resend = _send(cfg, first + second, "all")
    assert resend["duplicates"] == len(first) + len(second) and resend["catalogued"] == 0
    assert check(cfg) == []


def test_check_finds_an_index_that_claims_to_match_and_misses_rows(archive, hospital: synth.SynthResult) -> None:
    cfg = archive()
    _send(cfg, hospital.good(), "a")
    assert check(cfg) == []
    root = sop_index.index_dir(cfg.duckdb)
    meta = _meta(cfg)
    # an index of no rows that claims the catalogue's token (what a bug in the update would leave)
    empty = {**meta, "base": "0" * 16, "base_rows": 0, "deltas": []}
    for part in ("hash", "at", "fence"):
        np.save(root / f"base-{empty['base']}.{part}.npy", np.empty(0, dtype=np.uint64))
    (root / sop_index.META).write_text(json.dumps(empty))
    assert check(cfg) == [f"image_sop_rows_missing_from_sop_index: {_images(cfg)}"]


def test_lookup_equals_a_join_with_image_sop_across_block_boundaries(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 5 * sop_index.BLOCK + 17
    hashes = rng.integers(1, 2**63, size=n, dtype=np.uint64)
    # one hash repeated across a block boundary, one at the very first and last position
    repeated = np.uint64(2**62)
    hashes[sop_index.BLOCK - 3: sop_index.BLOCK + 4] = repeated
    hashes[0], hashes[-1] = np.uint64(0), np.uint64(2**64 - 1)
    path = tmp_path / "pacs.duckdb"
    with catalogue.opened(path) as con:
        con.register("h", pa.table({"sop_hash": hashes, "k": np.arange(n)}))
        con.execute("INSERT INTO image_sop SELECT sop_hash, TIMESTAMPTZ '2020-01-01 00:00:00+00' + k * INTERVAL 1 "
                    "SECOND FROM h")
        con.unregister("h")
        index = sop_index.rebuild(con, sop_index.index_dir(path))
        extra = rng.integers(1, 2**63, size=40, dtype=np.uint64)
        index = index.added(con, np.concatenate([extra, [repeated]]), 1_700_000_000_000_000,
                            sop_index.catalogue_token(con) or "")
        con.register("x", pa.table({"sop_hash": np.concatenate([extra, [repeated]])}))
        con.execute("INSERT INTO image_sop SELECT sop_hash, to_timestamp(1700000000) FROM x")
        con.unregister("x")
        probes = np.concatenate([hashes[::97], [repeated, np.uint64(0), np.uint64(2**64 - 1)], extra[:5],
                                 rng.integers(1, 2**63, size=50, dtype=np.uint64)])
        con.register("p", pa.table({"sop_hash": np.unique(probes)}))
        want = sorted(con.execute("SELECT k.sop_hash, k.ingested_at FROM image_sop k SEMI JOIN p USING (sop_hash)"
                                  ).fetchall())
        con.unregister("p")
    got = index.lookup(probes)
    assert sorted(zip(got.column(0).to_pylist(), got.column(1).to_pylist(), strict=True)) == want
    assert sum(1 for h, _a in want if h == int(repeated)) == 8
    assert index.missing(hashes) == 0 and index.missing(np.array([12345], dtype=np.uint64)) == 1


def test_delta_files_stay_bounded(archive, hospital: synth.SynthResult, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sop_index, "MAX_DELTAS", 3)
    files = sorted(hospital.good(), key=lambda f: (f.series_instance_uid, f.path))
    cfg = archive()
    parts = [files[i::6] for i in range(6)]
    for k, part in enumerate(parts):
        _send(cfg, part, f"p{k}")
        meta = _meta(cfg)
        assert len(meta["deltas"]) < 3, meta
        root = sop_index.index_dir(cfg.duckdb)
        assert len(list(root.iterdir())) == 4 + len(meta["deltas"]), "files the manifest does not list are kept"
    resend = _send(cfg, files, "all")
    assert resend["duplicates"] == len(files)
    assert check(cfg) == []
