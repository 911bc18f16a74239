"""Rejection through ``pacs reject`` (a real process of ``python -m pacs.cli``), on a real DuckDB
catalogue and real DICOM files.

A rejection of a study, a series or one SOP instance records a ``rejection`` row per catalogued
instance (the first rejection stands; a repeat adds nothing). A rejected instance is kept (file
and image row) but left out of the analysts' views (snapshot and live), of lifecycle plans (not
migrated; a study entirely rejected is not planned), of the capacity figures and of recall; the
de-identified views show rejections only as counts. A user's mistake is one line on stderr and
exit status 2, changing nothing; ``pacs check`` stays clean and finds a rejection row that
contradicts the catalogue.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import ROOT, write_config
from helpers import query as _q
from pydicom.uid import generate_uid

from pacs import synth
from pacs.config import load_config
from pacs.intake import run_ingest

T0 = 1_700_000_000
KEY = "test-pseudonym-key-0123456789"


def _pacs(cfg: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin", "HOME": str(Path(cfg.path).parent)}
    return subprocess.run([sys.executable, "-m", "pacs.cli", "--config", str(cfg.path), *args], capture_output=True,
                          text=True, timeout=120, cwd=Path(cfg.path).parent, env={**base, **env})


def _json_query(cfg: Any, query: str, *options: str, **env: str) -> list[dict[str, Any]]:
    out = _pacs(cfg, "query", "--format", "json", *options, query, **env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Landing:
    """Writes small CT files of chosen study and series into landing, in received order."""

    def __init__(self, cfg: Any, tmp: Path) -> None:
        src = synth.generate_ct_slices(tmp / "ct", 1, per_series=1, rows=16, columns=16)
        self.template = pydicom.dcmread(next(iter(src.good())).path)
        self.cfg, self.n = cfg, 0

    def file(self, study: str, series: str, *, patient: str = "P-1", date: str = "20150301") -> str:
        ds = copy.deepcopy(self.template)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        self.n += 1
        out = Path(self.cfg.landing[0].root) / f"f{self.n:03d}.dcm"
        pydicom.dcmwrite(out, ds)
        os.utime(out, (T0 + self.n, T0 + self.n))
        return ds.SOPInstanceUID


@pytest.fixture
def archive_of_two_studies(tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """S1: series A (2 images) and B (2 images); S2: series C (1 image). All of 2015."""
    cfg = load_config(write_config(tmp_path / "archive"))
    land = Landing(cfg, tmp_path)
    u: dict[str, Any] = {k: generate_uid() for k in ("S1", "S2", "A", "B", "C")}
    u["a"] = [land.file(u["S1"], u["A"]) for _ in range(2)]
    u["b"] = [land.file(u["S1"], u["B"]) for _ in range(2)]
    u["c"] = [land.file(u["S2"], u["C"])]
    assert run_ingest(cfg)["catalogued"] == 5
    return cfg, u


def _rows(cfg: Any) -> dict[str, tuple[Any, ...]]:
    return {r[0]: r[1:] for r in _q(cfg, "SELECT sop_instance_uid, series_instance_uid, study_instance_uid, code, "
                                         "meaning, source, note_sop_instance_uid, reason, run_id FROM rejection")}


def test_reject_by_series_sop_and_study_records_one_row_per_instance_and_the_first_stands(
        archive_of_two_studies: tuple[Any, dict[str, Any]]) -> None:
    cfg, u = archive_of_two_studies
    out = _pacs(cfg, "reject", "--series", u["A"], "--reason", "113001", "--note", "motion blur")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"action": "reject", "level": "series", "code": "113001", "instances": 2,
                                      "rejected": 2, "already_rejected": 0}
    again = _pacs(cfg, "reject", "--sop", u["a"][0], "--reason", "113039")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rejected"] == 0 and json.loads(again.stdout)["already_rejected"] == 1
    study = _pacs(cfg, "reject", "--study", u["S1"], "--reason", "113037")
    assert json.loads(study.stdout)["instances"] == 4 and json.loads(study.stdout)["rejected"] == 2

    rows = _rows(cfg)
    assert set(rows) == {*u["a"], *u["b"]}
    for sop in u["a"]:   # the first rejection stands
        assert rows[sop][:7] == (u["A"], u["S1"], "113001", "Rejected for Quality Reasons", "cli", None,
                                 "motion blur")
        assert rows[sop][7].startswith("cli-")
    for sop in u["b"]:
        assert rows[sop][:7] == (u["B"], u["S1"], "113037", "Rejected for Patient Safety Reasons", "cli", None, None)
    # kept: files and image rows stay
    assert _q(cfg, "SELECT count(*) FROM image")[0][0] == 5
    assert all(Path(p).exists() for (p,) in _q(cfg, "SELECT online_uri FROM image"))
    check = _pacs(cfg, "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_retried_rejection_of_the_same_run_adds_nothing(archive_of_two_studies: tuple[Any, dict[str, Any]]) -> None:
    from pacs.admin import reject

    cfg, u = archive_of_two_studies
    first = reject(cfg, study=u["S2"], code="113038", run_id="manual__r")
    again = reject(cfg, study=u["S2"], code="113038", run_id="manual__r")
    assert (first["rejected"], again["rejected"], again["already_rejected"]) == (1, 0, 1)
    assert _q(cfg, "SELECT count(*), any_value(code) FROM rejection") == [(1, "113038")]


def test_a_users_mistake_is_one_line_and_exit_status_2_and_changes_nothing(
        archive_of_two_studies: tuple[Any, dict[str, Any]]) -> None:
    cfg, u = archive_of_two_studies
    mistakes = {
        "unknown code": ("--study", u["S1"], "--reason", "999999"),
        "free text as code": ("--study", u["S1"], "--reason", "bad quality"),
        "unknown study": ("--study", "1.2.3.4", "--reason", "113001"),
        "unknown series": ("--series", "1.2.3.4", "--reason", "113001"),
        "unknown sop": ("--sop", "1.2.3.4", "--reason", "113001"),
    }
    for what, args in mistakes.items():
        out = _pacs(cfg, "reject", *args)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 2, (what, out.stderr)
        assert len(lines) == 1 and lines[0].startswith("pacs reject: "), (what, out.stderr)
        assert "Traceback" not in out.stderr
    for args in (("--study", u["S1"], "--series", u["A"], "--reason", "113001"), ("--reason", "113001"),
                 ("--study", u["S1"])):
        out = _pacs(cfg, "reject", *args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert _q(cfg, "SELECT count(*) FROM rejection")[0][0] == 0


def test_rejected_instances_are_left_out_of_views_lifecycle_capacity_and_recall(
        archive_of_two_studies: tuple[Any, dict[str, Any]]) -> None:
    from pacs.reports import capacity
    from pacs.tiers.lifecycle import run_lifecycle
    from pacs.tiers.recall import recall

    cfg, u = archive_of_two_studies
    size = {sop: b for sop, b in _q(cfg, "SELECT sop_instance_uid, size_bytes FROM image")}
    assert _pacs(cfg, "reject", "--series", u["A"], "--reason", "113001").returncode == 0
    assert _pacs(cfg, "reject", "--study", u["S2"], "--reason", "113038").returncode == 0
    kept = sum(size[s] for s in u["b"])

    # analysts' views, on the snapshot and live: S1 with series B only, S2 gone
    for options in ((), ("--live",)):
        studies = _json_query(cfg, "SELECT study_instance_uid, series_count, image_count, size_bytes, "
                                   "modalities_in_study FROM study_patient", *options)
        assert studies == [{"study_instance_uid": u["S1"], "series_count": 1, "image_count": 2, "size_bytes": kept,
                            "modalities_in_study": ["CT"]}], options
        assert _json_query(cfg, "SELECT sum(series)::INT AS series, sum(images)::INT AS images, "
                                "sum(bytes)::INT AS bytes FROM daily_volume", *options) == [
            {"series": 1, "images": 2, "bytes": kept}]
        assert _json_query(cfg, "SELECT sum(images)::INT AS images FROM modality_mix", *options) == [{"images": 2}]
        assert _json_query(cfg, "SELECT study_instance_uid, image_count, online_image_count FROM study_tier_status",
                           *options) == [{"study_instance_uid": u["S1"], "image_count": 2, "online_image_count": 2}]
        assert _json_query(cfg, "SELECT images::INT AS images, bytes::INT AS bytes FROM study_tier_bytes",
                           *options) == [{"images": 2, "bytes": kept}]
        assert {r["s"] for r in _json_query(cfg, "SELECT sop_instance_uid AS s FROM accepted_image",
                                            *options)} == set(u["b"])
        # the tables keep every instance; the snapshot holds the rejections
        assert _json_query(cfg, "SELECT (SELECT count(*) FROM image)::INT AS images, "
                                "(SELECT count(*) FROM rejection)::INT AS rejections", *options) == [
            {"images": 5, "rejections": 3}]

    # de-identified: no identities, rejections only as counts (a cell under 11 studies is left out)
    deid = {"PACS_PSEUDONYM_KEY": KEY}
    assert _json_query(cfg, "SELECT * FROM deid_rejections", "--deidentified", **deid) == []
    assert _json_query(cfg, "SELECT series_count, image_count FROM deid_study", "--deidentified", **deid) == [
        {"series_count": 1, "image_count": 2}]
    assert _json_query(cfg, "SELECT study_count FROM deid_patient", "--deidentified", **deid) == [{"study_count": 1}]
    assert _json_query(cfg, "SELECT count(*)::INT AS n FROM deid_series", "--deidentified", **deid) == [{"n": 1}]
    names = _pacs(cfg, "query", "--deidentified", "--format", "json", "SELECT * FROM deid_rejections", **deid)
    assert u["S1"] not in names.stdout and u["S2"] not in names.stdout

    # capacity figures: only the accepted images, S2 is no study
    as_of = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    for source in ("live", "snapshot"):
        ex = capacity.extract(cfg, as_of, source=source)
        assert sum(ex.image_cube.column("images").to_pylist()) == 2, source
        assert sum(ex.image_cube.column("bytes").to_pylist()) == kept, source
        assert sum(ex.study_cube.column("studies").to_pylist()) == 1, source
        assert sum(ex.study_groups.column("images").to_pylist()) == 2, source
        assert ex.patients == 1, source

    # lifecycle: S1 is planned with its accepted images only, S2 (entirely rejected) is not planned
    day = dt.date(2026, 6, 1)
    out = run_lifecycle(cfg, logical_date=day, run_id="t1")
    assert _q(cfg, "SELECT study_instance_uid, images FROM lifecycle_plan WHERE evict") == [(u["S1"], 2)]
    assert out["switch"]["studies_moved_offline"] == 1
    tiers = {sop: (t, on is not None, off is not None)
             for sop, t, on, off in _q(cfg, "SELECT sop_instance_uid, tier, online_uri, offline_uri FROM image")}
    assert all(tiers[s] == ("offline", False, True) for s in u["b"])
    assert all(tiers[s] == ("online", True, False) for s in (*u["a"], *u["c"])), "a rejected instance is not migrated"
    assert run_lifecycle(cfg, logical_date=day, run_id="t2")["plan"]["studies"] == 0

    # recall: a rejected instance is not brought back online
    assert _pacs(cfg, "reject", "--sop", u["b"][0], "--reason", "113039").returncode == 0
    back = recall(cfg, study_uids=[u["S1"]], logical_date=day, run_id="r1")
    assert back["images_copied"] == 1
    assert _q(cfg, "SELECT online_uri IS NULL FROM image WHERE sop_instance_uid = $s", {"s": u["b"][0]}) == [(True,)]
    check = _pacs(cfg, "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_deidentified_rejection_counts_appear_once_a_cell_has_11_studies(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "archive"))
    land = Landing(cfg, tmp_path)
    studies = [generate_uid() for _ in range(11)]
    for i, study in enumerate(studies):
        land.file(study, generate_uid(), patient=f"P-{i}")
    assert run_ingest(cfg)["catalogued"] == 11
    for study in studies:
        assert _pacs(cfg, "reject", "--study", study, "--reason", "113001").returncode == 0
    rows = _json_query(cfg, "SELECT * FROM deid_rejections", "--deidentified", PACS_PSEUDONYM_KEY=KEY)
    assert rows == [{"code": "113001", "meaning": "Rejected for Quality Reasons", "source": "cli",
                     "rejected_year": dt.datetime.now(dt.UTC).year, "instances": 11, "studies": 11}]
    assert _json_query(cfg, "SELECT count(*)::INT AS n FROM deid_study", "--deidentified",
                       PACS_PSEUDONYM_KEY=KEY) == [{"n": 0}]


def test_pacs_check_finds_rejections_that_contradict_the_catalogue(
        archive_of_two_studies: tuple[Any, dict[str, Any]]) -> None:
    import duckdb

    cfg, u = archive_of_two_studies
    assert _pacs(cfg, "reject", "--study", u["S1"], "--reason", "113001").returncode == 0
    con = duckdb.connect(str(cfg.duckdb))  # damage the catalogue as no writer of the archive would
    con.execute("UPDATE rejection SET code = '999' WHERE sop_instance_uid = $s", {"s": u["a"][0]})
    con.execute("UPDATE rejection SET series_instance_uid = $x WHERE sop_instance_uid = $s",
                {"x": u["C"], "s": u["a"][1]})
    con.execute("UPDATE rejection SET source = 'kos', note_sop_instance_uid = '1.2.3.4' WHERE sop_instance_uid = $s",
                {"s": u["b"][0]})
    con.execute("INSERT INTO rejection SELECT * FROM rejection WHERE sop_instance_uid = $s", {"s": u["b"][1]})
    con.close()
    out = _pacs(cfg, "check")
    assert out.returncode == 1
    text = out.stdout + out.stderr
    for finding in ("duplicate_rejections: 1", "rejections_with_unknown_code: 1",
                    "kos_rejections_without_catalogued_note: 1", "rejections_disagreeing_with_catalogue: 1"):
        assert finding in text, text
