"""Hierarchical storage end to end on a real S3 endpoint (moto's server on 127.0.0.1).

A synthetic archive with studies spread over six years is ingested, then the lifecycle runs at
a fixed logical date. The tests compute independently, from the catalogue, which studies the
policy must move, and check the offline objects byte for byte through S3.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT
from helpers import query as _q

from pacs import synth
from pacs.catalogue.checks import check
from pacs.errors import RecallError
from pacs.intake import run_ingest
from pacs.tiers.fixity import FixityError, run_fixity
from pacs.tiers.lifecycle import plan, run_lifecycle, switch_and_purge
from pacs.tiers.recall import recall

DAY = dt.date(2026, 6, 1)
BUCKET = "pacs-offline"



def _build(archive: Any, s3: Any, tmp_path: Path, **policy: Any) -> Any:
    from helpers import s3fs_for

    s3fs_for(s3).mkdir(BUCKET)
    pol = {"online_retention_years": 3, "modality_overrides": {"MG": 10}, **policy}
    cfg = archive(offline=f"s3://{BUCKET}/archive", policy=pol)
    landing = Path(cfg.landing[0].root)
    synth.generate_archive(landing / "all", seed=21, patients=10, start=dt.date(2020, 1, 1),
                           end=dt.date(2025, 12, 31), count_scale=0.03, size_scale=0.04)
    synth.generate_archive(landing / "mg", seed=22, patients=6, start=dt.date(2019, 6, 1), end=dt.date(2022, 6, 1),
                           modalities=("MG",), count_scale=0.5, size_scale=0.02)
    run_ingest(cfg)
    return cfg


def _expected_evictions(cfg: Any, day: dt.date, *, hold_patients: set[str] = frozenset(),
                        hold_studies: set[str] = frozenset()) -> set[str]:
    """Independent statement of the policy: 3 years online, 10 for mammography."""
    out = set()
    for uid, patient, study_date, modalities in _q(
            cfg, "SELECT study_instance_uid, patient_id, study_date, modalities_in_study FROM study"):
        years = 10 if "MG" in modalities else 3
        cutoff = day.replace(year=day.year - years)
        if study_date < cutoff and patient not in hold_patients and uid not in hold_studies:
            out.add(uid)
    return out


def _offline_bytes(s3: Any, uri: str, offset: int | None, length: int | None) -> bytes:
    from helpers import s3fs_for

    fs = s3fs_for(s3)
    path = uri.removeprefix("s3://")
    if offset is None:
        return fs.cat_file(path)
    return fs.cat_file(path, start=offset, end=offset + length)


@pytest.mark.parametrize("packing", [False, True], ids=["per-file", "packed"])
def test_exactly_the_selected_studies_move_and_verify(archive, s3, tmp_path: Path, packing: bool) -> None:
    cfg = _build(archive, s3, tmp_path, packing=packing)
    held_patient = _q(cfg, "SELECT patient_id FROM study WHERE study_date < DATE '2023-01-01' "
                           "AND NOT list_contains(modalities_in_study, 'MG') ORDER BY 1 LIMIT 1")[0][0]
    held_study = _q(cfg, "SELECT study_instance_uid FROM study WHERE study_date < DATE '2023-01-01' "
                         "AND patient_id <> $p AND NOT list_contains(modalities_in_study, 'MG') ORDER BY 1 LIMIT 1",
                    {"p": held_patient})[0][0]
    cfg = archive(offline=f"s3://{BUCKET}/archive", policy={
        "online_retention_years": 3, "modality_overrides": {"MG": 10}, "packing": packing,
        "hold": {"patients": [held_patient], "studies": [held_study]}})
    expected = _expected_evictions(cfg, DAY, hold_patients={held_patient}, hold_studies={held_study})
    old_mg = {u for (u,) in _q(cfg, "SELECT study_instance_uid FROM study WHERE list_contains(modalities_in_study, "
                                    "'MG') AND study_date < DATE '2023-06-01'")}
    assert expected and old_mg, "the synthetic archive must have old studies and old mammograms"
    online_before = {u: (sha, size) for u, sha, size in _q(cfg, "SELECT online_uri, sha256, size_bytes FROM image")}
    images_before = _q(cfg, "SELECT count(*) FROM image")[0][0]

    out = run_lifecycle(cfg, logical_date=DAY, run_id="t1")

    moved = {u for (u,) in _q(cfg, "SELECT study_instance_uid FROM study WHERE tier_state = 'offline'")}
    assert moved == expected
    assert not (moved & old_mg), "mammograms stay online 10 years"
    assert out["plan"]["by_rule"]["retention"]["studies"] == len(expected)
    assert out["switch"]["studies_moved_offline"] == len(expected)
    # every image has a verified offline copy (everything is kept offline); moved ones only offline
    rows = _q(cfg, "SELECT sop_instance_uid, study_instance_uid, sha256, tier, online_uri, offline_uri, "
                   "offline_offset, offline_length, offline_verified_at FROM image")
    assert len(rows) == images_before
    for _sop, study, sha, tier, online_uri, offline_uri, offset, length, verified in rows:
        assert offline_uri and verified is not None
        assert hashlib.sha256(_offline_bytes(s3, offline_uri, offset, length)).hexdigest() == sha
        if study in moved:
            assert tier == "offline" and online_uri is None
        else:
            assert tier == "online" and online_uri and Path(online_uri).is_file()
    # the online space of moved studies is freed
    freed = [u for u in online_before if not Path(u).exists()]
    moved_bytes = _q(cfg, "SELECT sum(size_bytes) FROM image WHERE tier = 'offline'")[0][0]
    assert sum(online_before[u][1] for u in freed) == moved_bytes == out["switch"]["online_bytes_freed"]
    assert check(cfg) == []
    from helpers import s3fs_for

    objects = s3fs_for(s3).find(f"{BUCKET}/archive")
    series = _q(cfg, "SELECT count(DISTINCT series_instance_uid), count(*) FROM image")[0]
    if packing:
        assert len(objects) == series[0]  # one tar per series
        assert all(o.endswith(".tar") for o in objects)
    else:
        assert len(objects) == series[1]
    # a second run at the same date moves nothing more
    again = run_lifecycle(cfg, logical_date=DAY, run_id="t2")
    assert again["plan"]["studies"] == 0


def test_dry_run_records_the_plan_and_moves_nothing(archive, s3, tmp_path: Path) -> None:
    cfg = _build(archive, s3, tmp_path)
    before = _q(cfg, "SELECT sop_instance_uid, tier, online_uri, offline_uri FROM image ORDER BY 1")
    out = run_lifecycle(cfg, logical_date=DAY, run_id="dry", dry_run=True)
    p = out["plan"]
    assert p["dry_run"] and p["by_rule"]["retention"]["studies"] == len(_expected_evictions(cfg, DAY))
    rows = _q(cfg, "SELECT rule, bytes FROM lifecycle_plan WHERE plan_id = $p", {"p": p["plan_id"]})
    assert rows and all(b > 0 for _r, b in rows)
    assert Path(p["plan_file"]).is_file()
    assert _q(cfg, "SELECT sop_instance_uid, tier, online_uri, offline_uri FROM image ORDER BY 1") == before
    assert _q(cfg, "SELECT count(*) FROM study WHERE tier_state <> 'online'")[0][0] == 0


def test_watermarks_move_the_oldest_until_the_low_mark(archive, s3, tmp_path: Path) -> None:
    cfg = _build(archive, s3, tmp_path)
    online = _q(cfg, "SELECT sum(size_bytes) FROM image")[0][0]
    # retention alone would keep everything online; capacity makes the tier "too full"
    cfg = archive(offline=f"s3://{BUCKET}/archive", policy={
        "online_retention_years": 30, "watermarks": {"high": 0.8, "low": 0.5, "capacity": int(online / 0.9)}})
    run_lifecycle(cfg, logical_date=DAY, run_id="wm")
    remaining = _q(cfg, "SELECT coalesce(sum(size_bytes), 0) FROM image WHERE online_uri IS NOT NULL")[0][0]
    capacity = int(online / 0.9)
    assert remaining <= 0.5 * capacity
    moved = _q(cfg, "SELECT max(study_date) FROM study WHERE tier_state = 'offline'")[0][0]
    kept = _q(cfg, "SELECT min(study_date) FROM study WHERE tier_state = 'online'")[0][0]
    assert moved <= kept, "the oldest studies go first"
    # and no more than needed: the last study moved was needed to get under the low mark
    rules = {r for (r,) in _q(cfg, "SELECT DISTINCT rule FROM lifecycle_plan WHERE evict")}
    assert rules == {"watermark"}


def test_recall_pins_then_expiry_evicts_again(archive, s3, tmp_path: Path) -> None:
    cfg = _build(archive, s3, tmp_path, packing=True)
    run_lifecycle(cfg, logical_date=DAY, run_id="m")
    study, patient = _q(cfg, "SELECT study_instance_uid, patient_id FROM study WHERE tier_state = 'offline' "
                             "ORDER BY image_count DESC LIMIT 1")[0]
    offline_before = dict(_q(cfg, "SELECT sop_instance_uid, offline_uri FROM image WHERE study_instance_uid = $s",
                             {"s": study}))
    out = recall(cfg, study_uids=[study], logical_date=DAY, run_id="r")
    assert out["images_copied"] == len(offline_before)
    assert out["pinned_until"] == (DAY + dt.timedelta(days=30)).isoformat()
    rows = _q(cfg, "SELECT sha256, online_uri, offline_uri, tier FROM image WHERE study_instance_uid = $s",
              {"s": study})
    for sha, online_uri, offline_uri, tier in rows:
        assert tier == "online" and hashlib.sha256(Path(online_uri).read_bytes()).hexdigest() == sha
        assert offline_uri  # the offline copy is kept
    assert _q(cfg, "SELECT tier_state, pinned_until FROM study WHERE study_instance_uid = $s", {"s": study})[0] == \
        ("online", DAY + dt.timedelta(days=30))
    assert check(cfg) == []
    # within the pin: lifecycle leaves it online
    run_lifecycle(cfg, logical_date=DAY + dt.timedelta(days=10), run_id="m2")
    assert _q(cfg, "SELECT tier_state FROM study WHERE study_instance_uid = $s", {"s": study})[0][0] == "online"
    # after the pin: evicted again; the offline copy was never deleted, and is not copied twice
    out = run_lifecycle(cfg, logical_date=DAY + dt.timedelta(days=31), run_id="m3")
    assert out["plan"]["by_rule"]["recall_expired"]["studies"] == 1
    assert _q(cfg, "SELECT tier_state FROM study WHERE study_instance_uid = $s", {"s": study})[0][0] == "offline"
    assert dict(_q(cfg, "SELECT sop_instance_uid, offline_uri FROM image WHERE study_instance_uid = $s",
                   {"s": study})) == offline_before
    for _sha, online_uri, _o, _t in rows:
        assert not Path(online_uri).exists()
    # a recall by patient ID brings back every study of the patient
    out = recall(cfg, patient_id=patient, logical_date=DAY + dt.timedelta(days=40), run_id="r2")
    assert out["studies"] == _q(cfg, "SELECT count(*) FROM study WHERE patient_id = $p", {"p": patient})[0][0]
    with pytest.raises(RecallError):
        recall(cfg, study_uids=["1.2.3.4.5.6.7.8.9"], logical_date=DAY, run_id="none")


def test_late_arrivals_for_an_offline_study_land_online_and_move_next_run(archive, s3, tmp_path: Path) -> None:
    import pydicom

    cfg = _build(archive, s3, tmp_path)
    run_lifecycle(cfg, logical_date=DAY, run_id="m")
    study, uri, offset, length = _q(cfg, "SELECT i.study_instance_uid, i.offline_uri, i.offline_offset, "
                                         "i.offline_length FROM image i JOIN study s USING (study_instance_uid) "
                                         "WHERE s.tier_state = 'offline' LIMIT 1")[0]
    ds = pydicom.dcmread(__import__("io").BytesIO(_offline_bytes(s3, uri, offset, length)))
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.InstanceNumber = 999
    ds.save_as(Path(cfg.landing[0].root) / "late.dcm")
    run_ingest(cfg)
    late = _q(cfg, "SELECT tier, online_uri IS NOT NULL, offline_uri FROM image WHERE sop_instance_uid = $s",
              {"s": str(ds.SOPInstanceUID)})[0]
    assert late == ("online", True, None)
    assert _q(cfg, "SELECT tier_state FROM study WHERE study_instance_uid = $s", {"s": study})[0][0] == "offline"
    run_lifecycle(cfg, logical_date=DAY + dt.timedelta(days=1), run_id="m2")
    late = _q(cfg, "SELECT tier, online_uri, offline_uri IS NOT NULL FROM image WHERE sop_instance_uid = $s",
              {"s": str(ds.SOPInstanceUID)})[0]
    assert late == ("offline", None, True)
    assert check(cfg) == []


KILLED = textwrap.dedent("""
    import os, signal, sys, datetime as dt
    sys.path.insert(0, {plugins!r})
    import importlib
    *_pkg, _last = {module!r}.split(".")
    try:
        mod = importlib.import_module({module!r})
    except ModuleNotFoundError:  # a class of a module
        mod = getattr(importlib.import_module(".".join(_pkg)), _last)
    original = mod.{attr}
    calls = {{"n": 0}}
    def killer(*a, **k):
        calls["n"] += 1
        n = calls["n"]
        if {cond}:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*a, **k)
    mod.{attr} = killer
    from pacs.config import load_config
    from pacs.tiers.lifecycle import run_lifecycle
    run_lifecycle(load_config({config!r}), logical_date=dt.date(2026, 6, 1), run_id="killed")
""")


@pytest.mark.parametrize(("module", "attr", "cond"), [
    ("pacs.journal.Journal", "write_table", "n == 1"),                       # objects verified, not yet journaled
    ("pacs.catalogue.db", "run", "a[1] == 'lifecycle_switch'"),          # inside the switch transaction
    ("pacs.store", "remove", "n == 3"),                                 # switched and committed, purge half done
], ids=["copying", "switching", "purging"])
def test_killed_mid_migration_then_rerun(archive, s3, tmp_path: Path, module: str, attr: str, cond: str) -> None:
    cfg = _build(archive, s3, tmp_path)
    expected = _expected_evictions(cfg, DAY)
    shas = dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image"))
    code = KILLED.format(plugins=str(ROOT / "plugins"), module=module, attr=attr, cond=cond, config=str(cfg.path))
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    # whatever was interrupted, every image still has a verified copy somewhere
    for sop, online_uri, offline_uri, offset, length in _q(
            cfg, "SELECT sop_instance_uid, online_uri, offline_uri, offline_offset, offline_length FROM image"):
        ok = online_uri and Path(online_uri).is_file() and \
            hashlib.sha256(Path(online_uri).read_bytes()).hexdigest() == shas[sop]
        if not ok:
            assert offline_uri and hashlib.sha256(_offline_bytes(s3, offline_uri, offset, length)).hexdigest() \
                == shas[sop], f"{sop} has no verified copy after the kill"
    run_lifecycle(cfg, logical_date=DAY, run_id="rerun")
    moved = {u for (u,) in _q(cfg, "SELECT study_instance_uid FROM study WHERE tier_state = 'offline'")}
    assert moved == expected
    assert _q(cfg, "SELECT count(*) FROM image WHERE offline_uri IS NULL OR offline_verified_at IS NULL")[0][0] == 0
    assert _q(cfg, "SELECT count(*) FROM image WHERE tier = 'offline' AND online_uri IS NOT NULL")[0][0] == 0
    assert check(cfg) == []
    online_files = {str(p) for p in Path(cfg.online.root).rglob("*.dcm")}
    assert online_files == {u for (u,) in _q(cfg, "SELECT online_uri FROM image WHERE online_uri IS NOT NULL")}


def test_s3_down_mid_migration_deletes_nothing_then_recovers(archive, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A dedicated S3 server is stopped after the first objects are written, then restarted."""
    from helpers import MotoServer, s3fs_for

    server = MotoServer()
    server.start()
    try:
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": server.endpoint,
                     "AWS_ENDPOINT_URL": server.endpoint}.items():
            monkeypatch.setenv(k, v)
        from s3fs import S3FileSystem

        S3FileSystem.clear_instance_cache()
        cfg = _build(archive, server, tmp_path)
        before = _q(cfg, "SELECT sop_instance_uid, online_uri, sha256 FROM image ORDER BY 1")
        import pacs.store.transfer as transfer

        original = transfer.put_objects

        def flaky(loc: Any, puts: list, **k: Any) -> Any:
            """Half the objects go out, then the endpoint dies under the rest."""
            half = len(puts) // 2
            done = original(loc, puts[:half], **k)
            server.stop()
            return done + original(loc, puts[half:], **k)

        monkeypatch.setattr(transfer, "put_objects", flaky)
        with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a dead endpoint
            run_lifecycle(cfg, logical_date=DAY, run_id="down")
        # the DAG's switch task runs anyway (all_done): it must switch nothing unverified
        summary = switch_and_purge(cfg, _q(cfg, "SELECT plan_id FROM lifecycle_run ORDER BY planned_at DESC "
                                                "LIMIT 1")[0][0], logical_date=DAY)
        assert summary["online_copies_deleted"] == 0
        after = _q(cfg, "SELECT sop_instance_uid, online_uri, sha256 FROM image ORDER BY 1")
        assert after == before
        for _sop, uri, sha in after:
            assert hashlib.sha256(Path(uri).read_bytes()).hexdigest() == sha
        # the endpoint comes back (moto starts empty, like a fresh bucket) and the next run completes
        monkeypatch.setattr(transfer, "put_objects", original)
        server.start()  # same port
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        S3FileSystem.clear_instance_cache()
        s3fs_for(server).mkdir(BUCKET)
        cfg = archive(offline=f"s3://{BUCKET}/archive", policy={"online_retention_years": 3,
                                                                "modality_overrides": {"MG": 10}})
        run_lifecycle(cfg, logical_date=DAY, run_id="up")
        assert {u for (u,) in _q(cfg, "SELECT study_instance_uid FROM study WHERE tier_state = 'offline'")} == \
            _expected_evictions(cfg, DAY)
        assert check(cfg) == []
    finally:
        server.stop()


def test_recall_into_a_full_online_tier_fails_clearly_and_loses_nothing(archive, s3, tmp_path: Path) -> None:
    small = tmp_path / "small-online"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        cfg = _build(archive, s3, tmp_path)
        run_lifecycle(cfg, logical_date=DAY, run_id="m")
        study = _q(cfg, "SELECT study_instance_uid FROM study WHERE tier_state = 'offline' "
                        "ORDER BY size_bytes DESC LIMIT 1")[0][0]
        need = _q(cfg, "SELECT size_bytes FROM study WHERE study_instance_uid = $s", {"s": study})[0][0]
        assert need > 16 * 1024
        before = _q(cfg, "SELECT * FROM image ORDER BY sop_instance_uid")
        # point the online tier at the tiny filesystem (the catalogue's copies stay where they are)
        text = Path(cfg.path).read_text().replace(str(cfg.online.root), str(small))
        Path(cfg.path).write_text(text)
        from pacs.config import load_config

        cfg = load_config(cfg.path)
        with pytest.raises(RecallError, match="free"):
            recall(cfg, study_uids=[study], logical_date=DAY, run_id="full")
        assert _q(cfg, "SELECT * FROM image ORDER BY sop_instance_uid") == before
        assert list(small.rglob("*.dcm")) == []
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_fixity_finds_corrupt_deleted_and_orphan_and_repairs_online(archive, s3, tmp_path: Path) -> None:
    cfg = _build(archive, s3, tmp_path, fixity_offline_weeks=2)
    run_lifecycle(cfg, logical_date=DAY, run_id="m")
    clean = run_fixity(cfg, logical_date=DAY, run_id="f0")
    assert clean["unresolved"] == 0 and clean["findings"] == {}
    total_objects = _q(cfg, "SELECT count(DISTINCT offline_uri) FROM image")[0][0]
    assert clean["offline_objects_checked"] == -(-total_objects // 2)  # a rolling half each week
    (corrupt_uri, corrupt_sha), (gone_uri, gone_sha) = _q(
        cfg, "SELECT online_uri, sha256 FROM image WHERE online_uri IS NOT NULL ORDER BY 1 LIMIT 2")
    Path(corrupt_uri).write_bytes(b"bit rot")
    Path(gone_uri).unlink()
    orphan = Path(cfg.online.root) / "2025/01/01/1.2.3/1.2.3.4/1.2.3.4.5.dcm"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"who put this here")
    os.utime(orphan, (0, 0))  # older than the audit, so it is judged
    with pytest.raises(FixityError, match="2 missing or corrupt") as info:
        run_fixity(cfg, logical_date=DAY + dt.timedelta(days=7), run_id="f1")
    assert "2 restored" in str(info.value) and "0 NOT repairable" in str(info.value)
    findings = {(t, k, u): rep for t, k, u, rep in _q(
        cfg, "SELECT tier, kind, uri, repaired_at IS NOT NULL FROM fixity_finding")}
    assert findings[("online", "corrupt", corrupt_uri)] is True
    assert findings[("online", "missing", gone_uri)] is True
    assert findings[("online", "orphan", str(orphan))] is True  # re-entered into intake
    assert hashlib.sha256(Path(corrupt_uri).read_bytes()).hexdigest() == corrupt_sha
    assert hashlib.sha256(Path(gone_uri).read_bytes()).hexdigest() == gone_sha
    assert not orphan.exists(), "an online orphan is moved into landing, never deleted"
    assert run_ingest(cfg)["reasons"] == {"not_dicom": 1}  # intake quarantines it with its reason
    # the second week covers the other half of the offline objects
    again = run_fixity(cfg, logical_date=DAY + dt.timedelta(days=14), run_id="f2")
    assert again["unresolved"] == 0
    unverified = _q(cfg, "SELECT count(DISTINCT offline_uri) FROM image WHERE offline_verified_at < $t",
                    {"t": dt.datetime(2000, 1, 1, tzinfo=dt.UTC)})[0][0]
    assert unverified == 0


def test_fixity_offline_corruption_fails_and_names_it(archive, s3, tmp_path: Path) -> None:
    from helpers import s3fs_for

    cfg = _build(archive, s3, tmp_path, fixity_offline_weeks=1)
    run_lifecycle(cfg, logical_date=DAY, run_id="m")
    uri = _q(cfg, "SELECT offline_uri FROM image WHERE tier = 'offline' ORDER BY 1 LIMIT 1")[0][0]
    s3fs_for(s3).pipe_file(uri.removeprefix("s3://"), b"corrupted in the bucket")
    with pytest.raises(FixityError, match="NOT repairable"):
        run_fixity(cfg, logical_date=DAY, run_id="f")
    assert _q(cfg, "SELECT kind, repaired_at FROM fixity_finding WHERE uri = $u", {"u": uri}) == [("corrupt", None)]


def test_plan_of_a_study_in_an_unfinished_plan_is_replanned(archive, s3, tmp_path: Path) -> None:
    cfg = _build(archive, s3, tmp_path)
    first = plan(cfg, logical_date=DAY, run_id="abandoned")
    assert first["studies"] > 0
    assert _q(cfg, "SELECT count(*) FROM study WHERE tier_state = 'migrating'")[0][0] > 0
    run_lifecycle(cfg, logical_date=DAY, run_id="next")
    assert _q(cfg, "SELECT count(*) FROM study WHERE tier_state = 'migrating'")[0][0] == 0
    assert _q(cfg, "SELECT state FROM lifecycle_plan WHERE plan_id = $p LIMIT 1", {"p": first["plan_id"]})[0][0] \
        == "failed"
    assert check(cfg) == []



def test_analysts_see_lifecycle_and_recall_in_the_snapshot_at_once(archive, s3, tmp_path: Path) -> None:
    """Every catalogue writer refreshes the snapshot: ``pacs query`` (which reads the snapshot)
    shows the studies lifecycle moved offline, and the study a recall brought back."""
    from pacs.analyst.query import run_query

    cfg = _build(archive, s3, tmp_path)

    def snapshot_states() -> dict[str, str]:
        table = run_query(cfg, "SELECT study_instance_uid, tier_state FROM study")
        return dict(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))

    assert set(snapshot_states().values()) == {"online"}
    expected = _expected_evictions(cfg, DAY)
    out = run_lifecycle(cfg, logical_date=DAY, run_id="m")
    assert out["switch"]["snapshot_files_written"] > 0
    states = snapshot_states()
    assert {u for u, s in states.items() if s == "offline"} == expected
    assert states == dict(_q(cfg, "SELECT study_instance_uid, tier_state FROM study"))  # the live catalogue
    study = sorted(expected)[0]
    recall(cfg, study_uids=[study], logical_date=DAY, run_id="r")
    assert snapshot_states()[study] == "online"
    tiers = run_query(cfg, f"SELECT DISTINCT tier FROM image WHERE study_instance_uid = '{study}'")
    assert tiers.column(0).to_pylist() == ["online"]
