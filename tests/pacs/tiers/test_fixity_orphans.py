"""Orphans come home: online files the catalogue does not know are sent back through intake.

A small synthetic archive is ingested, then files the catalogue never committed are planted in
the online tier (as an ingest that crashed or raced would leave them): a valid image with new
UIDs at its layout path, garbage bytes, and a byte-identical second copy of a catalogued image.
Fixity moves them into landing's re-submission folder; intake then catalogues, quarantines or
counts each one, exactly as it judges any arrival.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import query as _q
from pydicom.uid import generate_uid

from pacs import synth
from pacs.catalogue.checks import check
from pacs.cli import main as pacs_main
from pacs.dicom.layout import image_key
from pacs.intake import finalize_batches, merge_batches, process_batch, run_ingest, sweep
from pacs.intake.quarantine import RESUBMIT_FOLDER
from pacs.tiers import fixity
from pacs.tiers.fixity import FixityError, plan, reconcile, record_and_repair, run_fixity, verify_chunk

DAY = dt.date(2026, 6, 1)
GARBAGE = b"these bytes were never a DICOM file " * 8


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plant(path: Path, data: bytes) -> Path:
    """Write a file into a tier as a crashed ingest would have left it: older than the audit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (0, 0))
    return path


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(params=[True, False], ids=["rename", "copy"])
def small_archive(request: pytest.FixtureRequest, archive: Callable[..., Any]) -> Any:
    """A few ingested studies; ``copy`` makes fixity (and intake) copy instead of renaming."""
    cfg = archive(ingest={"batch_size": 50, "workers": 2, "fsync": False, "rename": request.param})
    synth.generate_archive(Path(cfg.landing[0].root) / "drop", seed=5, patients=2, start=dt.date(2024, 1, 1),
                           end=dt.date(2025, 12, 31), count_scale=0.02, size_scale=0.03)
    first = run_ingest(cfg)
    assert first["catalogued"] > 2 and first["quarantined"] == 0
    assert _files(Path(cfg.landing[0].root)) == []
    return cfg


def _catalogued(cfg: Any, n: int = 1) -> list[tuple[str, str, str, str, str, dt.date]]:
    return _q(cfg, "SELECT i.online_uri, i.sha256, i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid, "
                   "s.study_date FROM image i JOIN study s USING (study_instance_uid) ORDER BY i.online_uri "
                   f"LIMIT {int(n)}")


def _new_image(cfg: Any, *, series_uid: str | None = None) -> tuple[Path, bytes, str]:
    """A valid image the catalogue does not know, at its own layout path in the online tier."""
    uri, _sha256, _sop, series, study, study_date = _catalogued(cfg)[0]
    ds = pydicom.dcmread(uri)
    sop = generate_uid()
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    tmp = Path(cfg.base) / "new-image.dcm"
    ds.save_as(tmp)
    data = tmp.read_bytes()
    tmp.unlink()
    path = Path(cfg.online.path(image_key(study_date, study, series_uid or series, sop)))
    return path, data, sop


def _steps_until_repair(cfg: Any, run_id: str) -> str:
    """Plan, verify and reconcile (the DAG's tasks before ``record``); returns the fixity id."""
    p = plan(cfg, logical_date=DAY, run_id=run_id)
    for chunk in p["chunks"]:
        verify_chunk(cfg, p["fixity_id"], chunk)
    for tier in ("online", "offline"):
        reconcile(cfg, p["fixity_id"], tier)
    return p["fixity_id"]


def test_online_orphans_are_reentered_and_intake_catalogues_quarantines_or_counts_them(small_archive: Any) -> None:
    cfg = small_archive
    online = Path(cfg.online.root)
    landing = Path(cfg.landing[0].root)
    images_before = _q(cfg, "SELECT count(*) FROM image")[0][0]
    valid_path, valid_bytes, valid_sop = _new_image(cfg)
    _plant(valid_path, valid_bytes)
    garbage = _plant(online / "2025/01/01/1.2.3/1.2.3.4/1.2.3.4.5.dcm", GARBAGE)
    dup_uri, dup_sha = _catalogued(cfg)[0][:2]
    copy = _plant(online / "strays/second-copy.dcm", Path(dup_uri).read_bytes())
    planted = {str(valid_path): _sha(valid_bytes), str(garbage): _sha(GARBAGE), str(copy): dup_sha}

    out = run_fixity(cfg, logical_date=DAY, run_id="f1")

    assert out["unresolved"] == 0
    assert out["orphans_reentered"] == 3 and out["orphans_left"] == 0
    assert out["findings"] == {"orphan": {"unresolved": 0, "repaired": 3}}
    rows = _q(cfg, "SELECT uri, repair, repaired_at IS NOT NULL, actual_sha256, detail FROM fixity_finding "
                   "WHERE kind = 'orphan' AND tier = 'online' AND fixity_id = $f", {"f": out["fixity_id"]})
    assert {r[0] for r in rows} == set(planted)
    resubmitted = landing / RESUBMIT_FOLDER / "orphans" / out["fixity_id"]
    for uri, repair, repaired, sha, detail in rows:
        assert repair == "reentered_intake" and repaired
        assert sha == planted[uri]
        dst = resubmitted / Path(uri).relative_to(online)
        assert str(dst) in detail
        assert _sha(dst.read_bytes()) == planted[uri], "landing holds exactly the orphan's bytes"
        assert not Path(uri).exists(), "the online tier no longer holds the orphan"
    assert _q(cfg, "SELECT count(*) FROM image")[0][0] == images_before, "fixity itself catalogues nothing"

    intake = run_ingest(cfg)

    assert (intake["catalogued"], intake["quarantined"], intake["duplicates"]) == (1, 1, 1)
    assert intake["reasons"] == {"not_dicom": 1}
    (online_uri, sha) = _q(cfg, "SELECT online_uri, sha256 FROM image WHERE sop_instance_uid = $s",
                           {"s": valid_sop})[0]
    assert online_uri == str(valid_path), "the valid orphan is back at its own layout path"
    assert sha == _sha(valid_bytes) == _sha(Path(online_uri).read_bytes())
    (reason, qsha, quri, source) = _q(cfg, "SELECT reason, sha256, quarantine_uri, source_uri FROM quarantine")[0]
    assert reason == "not_dicom" and qsha == _sha(GARBAGE)
    assert Path(quri).read_bytes() == GARBAGE, "the invalid orphan's original bytes are kept"
    assert source == str(resubmitted / garbage.relative_to(online))
    assert not copy.exists() and Path(dup_uri).is_file()
    assert _files(landing) == [], "intake took every re-entered orphan"

    again = run_fixity(cfg, logical_date=DAY + dt.timedelta(days=7), run_id="f2")

    assert again["findings"] == {} and again["orphans_reentered"] == 0 and again["unresolved"] == 0
    assert check(cfg) == []


def test_an_orphan_catalogued_between_reconcile_and_repair_is_not_moved(small_archive: Any) -> None:
    cfg = small_archive
    path, data, sop = _new_image(cfg)
    _plant(path, data)  # a racing ingest had published it but not yet committed it
    fixity_id = _steps_until_repair(cfg, "race")
    listed = [r["uri"] for r in fixity._read(cfg, fixity_id, "result-reconcile-online.parquet").to_pylist()]
    assert listed == [str(path)]
    _plant(Path(cfg.landing[0].root) / "resend" / "image.dcm", data)
    assert run_ingest(cfg)["catalogued"] == 1  # the intake commits it at the path the orphan holds

    out = record_and_repair(cfg, fixity_id)

    assert out["orphans_reentered"] == 0 and out["orphans_no_longer_orphans"] == 1
    assert out["findings"] == {}
    assert path.is_file() and _sha(path.read_bytes()) == _sha(data)
    assert _q(cfg, "SELECT online_uri, sha256 FROM image WHERE sop_instance_uid = $s", {"s": sop}) == [
        (str(path), _sha(data))]
    assert _files(Path(cfg.landing[0].root)) == []
    assert check(cfg) == []


def test_an_orphan_owned_by_an_ingest_batch_opened_after_reconcile_is_not_moved(small_archive: Any) -> None:
    cfg = small_archive
    path, data, sop = _new_image(cfg)
    _plant(path, data)
    fixity_id = _steps_until_repair(cfg, "open-batch")
    _plant(Path(cfg.landing[0].root) / "resend" / "image.dcm", data)
    batches = sweep(cfg)
    for b in batches:
        process_batch(cfg, b)  # stored, not merged: the batch is open and owns the online path

    out = record_and_repair(cfg, fixity_id)

    assert out["orphans_reentered"] == 0 and out["orphans_no_longer_orphans"] == 1
    assert path.is_file() and _sha(path.read_bytes()) == _sha(data)
    merge_batches(cfg, batches)
    finalize_batches(cfg, batches)
    assert _q(cfg, "SELECT online_uri FROM image WHERE sop_instance_uid = $s", {"s": sop}) == [(str(path),)]
    assert check(cfg) == []


def test_a_repair_step_retried_after_an_interrupted_move_records_the_reentry_once(small_archive: Any) -> None:
    cfg = small_archive
    orphan = _plant(Path(cfg.online.root) / "strays" / "moved.dcm", GARBAGE)
    fixity_id = _steps_until_repair(cfg, "retry")
    dst = (Path(cfg.landing[0].root) / RESUBMIT_FOLDER / "orphans" / fixity_id
           / orphan.relative_to(cfg.online.root))
    dst.parent.mkdir(parents=True)
    orphan.rename(dst)  # an earlier attempt moved it, then died before recording anything

    first = record_and_repair(cfg, fixity_id)
    second = record_and_repair(cfg, fixity_id)

    assert first["orphans_reentered"] == second["orphans_reentered"] == 1
    assert second["findings"] == {"orphan": {"unresolved": 0, "repaired": 1}}
    assert _q(cfg, "SELECT actual_sha256, repair FROM fixity_finding WHERE uri = $u", {"u": str(orphan)}) == [
        (_sha(GARBAGE), "reentered_intake")]
    assert _files(Path(cfg.landing[0].root)) == [dst]
    assert run_ingest(cfg)["reasons"] == {"not_dicom": 1}


def test_an_online_orphan_changed_since_the_listing_stays_with_its_reason(small_archive: Any) -> None:
    cfg = small_archive
    orphan = _plant(Path(cfg.online.root) / "strays" / "busy.dcm", GARBAGE)
    fixity_id = _steps_until_repair(cfg, "changed")
    orphan.write_bytes(GARBAGE + b"more")  # written after the audit began

    out = record_and_repair(cfg, fixity_id)

    assert out["orphans_reentered"] == 0 and out["orphans_left"] == 1
    assert out["findings"] == {"orphan": {"unresolved": 1, "repaired": 0}}
    (repaired, detail) = _q(cfg, "SELECT repaired_at IS NOT NULL, detail FROM fixity_finding WHERE uri = $u",
                            {"u": str(orphan)})[0]
    assert not repaired and "changed after the audit's listing" in detail
    assert orphan.read_bytes() == GARBAGE + b"more"


def test_offline_orphans_are_reported_with_a_reason_and_left_in_place(small_archive: Any) -> None:
    cfg = small_archive
    orphan = _plant(Path(cfg.offline.root) / "2024/01/01/9.8/9.8.7/9.8.7.6.dcm", GARBAGE)

    assert pacs_main(["--config", str(cfg.path), "fixity", "--date", DAY.isoformat()]) == 0

    (repaired, repair, detail) = _q(cfg, "SELECT repaired_at IS NOT NULL, repair, detail FROM fixity_finding "
                                         "WHERE tier = 'offline' AND kind = 'orphan' AND uri = $u",
                                    {"u": str(orphan)})[0]
    assert not repaired and repair is None
    assert "reported only" in detail
    assert orphan.read_bytes() == GARBAGE
    assert _files(Path(cfg.landing[0].root)) == []


def test_corrupt_copies_still_fail_the_run_while_orphans_are_reentered(small_archive: Any) -> None:
    cfg = small_archive
    orphan = _plant(Path(cfg.online.root) / "strays" / "junk.dcm", GARBAGE)
    corrupt_uri = _catalogued(cfg)[0][0]
    Path(corrupt_uri).write_bytes(b"bit rot")

    with pytest.raises(FixityError, match="1 missing or corrupt") as info:
        run_fixity(cfg, logical_date=DAY, run_id="rot")

    assert "1 NOT repairable" in str(info.value) and "orphans re-entered: 1" in str(info.value)
    assert not orphan.exists()
    kinds = dict(_q(cfg, "SELECT kind, repair FROM fixity_finding"))
    assert kinds == {"corrupt": None, "orphan": "reentered_intake"}
    assert run_ingest(cfg)["reasons"] == {"not_dicom": 1}
