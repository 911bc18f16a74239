"""Cohort export (``pacs export``): from a selection to verified files, on real DICOM files.

A synthetic archive is ingested, its old studies moved offline (per file on local disk, and
packed in series tars on moto's S3) and one recalled. Each selector exports exactly the instances
the catalogue says it names, from the fastest copy, with the catalogue's sha256, in
``patient/study/series/sop.dcm``; the archive is unchanged; a corrupt online copy is replaced by
the offline one; a killed export resumes; an S3 target works.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from helpers import ROOT
from helpers import query as _q

from pacs import synth
from pacs.errors import UsageError
from pacs.export.export import STATE, export, selection
from pacs.intake import run_ingest
from pacs.tiers.lifecycle import run_lifecycle
from pacs.tiers.recall import recall

DAY = dt.date(2026, 6, 1)
BUCKET = "pacs-offline"


def _build(archive: Any, *, offline: str | None = None, packing: bool = False) -> Any:
    overrides: dict[str, Any] = {"policy": {"online_retention_years": 3, "packing": packing}}
    if offline:
        overrides["offline"] = offline
    cfg = archive(**overrides)
    synth.generate_archive(Path(cfg.landing[0].root), seed=51, patients=6, start=dt.date(2020, 1, 1),
                           end=dt.date(2025, 12, 31), count_scale=0.03, size_scale=0.03)
    run_ingest(cfg)
    run_lifecycle(cfg, logical_date=DAY)
    uid = _q(cfg, "SELECT min(study_instance_uid) FROM study WHERE tier_state = 'offline'")[0][0]
    recall(cfg, study_uids=[uid], logical_date=DAY)
    return cfg


def _archive_state(cfg: Any) -> tuple[Any, ...]:
    """Everything an export must leave alone: catalogue rows and every file of the tiers."""
    from pacs import store

    rows = _q(cfg, "SELECT sop_instance_uid, tier, uri, online_uri, offline_uri, sha256 FROM image ORDER BY 1")
    files = {loc.name: sorted(store.iter_files(loc)) for loc in (cfg.online, cfg.offline, cfg.quarantine)}
    return rows, files


def _expected(cfg: Any, where: str, params: dict[str, Any] | None = None) -> dict[str, str]:
    return dict(_q(cfg, f"SELECT i.sop_instance_uid, i.sha256 FROM image i JOIN study s USING (study_instance_uid) "
                        f"WHERE {where}", params))


def _exported(root: Path) -> dict[str, str]:
    return {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.dcm")}


@pytest.mark.parametrize("where,packing", [("local", False), ("s3", True)], ids=["local-per-file", "s3-packed"])
def test_each_selector_exports_exactly_its_instances_verified(archive, request, tmp_path: Path, where: str,
                                                              packing: bool) -> None:
    offline = None
    if where == "s3":
        from helpers import s3fs_for

        s3fs_for(request.getfixturevalue("s3")).mkdir(BUCKET)
        offline = f"s3://{BUCKET}/archive"
    cfg = _build(archive, offline=offline, packing=packing)
    before = _archive_state(cfg)
    offline_study, accession = _q(cfg, "SELECT study_instance_uid, accession_number FROM study "
                                       "WHERE tier_state = 'offline' ORDER BY 1 DESC LIMIT 1")[0]
    patient = _q(cfg, "SELECT patient_id FROM study WHERE tier_state = 'online' ORDER BY 1 LIMIT 1")[0][0]
    cases = {
        "study": (dict(studies=[offline_study]), "s.study_instance_uid = $v", offline_study),
        "accession": (dict(accessions=[accession]), "s.accession_number = $v", accession),
        "patient": (dict(patient_ids=[patient]), "s.patient_id = $v", patient),
        "query": (dict(query="SELECT study_instance_uid FROM study WHERE list_contains(modalities_in_study, 'CT')"),
                  "list_contains(s.modalities_in_study, $v)", "CT"),
    }
    tiers: set[str] = set()
    for name, (selector, where_sql, value) in cases.items():
        out_dir = tmp_path / f"out-{name}"
        out = export(cfg, str(out_dir), selection(cfg, **selector))
        expected = _expected(cfg, where_sql, {"v": value})
        assert expected and _exported(out_dir) == expected, name
        manifest = pq.read_table(out_dir / "manifest.parquet").to_pylist()
        assert {r["sop_instance_uid"]: r["sha256"] for r in manifest} == expected
        assert all(r["verified"] for r in manifest) and out["files"] == len(expected)
        for r in manifest:  # a readable layout: patient / study / series / sop
            _patient_dir, study, series, sop = r["path"].split("/")
            assert (study, series, sop) == (r["study_instance_uid"], r["series_instance_uid"],
                                            r["sop_instance_uid"] + ".dcm")
        assert (out_dir / "manifest.csv").read_text().count("\n") == len(expected) + 1
        tiers |= {r["source_tier"] for r in manifest}
    assert tiers == {"online", "offline-packed" if packing else "offline"}
    assert _archive_state(cfg) == before  # the archive is never changed


def test_a_corrupt_online_copy_is_read_from_the_offline_tier(archive, tmp_path: Path) -> None:
    cfg = _build(archive)
    uid, _sop, online = _q(cfg, "SELECT study_instance_uid, sop_instance_uid, online_uri FROM image "
                               "WHERE online_uri IS NOT NULL AND offline_uri IS NOT NULL ORDER BY 2 LIMIT 1")[0]
    path = Path(cfg.online.path_of_uri(online))
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    out = export(cfg, str(tmp_path / "out"), selection(cfg, studies=[uid]))
    assert out["corrupt_copies"] == 1
    assert _exported(tmp_path / "out") == _expected(cfg, "s.study_instance_uid = $v", {"v": uid})


def test_a_killed_export_resumes_and_ends_as_one_run(archive, tmp_path: Path) -> None:
    cfg = _build(archive)
    target = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys, time; sys.path.insert(0, {str(ROOT / 'plugins')!r})
        from pacs.config import load_config
        import pacs.export.export as e
        e.CHUNK = 3
        real = e._write_parquet
        def slow(*a, **k):
            real(*a, **k); time.sleep(0.2)
        e._write_parquet = slow
        cfg = load_config({str(cfg.path)!r})
        e.export(cfg, {str(target)!r}, e.selection(cfg, query="SELECT study_instance_uid FROM study"), workers=2)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.monotonic() + 120
    while len(list(target.glob(f"{STATE}/*/part-*.parquet"))) < 2:
        assert proc.poll() is None, "the export ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (target / "manifest.parquet").exists()

    import pacs.export.export as e

    old = e.CHUNK
    e.CHUNK = 3
    try:
        out = export(cfg, str(target), selection(cfg, query="SELECT study_instance_uid FROM study"))
    finally:
        e.CHUNK = old
    expected = _expected(cfg, "true")
    assert out["resumed_files"] >= 6 and out["files"] + out["resumed_files"] == len(expected)
    assert _exported(target) == expected
    assert len(pq.read_table(target / "manifest.parquet")) == len(expected)


def test_an_s3_target(archive, s3, tmp_path: Path) -> None:
    from helpers import s3fs_for

    fs = s3fs_for(s3)
    fs.mkdir("cohorts")
    cfg = _build(archive)
    uid = _q(cfg, "SELECT min(study_instance_uid) FROM study")[0][0]
    out = export(cfg, "s3://cohorts/study-1", selection(cfg, studies=[uid]))
    expected = _expected(cfg, "s.study_instance_uid = $v", {"v": uid})
    got = {p.rsplit("/", 1)[-1].removesuffix(".dcm"): hashlib.sha256(fs.cat_file(p)).hexdigest()
           for p in fs.find("cohorts/study-1") if p.endswith(".dcm")}
    assert got == expected and out["files"] == len(expected)
    assert fs.exists("cohorts/study-1/manifest.csv")


def test_mistakes_are_refused_before_anything_is_written(archive, tmp_path: Path) -> None:
    cfg = archive()
    synth.generate_archive(Path(cfg.landing[0].root), seed=52, patients=1, count_scale=0.02, size_scale=0.02)
    run_ingest(cfg)
    with pytest.raises(UsageError, match="nothing selected"):
        selection(cfg)
    with pytest.raises(UsageError, match="not catalogued"):
        export(cfg, str(tmp_path / "a"), selection(cfg, studies=["1.2.3.4"]))
    with pytest.raises(UsageError, match="not a valid UID"):
        selection(cfg, studies=["../../etc"])
    with pytest.raises(UsageError, match="must return at least one of the columns"):
        selection(cfg, query="SELECT count(*) AS n FROM study")
    with pytest.raises(UsageError, match="inside the archive"):
        export(cfg, cfg.online.root + "/cohort", selection(cfg, query="SELECT study_instance_uid FROM study"))
    assert not (tmp_path / "a").exists()


# --- de-identified exports ---------------------------------------------------------------------

KEY = "analysts-pseudonym-key-0123456789"


def _small_archive(archive: Any, seeds: tuple[int, ...] = (61,), burned_in: int = 0) -> Any:
    """An archive of small MR studies (one per seed, 6 images in 2 series), the first ``burned_in``
    files of the first study marked BurnedInAnnotation YES before ingest."""
    import pydicom

    cfg = archive()
    for seed in seeds:
        synth.generate_small_files(Path(cfg.landing[0].root) / f"set-{seed}", 6, seed=seed, per_series=3)
    first = Path(cfg.landing[0].root) / f"set-{seeds[0]}"
    for path in sorted(p for p in first.rglob("*") if p.is_file())[:burned_in]:
        ds = pydicom.dcmread(path)
        ds.BurnedInAnnotation = "YES"
        ds.save_as(path)
    assert run_ingest(cfg)["catalogued"] == 6 * len(seeds)
    return cfg


def _pacs_export(cfg: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"), "PACS_PSEUDONYM_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "pacs.cli", "--config", str(cfg.path), "export", *args],
                          capture_output=True, text=True, timeout=180, env=env)


def test_a_burned_in_instance_is_left_out_listed_and_the_export_is_partial(archive, tmp_path: Path) -> None:
    import csv

    import pydicom

    from pacs.export.deidentify import Deidentifier

    cfg = _small_archive(archive, burned_in=1)
    rows = _q(cfg, "SELECT patient_id, study_instance_uid, series_instance_uid, sop_instance_uid FROM image "
                   "JOIN study USING (study_instance_uid)")
    refused_sops = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                    for p in Path(cfg.online.root).rglob("*.dcm")
                    if pydicom.dcmread(p, stop_before_pixels=True).get("BurnedInAnnotation") == "YES"}
    assert len(refused_sops) == 1
    (study,), target = {r[1] for r in rows}, tmp_path / "cohort"
    deid = Deidentifier(KEY.encode())

    got = _pacs_export(cfg, "--to", str(target), "--study", study, "--deidentify")
    assert got.returncode == 1, got.stderr
    note = got.stderr.splitlines()[-1]  # one line says what happened and where the list is
    assert note.startswith("pacs export: partial: 5 of 6 instance(s)") and "1 refused" in note
    assert "burned_in_annotation" in note and note.endswith(str(target / "refused.csv"))
    out = json.loads(got.stdout)
    assert (out["status"], out["refused"], out["files"]) == ("partial", 1, 5)

    (sop,) = refused_sops
    with open(target / "refused.csv", newline="") as f:
        listed = list(csv.DictReader(f))
    assert [(r["sop_instance_uid"], r["reason"]) for r in listed] == [(deid.uid(sop), "burned_in_annotation")]
    manifest = pq.read_table(target / "manifest.parquet").to_pylist()
    assert len(manifest) == 5 and deid.uid(sop) not in {r["sop_instance_uid"] for r in manifest}
    assert len(list(target.rglob("*.dcm"))) == 5
    originals = {v for row in rows for v in row}
    text = (target / "refused.csv").read_text() + (target / "manifest.csv").read_text() + got.stderr + got.stdout
    assert not {v for v in originals if v in text}  # neither the patient nor an original UID

    again = _pacs_export(cfg, "--to", str(target), "--study", study, "--deidentify")  # resumed: the same verdict
    assert again.returncode == 1 and json.loads(again.stdout)["refused"] == 1
    assert json.loads(again.stdout)["resumed_files"] == 6


def test_a_deidentified_file_names_the_catalogue_patient_after_a_merge(archive, tmp_path: Path) -> None:
    import pydicom

    from pacs.admin.corrections import patient_merge
    from pacs.analyst.deid import pseudonym

    cfg = _small_archive(archive, seeds=(62, 63))
    (old, study, images), = _q(cfg, "SELECT patient_id, study_instance_uid, image_count FROM study ORDER BY 1, 2 "
                                    "LIMIT 1")
    (into,), = _q(cfg, "SELECT patient_id FROM study WHERE patient_id <> $p LIMIT 1", {"p": old})
    patient_merge(cfg, from_patient=old, into_patient=into, reason="duplicate registration", run_id="test-merge")

    out = export(cfg, str(tmp_path / "cohort"), selection(cfg, studies=[study]), deidentify=True, key=KEY.encode())
    files = sorted((tmp_path / "cohort").rglob("*.dcm"))
    assert out["status"] == "complete" and len(files) == out["files"] == images
    expected = pseudonym(KEY.encode(), "patient", into)
    assert {pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in files} == {expected}
    assert {p.relative_to(tmp_path / "cohort").parts[0] for p in files} == {expected}
