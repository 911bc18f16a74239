"""The catalogue lost and got back: ``pacs rebuild`` from the tiers alone, ``pacs backup`` / ``restore``.

A synthetic archive with bad files is ingested, the lifecycle moves its old studies offline
(per file, or packed in series tars; on local disk and on moto's S3) and one study is recalled.
Then the catalogue is deleted and rebuilt from the online files, the offline objects (inside the
tars too) and the quarantine's sidecars: patient, study, series and image must equal the
originals row for row on what files hold, ``pacs check`` must be clean, and with a backup the
history no file holds (received times, recall pins, corrections, lifecycle runs) must come back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT
from helpers import query as _q

from pacs import synth
from pacs.catalogue import backup as backups
from pacs.catalogue import rebuild as rebuilds
from pacs.catalogue.checks import check
from pacs.errors import CorruptCopyError, UsageError
from pacs.intake import run_ingest
from pacs.tiers.lifecycle import run_lifecycle
from pacs.tiers.recall import recall

DAY = dt.date(2026, 6, 1)
BUCKET = "pacs-offline"

# What the files hold, per table (the columns a rebuild must give back exactly).
IMAGE = ("sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid, instance_number, content_date, "
         "transfer_syntax_uid, rows, columns, number_of_frames, bits_allocated, sha256, size_bytes, tier, uri, "
         "online_uri, offline_uri, offline_offset, offline_length")
SERIES = ("series_instance_uid, study_instance_uid, modality, series_number, series_description, series_date, "
          "body_part_examined, manufacturer, manufacturer_model_name, station_name, image_count, size_bytes")
STUDY = ("study_instance_uid, patient_id, study_date, study_time, accession_number, study_id, study_description, "
         "referring_physician_name, institution_name, patient_age, modalities_in_study, series_count, image_count, "
         "size_bytes, online_image_count, offline_image_count, tier_state")
PATIENT = ("patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex, study_count, "
           "first_study_date, last_study_date")
QUARANTINE = "quarantine_id, batch_id, source_uri, quarantine_uri, sidecar_uri, reason, detail, sha256, size_bytes"
# the departmental tables (acquisition parameters, dose reports and events) are read from the headers too
DEPARTMENTAL = ("ct_acquisition", "mr_acquisition", "dx_exposure", "us_acquisition", "dose_report", "dose_event")
TABLES = {"patient": PATIENT, "study": STUDY, "series": SERIES, "image": IMAGE, "quarantine": QUARANTINE,
          **{t: "* EXCLUDE (created_at, updated_at)" for t in DEPARTMENTAL}}
# ... and what only the catalogue knew, which a backup gives back.
HISTORY = {
    "image": "sop_instance_uid, received_at, ingested_at, batch_id",
    "study": "study_instance_uid, patient_id, header_patient_id, pinned_until, first_received_at, last_received_at",
    "patient": "patient_id, merged_into",
    "lifecycle_run": "*", "lifecycle_plan": "*", "recall": "*", "correction": "*", "ingest_batch": "*",
    "quarantine": "quarantine_id, status, quarantined_at",
    **{t: "sop_instance_uid, created_at" for t in DEPARTMENTAL},  # dated as their images were ingested
}


def _rows(cfg: Any, tables: dict[str, str]) -> dict[str, list[tuple]]:
    return {t: _q(cfg, f"SELECT {cols} FROM {t} ORDER BY ALL") for t, cols in tables.items()}


def _build(archive: Any, tmp_path: Path, *, offline: str | None = None, packing: bool = False) -> Any:
    overrides: dict[str, Any] = {"policy": {"online_retention_years": 3, "packing": packing}}
    if offline:
        overrides["offline"] = offline
    cfg = archive(**overrides)
    landing = Path(cfg.landing[0].root)
    good = synth.generate_archive(landing / "all", seed=31, patients=8, start=dt.date(2020, 1, 1),
                                  end=dt.date(2025, 12, 31), count_scale=0.03, size_scale=0.03,
                                  dose_reports=True)
    synth.generate_bad_files(landing / "bad", seed=32, reference=good)
    run_ingest(cfg)
    run_lifecycle(cfg, logical_date=DAY)
    offline_study = _q(cfg, "SELECT min(study_instance_uid) FROM study WHERE tier_state = 'offline'")[0][0]
    recall(cfg, study_uids=[offline_study], logical_date=DAY, pin_until=DAY + dt.timedelta(days=30))
    return cfg


def _lose(cfg: Any) -> None:
    """The catalogue file is gone (disk lost): nothing of it remains beside the tiers."""
    for p in cfg.duckdb.parent.glob(cfg.duckdb.name + "*"):
        if p.is_dir():
            import shutil

            shutil.rmtree(p)
        else:
            p.unlink()


def _s3_offline(s3: Any) -> str:
    from helpers import s3fs_for

    s3fs_for(s3).mkdir(BUCKET)
    return f"s3://{BUCKET}/archive"


@pytest.mark.parametrize("where,packing", [("local", False), ("s3", True), ("s3", False)],
                         ids=["local-per-file", "s3-packed", "s3-per-file"])
def test_rebuild_from_the_tiers_equals_the_original(archive, request, tmp_path: Path, where: str,
                                                    packing: bool) -> None:
    offline = _s3_offline(request.getfixturevalue("s3")) if where == "s3" else None
    cfg = _build(archive, tmp_path, offline=offline, packing=packing)
    before = _rows(cfg, TABLES)
    assert any(r[14] == r[16] and r[13] == "offline" for r in before["image"])  # some images offline only
    assert any(r[15] and r[16] for r in before["image"])                       # the recalled study: both
    if packing:
        assert any(r[17] is not None for r in before["image"])
    _lose(cfg)

    out = rebuilds.rebuild(cfg)

    assert all(before[t] for t in ("ct_acquisition", "mr_acquisition", "dose_report", "dose_event"))
    after = _rows(cfg, TABLES)
    for table in TABLES:
        assert after[table] == before[table], table
    assert check(cfg) == []
    assert out["counts"]["image"] == len(before["image"]) and out["problems"] == 0
    assert out["from_backup"] is None and "recalls and their pins" in out["not_rebuilt"]
    # an object the store verified at the put (S3's recorded sha256) is read up to its pixel data only
    assert (out["read_header_only"] > 0) == (where == "s3" and not packing)
    assert not rebuilds.state_dir(cfg).exists()
    # analysts see the rebuilt catalogue (the snapshot was rewritten whole)
    from pacs.analyst.query import run_query

    assert run_query(cfg, "SELECT count(*) FROM image").column(0)[0].as_py() == len(before["image"])


def test_a_backup_gives_back_what_no_file_holds(archive, tmp_path: Path) -> None:
    from pacs.admin.corrections import patient_merge

    cfg = _build(archive, tmp_path)
    a, b = (r[0] for r in _q(cfg, "SELECT patient_id FROM patient ORDER BY 1 LIMIT 2"))
    patient_merge(cfg, from_patient=a, into_patient=b, reason="duplicate registration", run_id="test")
    before, history = _rows(cfg, TABLES), _rows(cfg, HISTORY)
    taken = backups.backup(cfg)
    assert taken["generation"] == 1 and taken["counts"]["image"] == len(before["image"])
    _lose(cfg)

    out = rebuilds.rebuild(cfg)

    assert out["from_backup"] == 1 and out["not_rebuilt"] == []
    assert _rows(cfg, TABLES) == before
    assert _rows(cfg, HISTORY) == history
    assert check(cfg) == []


def test_restore_equals_the_backup_and_keeps_what_it_replaces(archive, tmp_path: Path) -> None:
    cfg = _build(archive, tmp_path)
    before, history = _rows(cfg, TABLES), _rows(cfg, HISTORY)
    first = backups.backup(cfg)
    # the catalogue changes after the backup: a second recall pin
    uid = _q(cfg, "SELECT study_instance_uid FROM study WHERE tier_state = 'offline' ORDER BY 1 DESC LIMIT 1")[0][0]
    recall(cfg, study_uids=[uid], logical_date=DAY)
    backups.backup(cfg)

    with pytest.raises(UsageError, match="--force"):
        backups.restore(cfg, first["generation"])
    out = backups.restore(cfg, first["generation"], force=True)

    assert _rows(cfg, TABLES) == before and _rows(cfg, HISTORY) == history
    assert out["replaced"] and Path(out["replaced"]).exists()  # the replaced catalogue is kept
    assert check(cfg) == []
    from pacs.analyst.query import run_query

    pinned = sum(1 for r in history["study"] if r[3] is not None)
    assert run_query(cfg, "SELECT count(*) FROM study WHERE pinned_until IS NOT NULL").column(0)[0].as_py() == pinned


def test_generations_are_kept_verified_and_pruned(archive, tmp_path: Path) -> None:
    cfg = archive(backup={"keep": 2})
    landing = Path(cfg.landing[0].root)
    synth.generate_archive(landing, seed=5, patients=2, count_scale=0.02, size_scale=0.02)
    run_ingest(cfg)
    for _ in range(3):
        backups.backup(cfg)
    assert [g.number for g in backups.generations(cfg)] == [2, 3]
    # a damaged object is refused at restore, never put in place
    gen = backups.generations(cfg)[-1]
    obj = Path(cfg.offline.path(f"{gen.key}/catalogue.duckdb"))
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    _lose(cfg)
    with pytest.raises(CorruptCopyError, match="sha256"):
        backups.restore(cfg)
    assert not cfg.duckdb.exists()
    backups.restore(cfg, 2)
    assert check(cfg) == []
    # backups are not images: fixity finds no orphan among them
    from pacs.tiers.fixity import run_fixity

    run_fixity(cfg, logical_date=DAY)
    assert _q(cfg, "SELECT count(*) FROM fixity_finding WHERE kind = 'orphan'")[0][0] == 0


def test_rebuild_refuses_to_overwrite_a_catalogue(archive, tmp_path: Path) -> None:
    cfg = archive()
    synth.generate_archive(Path(cfg.landing[0].root), seed=6, patients=1, count_scale=0.02, size_scale=0.02)
    run_ingest(cfg)
    with pytest.raises(UsageError, match="--force"):
        rebuilds.rebuild(cfg)
    n = _q(cfg, "SELECT count(*) FROM image")[0][0]
    out = rebuilds.rebuild(cfg, force=True)
    assert out["counts"]["image"] == n and Path(out["replaced"]).exists()


def test_a_rebuild_killed_halfway_ends_as_one_run(archive, tmp_path: Path) -> None:
    cfg = _build(archive, tmp_path, packing=True)
    before = _rows(cfg, TABLES)
    _lose(cfg)
    folder = rebuilds.state_dir(cfg)
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT / 'plugins')!r})
        from pacs.config import load_config
        import pacs.catalogue.rebuild as r
        r.UNIT_FILES = 4
        r.rebuild(load_config({str(cfg.path)!r}), workers=1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})
    deadline = time.monotonic() + 120
    while len(list((folder / "parts").glob("images-*.parquet"))) < 3:
        assert proc.poll() is None, "the rebuild ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((folder / "state.json").read_text())
    assert not cfg.duckdb.exists()

    out = rebuilds.rebuild(cfg)

    assert out["rebuild_id"] == state["rebuild_id"] and out["resumed"]
    assert 0 < out["files_read"] < out["files"]
    assert _rows(cfg, TABLES) == before
    assert check(cfg) == []
