"""Intake that no file, race or deployment can poison, fool or block (issue 7).

Each test reproduces one way the archive used to lose or stick on a file, against the real
intake (real files, real renames, real processes), and checks the exact end state: every input
is catalogued with verified bytes, quarantined with its reason and original bytes, left in
landing (deferred) for a later sweep, or counted as an identical duplicate.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import ROOT
from helpers import query as _q
from pydicom.uid import generate_uid

from pacs import intake, journal, synth
from pacs.catalogue.checks import check
from pacs.intake import process, run_ingest


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _online_files(cfg: Any) -> dict[str, str]:
    return {str(p): _sha(p) for p in Path(cfg.online.root).rglob("*") if p.is_file()}


def _assert_online_equals_catalogue(cfg: Any) -> None:
    """Online bytes equal the catalogue: same paths, same sha256, no orphans."""
    catalogued = dict(_q(cfg, "SELECT online_uri, sha256 FROM image WHERE online_uri IS NOT NULL"))
    assert _online_files(cfg) == catalogued
    assert check(cfg) == []


def _no_open_batches(cfg: Any) -> None:
    assert journal.ingest(cfg.work).open_runs() == []


def _ct(tmp_path: Path, n: int, seed: int = 0) -> list[synth.SynthFile]:
    src = synth.generate_ct_slices(tmp_path / f"ct-{seed}", n, seed=seed, per_series=max(1, n // 2), rows=16,
                                   columns=16)
    return sorted(src.good(), key=lambda f: f.path)


def _land(landing: Path, files: list[synth.SynthFile]) -> list[Path]:
    """Drop files into landing by name, keeping their mtimes; their landing paths."""
    paths = [landing / Path(f.path).name for f in files]
    for f, dst in zip(files, paths, strict=True):
        shutil.copy2(f.path, dst)
    return paths


# --------------------------------------------------------------------------------------------
# 1. one odd element never poisons a batch
# --------------------------------------------------------------------------------------------

def _with_odd_element(src: str, dst: Path, tag: int, vr: str, value: Any) -> None:
    ds = pydicom.dcmread(src)
    for uid_kw in ("SOPInstanceUID",):
        setattr(ds, uid_kw, generate_uid())
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if tag in ds:
        del ds[tag]
    ds.add_new(tag, vr, value)
    ds.save_as(dst, enforce_file_format=True)


def test_unexpected_vrs_in_one_batch_never_block_the_good_files(archive, tmp_path: Path) -> None:
    cfg = archive(ingest={"batch_size": 50, "workers": 1, "fsync": False})
    landing = Path(cfg.landing[0].root)
    good = _ct(tmp_path, 6)
    _land(landing, good)
    odd = [(0x00080080, "DS", "12.5"), (0x00080080, "IS", "7"), (0x00080080, "US", 7),
           (0x00100020, "US", 4242), (0x00081030, "FD", 2.5), (0x00280010, "CS", "ABC")]
    for i, (tag, vr, value) in enumerate(odd):
        _with_odd_element(good[0].path, landing / f"odd-{i}.dcm", tag, vr, value)
    first = run_ingest(cfg)
    # every file got an outcome on the first run; the good ones are catalogued
    assert first["files"] == len(good) + len(odd)
    assert first["catalogued"] + first["quarantined"] == len(good) + len(odd)
    catalogued = {r[0] for r in _q(cfg, "SELECT sop_instance_uid FROM image")}
    assert {f.sop_instance_uid for f in good} <= catalogued
    quarantined = _q(cfg, "SELECT reason, detail FROM quarantine")
    # Rows that is no integer is rejected naming its tag; a PatientID sent as US is read as the text
    # "4242", which is not the study's patient; the text columns sent as numbers are catalogued as text
    assert sorted(reason for reason, _ in quarantined) == ["invalid_value", "patient_mismatch"]
    assert any(r == "invalid_value" and "(0028,0010)" in d for r, d in quarantined)
    assert first["catalogued"] == len(good) + 4
    _no_open_batches(cfg)
    assert not any(p.is_file() for p in landing.rglob("*"))
    _assert_online_equals_catalogue(cfg)
    assert run_ingest(cfg)["files"] == 0  # nothing left to resume


def test_an_unexpected_error_on_one_file_quarantines_only_that_file(archive, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = archive(ingest={"batch_size": 50, "workers": 1, "fsync": False})
    landing = Path(cfg.landing[0].root)
    files = _ct(tmp_path, 5)
    _land(landing, files)
    victim = files[2].sop_instance_uid
    original = process.judge

    def explode(header: dict[str, Any] | None, problem: Any) -> Any:
        if header is not None and header.get("sop_instance_uid") == victim:
            raise RuntimeError("a bug met one file")
        return original(header, problem)

    monkeypatch.setattr(process, "judge", explode)
    summary = run_ingest(cfg)
    assert summary["catalogued"] == 4 and summary["quarantined"] == 1
    (reason, qsha), = _q(cfg, "SELECT reason, sha256 FROM quarantine")
    assert reason == "unreadable" and qsha == _sha(files[2].path)
    _assert_online_equals_catalogue(cfg)


def test_a_batch_that_keeps_failing_is_split_and_never_blocks_later_batches(
        archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = archive(ingest={"batch_size": 50, "workers": 1, "fsync": False})
    landing = Path(cfg.landing[0].root)
    files = _ct(tmp_path, 4)
    _land(landing, files)
    victim = files[1].sop_instance_uid
    original = process.table

    def fragile(rows: list[dict[str, Any]]) -> Any:
        if any(r.get("sop_instance_uid") == victim for r in rows):
            raise ValueError("this row cannot be staged")
        return original(rows)

    monkeypatch.setattr(process, "table", fragile)
    for _ in range(intake.MAX_ATTEMPTS):
        run_ingest(cfg)  # the batch fails, attempt after attempt, then is split per file
    later = _ct(tmp_path, 2, seed=9)
    _land(landing, later)
    for _ in range(intake.MAX_ATTEMPTS + 1):
        run_ingest(cfg)
    catalogued = {r[0] for r in _q(cfg, "SELECT sop_instance_uid FROM image")}
    assert catalogued == {f.sop_instance_uid for f in files + later} - {victim}
    (reason, qsha), = _q(cfg, "SELECT reason, sha256 FROM quarantine")
    assert reason == "unreadable" and qsha == _sha(files[1].path)
    _no_open_batches(cfg)
    _assert_online_equals_catalogue(cfg)


# --------------------------------------------------------------------------------------------
# 2. rename mode publishes only the bytes it hashed
# --------------------------------------------------------------------------------------------

def test_rename_mode_leaves_files_changed_after_reading_in_landing(archive, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = archive(ingest={"batch_size": 50, "workers": 1, "fsync": False, "rename": True})
    landing = Path(cfg.landing[0].root)
    files = _ct(tmp_path, 6)
    replacement = _ct(tmp_path, 1, seed=5)[0]
    appended, replaced, deleted = _land(landing, files)[:3]
    original = process._apply_moves
    mutated: dict[str, str] = {}

    def mutate_then_move(cfg_: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not mutated:
            with open(appended, "ab") as out:
                out.write(b"\0" * 64)  # the sender appends after we read
            tmp = replaced.with_name("incoming.tmp")
            shutil.copy(replacement.path, tmp)
            os.replace(tmp, replaced)  # the sender replaces the file under the same name
            deleted.unlink()
            mutated.update(appended=_sha(appended), replaced=_sha(replaced))
        return original(cfg_, rows)

    monkeypatch.setattr(process, "_apply_moves", mutate_then_move)
    first = run_ingest(cfg)
    assert first["catalogued"] == 3 and first["deferred"] == 3
    # the changed files are still in landing, with their new bytes; nothing was published for them
    assert _sha(appended) == mutated["appended"] and _sha(replaced) == mutated["replaced"]
    catalogued = {r[0] for r in _q(cfg, "SELECT sop_instance_uid FROM image")}
    assert catalogued == {f.sop_instance_uid for f in files[3:]}
    _assert_online_equals_catalogue(cfg)
    monkeypatch.setattr(process, "_apply_moves", original)
    second = run_ingest(cfg)
    assert second["catalogued"] == 2
    rows = dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image"))
    assert rows[files[0].sop_instance_uid] == mutated["appended"]  # the appended bytes, hashed at publishing
    assert rows[replacement.sop_instance_uid] == mutated["replaced"]  # the replacement, under its own UID
    assert files[1].sop_instance_uid not in rows and files[2].sop_instance_uid not in rows
    assert not any(p.is_file() for p in landing.rglob("*"))
    _no_open_batches(cfg)
    _assert_online_equals_catalogue(cfg)


# --------------------------------------------------------------------------------------------
# 3. another user's file: rename/link not permitted → copy + verify
# --------------------------------------------------------------------------------------------

_NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]


def _can_drop_capabilities() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run([*_NO_CAPS, "true"], capture_output=True)
    return probe.returncode == 0


def _ingest_without_capabilities(cfg: Any) -> subprocess.CompletedProcess[str]:
    """``pacs ingest`` as root without any capability: an ordinary user as far as the kernel's
    permission checks go (protected hard links, sticky folders), while the project stays readable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    return subprocess.run([*_NO_CAPS, sys.executable, "-m", "pacs.cli", "--config", str(cfg.path), "ingest"],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(not _can_drop_capabilities(), reason="needs root and setpriv to run as an unprivileged user")
@pytest.mark.parametrize("sticky", [False, True], ids=["protected-hardlinks", "sticky-folder"])
def test_a_landing_file_owned_by_another_user_is_copied_and_verified(archive, tmp_path: Path, sticky: bool) -> None:
    cfg = archive(ingest={"batch_size": 50, "workers": 1, "fsync": False, "rename": True})
    landing = Path(cfg.landing[0].root)
    receiver = 4321  # the DICOM receiver's own user
    inbox = landing / "inbox"
    inbox.mkdir()
    if sticky:
        os.chown(inbox, receiver, receiver)
        os.chmod(inbox, 0o1777)
    files = _ct(tmp_path, 4)
    for f in files:
        dst = inbox / Path(f.path).name
        shutil.copy2(f.path, dst)
        os.chown(dst, receiver, receiver)
        os.chmod(dst, 0o644)
    proc = _ingest_without_capabilities(cfg)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image"))
    assert rows == {f.sop_instance_uid: _sha(f.path) for f in files}
    _no_open_batches(cfg)
    _assert_online_equals_catalogue(cfg)
    left = [p for p in inbox.iterdir() if p.is_file()]
    if not sticky:
        assert left == []
    else:  # the receiver's sticky folder does not let us delete its files: they stay, counted as duplicates
        assert len(left) == len(files)
        again = _ingest_without_capabilities(cfg)
        assert again.returncode == 0, again.stderr[-2000:]
        assert dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image")) == rows
        _assert_online_equals_catalogue(cfg)


# --------------------------------------------------------------------------------------------
# 4. two intake runs at once end as one would
# --------------------------------------------------------------------------------------------

def test_two_concurrent_ingest_runs_end_as_one_would(archive, tmp_path: Path) -> None:
    cfg = archive(ingest={"batch_size": 250, "workers": 2, "fsync": False, "rename": True})
    landing = Path(cfg.landing[0].root)
    src = synth.generate_small_files(tmp_path / "small", 3000, target_size=2000, per_series=100)
    for f in src.files:
        dst = landing / Path(f.path).relative_to(src.root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f.path, dst)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    cmd = [sys.executable, "-m", "pacs.cli", "--config", str(cfg.path), "ingest"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for proc in (first, second):
        _out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    expected = {f.sop_instance_uid: _sha(f.path) for f in src.files}
    assert dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image")) == expected
    assert _q(cfg, "SELECT count(*) FROM quarantine")[0][0] == 0
    assert not any(p.is_file() for p in landing.rglob("*"))
    _no_open_batches(cfg)
    _assert_online_equals_catalogue(cfg)
    assert run_ingest(cfg)["files"] == 0


def test_a_batch_leased_by_a_running_step_is_not_resumed_by_another_run(archive, tmp_path: Path) -> None:
    cfg = archive(ingest={"batch_size": 50, "workers": 1, "fsync": False})
    landing = Path(cfg.landing[0].root)
    _land(landing, _ct(tmp_path, 3))
    (batch,) = intake.sweep(cfg, run_id="run-a")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from pacs.config import load_config; from pacs import journal;"
        "cfg = load_config(sys.argv[2]);"
        "cm = journal.ingest(cfg.work).lease(sys.argv[3]); assert cm.__enter__(); print('held', flush=True);"
        "time.sleep(60)"), str(ROOT / "plugins"), str(cfg.path), batch], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert journal.ingest(cfg.work).is_leased(batch)
        assert intake.sweep(cfg, run_id="run-b") == []  # run A's batch is left to run A
        assert intake.process_batch(cfg, batch).get("owned_elsewhere") == 1
        assert not journal.ingest(cfg.work).has(batch, journal.STORED)
    finally:
        holder.kill()
        holder.wait()
    # its owner is gone (killed): the lease died with it, and the next run resumes the batch
    assert intake.sweep(cfg, run_id="run-c") == [batch]
    assert run_ingest(cfg)["catalogued"] == 3
    _assert_online_equals_catalogue(cfg)


def test_object_storage_leases_are_exclusive_and_released(s3, tmp_path: Path, archive) -> None:
    from helpers import s3fs_for

    s3fs_for(s3).mkdir("work-lease")
    cfg = archive(work="s3://work-lease/journal")
    with journal.ingest(cfg.work).lease("b-0001") as held:
        assert held
        assert journal.ingest(cfg.work).is_leased("b-0001")
        with journal.ingest(cfg.work).lease("b-0001") as second:
            assert not second
    assert not journal.ingest(cfg.work).is_leased("b-0001")


# --------------------------------------------------------------------------------------------
# 7. settling by observation, whatever the file's mtime says
# --------------------------------------------------------------------------------------------

def test_a_file_with_a_future_mtime_is_taken_once_unchanged_for_settle_seconds(archive, tmp_path: Path) -> None:
    cfg = archive(settle_seconds=2)
    landing = Path(cfg.landing[0].root)
    f = _ct(tmp_path, 1)[0]
    dst = landing / "skewed.dcm"
    shutil.copy2(f.path, dst)
    future = time.time() + 86_400  # the receiver's clock is a day ahead
    os.utime(dst, (future, future))
    first = run_ingest(cfg)
    assert first["files"] == 0 and first["waiting"] == 1 and first["future_dated"] == 1
    assert intake.last_sweep(cfg)["future_dated"] == 1
    time.sleep(2.2)
    second = run_ingest(cfg)
    assert second["catalogued"] == 1 and second["waiting"] == 0
    assert not dst.exists()
    _assert_online_equals_catalogue(cfg)


def test_a_file_that_keeps_changing_is_not_taken_even_with_a_future_mtime(archive, tmp_path: Path) -> None:
    cfg = archive(settle_seconds=2)
    landing = Path(cfg.landing[0].root)
    f = _ct(tmp_path, 1)[0]
    dst = landing / "growing.dcm"
    data = Path(f.path).read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    for step in range(3):
        future = time.time() + 86_400 + step
        os.utime(dst, (future, future))
        assert run_ingest(cfg)["files"] == 0
        time.sleep(1.2)
        with open(dst, "ab") as out:  # still being written
            out.write(data[len(data) // 2 + step * 10: len(data) // 2 + (step + 1) * 10])
    assert dst.exists()


# --------------------------------------------------------------------------------------------
# a tier that cannot take writes fails the run with one line, and the next run recovers
# --------------------------------------------------------------------------------------------

@pytest.mark.skipif(not _can_drop_capabilities(), reason="needs root and setpriv to run as an unprivileged user")
@pytest.mark.parametrize("rename", [True, False], ids=["rename", "copy"])
def test_a_read_only_online_tier_fails_with_one_line_and_the_next_run_recovers(archive, tmp_path: Path,
                                                                               rename: bool) -> None:
    cfg = archive(ingest={"batch_size": 50, "workers": 1, "fsync": False, "rename": rename})
    landing = Path(cfg.landing[0].root)
    files = _ct(tmp_path, 3)
    _land(landing, files)
    online = Path(cfg.online.root)
    online.mkdir(parents=True, exist_ok=True)
    os.chmod(online, 0o555)
    try:
        proc = _ingest_without_capabilities(cfg)
    finally:
        os.chmod(online, 0o755)
    assert proc.returncode == 2  # a location to fix: the user's to act on (pacs.cli.common)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "online tier" in lines[0] and str(online) in lines[0] and "not writable" in lines[0]
    assert sorted(_sha(p) for p in landing.rglob("*") if p.is_file()) == sorted(_sha(f.path) for f in files)
    summary = run_ingest(cfg)
    assert summary["catalogued"] == 3
    _no_open_batches(cfg)
    _assert_online_equals_catalogue(cfg)


def test_object_storage_lease_of_a_dead_owner_is_taken_over_and_a_live_one_is_kept(
        s3, tmp_path: Path, archive, monkeypatch: pytest.MonkeyPatch) -> None:
    import json as _json

    from helpers import s3fs_for

    fs = s3fs_for(s3)
    fs.mkdir("work-takeover")
    cfg = archive(work="s3://work-takeover/journal")
    # a crashed owner left its lease behind, expired
    dead = cfg.work.path("ingest/b-0002/lease")
    fs.pipe_file(dead, _json.dumps({"owner": "gone:1", "expires": time.time() - 5}).encode())
    with journal.ingest(cfg.work).lease("b-0002") as held:
        assert held, "an expired lease is taken over"
    # a live owner renews its lease (heartbeat every third of the TTL): nobody takes it over
    monkeypatch.setattr(journal, "LEASE_TTL_SECONDS", 0.9)
    with journal.ingest(cfg.work).lease("b-0003") as held:
        assert held
        time.sleep(2.0)  # more than two TTLs
        assert journal.ingest(cfg.work).is_leased("b-0003")
