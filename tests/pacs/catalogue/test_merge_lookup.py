"""The merge's cost-bounded parts stay exact: the SOP-instance lookup ``image_sop`` and the
incremental aggregates (``include/sql/merge_aggregates.sql``).

Catalogues come from real intake runs of :mod:`pacs.synth` files, sent in overlapping parts
(partial and repeated sends, new series in existing studies, several modalities). After every
run the aggregates the merge added up must equal a full recompute from the image rows
(``include/sql/aggregates.sql`` over every study), column by column; and a resend must be found
whatever ``image_sop`` holds: rebuilt at open for a catalogue older than it, with stale or
mismatched rows.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import query as _q

from pacs import catalogue, synth
from pacs.catalogue.checks import check
from pacs.intake import run_ingest

AGGREGATES = {
    "series": ("series_instance_uid", "image_count, size_bytes, first_received_at, last_received_at"),
    "study": ("study_instance_uid", "series_count, image_count, size_bytes, online_image_count, offline_image_count, "
                                    "modalities_in_study, first_received_at, last_received_at"),
    "patient": ("patient_id", "study_count, first_study_date, last_study_date"),
}


def _aggregates(con: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(con.execute(f"SELECT {key}, {cols} FROM {t}").fetchall(), key=repr)
            for t, (key, cols) in AGGREGATES.items()}


def _recomputed(cfg: Any) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]]]:
    """The catalogue's aggregates, and the same recomputed from every image (rolled back)."""
    with catalogue.opened(cfg.duckdb) as con:
        kept = _aggregates(con)
        con.execute("BEGIN TRANSACTION")
        con.execute("CREATE OR REPLACE TEMP TABLE touched_studies AS SELECT study_instance_uid FROM study")
        catalogue.run(con, "aggregates", {"now": dt.datetime.now(dt.UTC)})
        again = _aggregates(con)
        con.execute("ROLLBACK")
    return kept, again


@pytest.fixture
def hospital(tmp_path: Path) -> synth.SynthResult:
    return synth.generate_archive(tmp_path / "source", seed=11, patients=6, count_scale=0.03, size_scale=0.05,
                                  duplicates=2)


def _send(cfg: Any, files: list[Any], tag: str) -> dict[str, Any]:
    landing = Path(cfg.landing[0].root)
    for i, f in enumerate(files):
        shutil.copy(f if isinstance(f, Path) else f.path, landing / f"{tag}-{i}.dcm")
    return run_ingest(cfg)


def _variants(files: list[Any], out: Path, *, modality: str | None = None, new_series: bool = False,
              drop_study_date: bool = False) -> list[Path]:
    """Copies of ``files`` rewritten: into a new series (new SOP instances) of another modality,
    or without a study date."""
    import pydicom
    from pydicom.uid import generate_uid

    out.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=[str(out), "series"])
    paths = []
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f.path)
        if new_series:
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(out), str(i)])
        if modality:
            ds.Modality = modality
        if drop_study_date and "StudyDate" in ds:
            del ds.StudyDate
        paths.append(out / f"{i}.dcm")
        ds.save_as(paths[-1])
    return paths


def test_incremental_aggregates_equal_a_full_recompute(archive, hospital: synth.SynthResult,
                                                        tmp_path: Path) -> None:
    files = sorted(hospital.good(), key=lambda f: (f.series_instance_uid, f.path))
    cfg = archive(ingest={"batch_size": 7, "workers": 1, "fsync": False, "merge_chunk_rows": 10})
    # study x first arrives without a study date, then gains a series of another modality (and
    # its date); study y gains one too
    x, y = files[0].study_instance_uid, files[-1].study_instance_uid
    x_files = [f for f in files if f.study_instance_uid == x]
    rest = [f for f in files if f.study_instance_uid != x]
    y_files = [f for f in rest if f.study_instance_uid == y]
    odd = sorted({f.series_instance_uid for f in rest})[1::2]
    n = len(rest)
    parts = [
        _variants(x_files, tmp_path / "x-undated", drop_study_date=True)
        + [f for f in rest if f.series_instance_uid in odd],      # later series join existing studies
        rest[: n // 2], rest[n // 3:],                            # overlapping parts
        _variants(x_files[:3], tmp_path / "x-sr", modality="SR", new_series=True)
        + _variants(y_files[:2], tmp_path / "y-ot", modality="OT", new_series=True),
        rest,                                                     # a full resend
    ]
    for k, part in enumerate(parts):
        _send(cfg, part, f"part{k}")
        kept, again = _recomputed(cfg)
        for table in AGGREGATES:
            assert kept[table] == again[table], (k, table)
        assert check(cfg) == []
    modalities = dict(_q(cfg, "SELECT study_instance_uid, modalities_in_study FROM study"))
    assert len(modalities[x]) == 2 and len(modalities[y]) == 2
    assert _q(cfg, "SELECT count(*) FROM study WHERE study_date IS NULL")[0][0] == 0
    assert _q(cfg, "SELECT count(*) FROM image")[0][0] == len(files) + len(x_files[:3]) + len(y_files[:2])


def test_a_resend_is_found_whatever_image_sop_holds(archive, hospital: synth.SynthResult) -> None:
    files = hospital.good()
    cfg = archive()
    _send(cfg, files, "first")
    images = _q(cfg, "SELECT count(*) FROM image")[0][0]
    assert _q(cfg, "SELECT count(*) FROM image_sop")[0][0] == images
    # a catalogue older than image_sop: rebuilt when the writer opens it
    with catalogue.opened(cfg.duckdb) as con:
        con.execute("DELETE FROM image_sop")
    with catalogue.opened(cfg.duckdb) as con:
        assert con.execute("SELECT count(*) FROM image_sop").fetchall()[0][0] == images
        # lookup rows whose ingested_at no longer matches (found in all of image), and stale ones
        con.execute("UPDATE image_sop SET ingested_at = TIMESTAMPTZ '2001-01-01 00:00:00+00'")
        con.execute("INSERT INTO image_sop SELECT (md5_number('1.2.3.' || range::VARCHAR) >> 64)::UBIGINT, now() "
                    "FROM range(5)")
    assert check(cfg) == []
    resend = _send(cfg, files, "again")
    assert resend["duplicates"] == len(files) and resend["catalogued"] == 0
    assert _q(cfg, "SELECT count(*) FROM image")[0][0] == images
    assert check(cfg) == []


def test_check_reports_an_image_missing_from_image_sop(archive, hospital: synth.SynthResult) -> None:
    cfg = archive()
    _send(cfg, hospital.good()[:5], "first")
    con = catalogue.connect(cfg.duckdb)
    try:
        con.execute("DELETE FROM image_sop WHERE rowid = (SELECT min(rowid) FROM image_sop)")
        con.execute("INSERT INTO image_sop VALUES (0, now())")  # same count: not rebuilt at open
    finally:
        con.close()
    # the hand-made row is not in the SOP-instance index either, which still claims to match
    assert check(cfg) == ["images_missing_from_image_sop: 1", "image_sop_rows_missing_from_sop_index: 1"]


def test_copies_merged_in_later_chunks_of_one_run_are_duplicates(archive, hospital: synth.SynthResult) -> None:
    """Each chunk of a run finds the images the chunks before it catalogued (one connection)."""
    files = hospital.good()
    cfg = archive(ingest={"batch_size": 5, "workers": 1, "fsync": False, "merge_chunk_rows": 5})
    landing = Path(cfg.landing[0].root)
    for tag in ("a", "b"):
        for i, f in enumerate(files):
            shutil.copy(f.path, landing / f"{tag}-{i}.dcm")
    summary = run_ingest(cfg)
    assert summary["catalogued"] == len(files) and summary["duplicates"] == len(files)
    assert check(cfg) == []
