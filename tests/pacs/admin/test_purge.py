"""Deletion through ``pacs purge``: rejected and expired instances leave both tiers, nothing else does.

A synthetic archive is ingested and sent through the lifecycle (offline copies on a real S3
endpoint, moto's server; packed and per file), so instances have copies on one or both tiers.
Instances are rejected with ``pacs.admin.reject``; the purge then runs as a real process of
``python -m pacs.cli purge``. The tests check the files and objects themselves (gone, or intact
with their sha256), the packed series rewritten without the deleted members, the audit rows, the
Parquet snapshot, refusals of held and pinned studies, the retention rule, and that a purge
SIGKILLed after its n-th deleted copy and run again ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT
from helpers import query as _q

from pacs import synth
from pacs.admin import reject
from pacs.catalogue import snapshot
from pacs.catalogue.checks import check
from pacs.intake import run_ingest
from pacs.tiers.lifecycle import run_lifecycle

DAY = dt.date(2026, 6, 1)
BUCKET = "pacs-offline"
TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()


def _build(archive: Any, s3: Any, *, packing: bool, **policy: Any) -> Any:
    from helpers import s3fs_for

    s3fs_for(s3).mkdir(BUCKET)
    cfg = archive(offline=f"s3://{BUCKET}/archive",
                  policy={"online_retention_years": 3, "packing": packing, **policy})
    synth.generate_archive(Path(cfg.landing[0].root) / "all", seed=31, patients=6, start=dt.date(2020, 1, 1),
                           end=dt.date(2025, 12, 31), count_scale=0.03, size_scale=0.03)
    run_ingest(cfg)
    run_lifecycle(cfg, logical_date=DAY, run_id="lifecycle")
    return cfg


def _pacs(cfg: Any, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    base.update({"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin", "HOME": str(Path(cfg.path).parent)})
    return subprocess.run([sys.executable, "-m", "pacs.cli", "--config", str(cfg.path), *args], capture_output=True,
                          text=True, timeout=300, env={**base, **(env or {})})


def _copies(cfg: Any) -> dict[str, dict[str, Any]]:
    """Every catalogued instance with its sha256 and copies, as the catalogue names them."""
    out = {}
    for sop, sha, online, offline, offset, length in _q(
            cfg, "SELECT sop_instance_uid, sha256, online_uri, offline_uri, offline_offset, offline_length FROM image"):
        out[sop] = {"sha256": sha, "online": online, "offline": offline, "offset": offset, "length": length}
    return out


def _offline_sha(s3: Any, uri: str, offset: int | None, length: int | None) -> str | None:
    from helpers import s3fs_for

    fs = s3fs_for(s3)
    path = uri.removeprefix("s3://")
    if not fs.exists(path):
        return None
    data = fs.cat_file(path) if offset is None else fs.cat_file(path, start=offset, end=offset + length)
    return hashlib.sha256(data).hexdigest()


def _online_sha(uri: str) -> str | None:
    p = Path(uri)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


def _victims(cfg: Any, n_series: int = 2) -> tuple[set[str], list[str]]:
    """Reject two instances in each of ``n_series`` series that have an offline copy and more than
    three images (so the rest of each series stays); returns the rejected SOPs and their series."""
    series = [s for (s,) in _q(cfg, "SELECT series_instance_uid FROM image WHERE offline_uri IS NOT NULL "
                                    "GROUP BY 1 HAVING count(*) > 3 ORDER BY 1")][:n_series]
    assert len(series) == n_series
    sops: set[str] = set()
    for s in series:
        for (sop,) in _q(cfg, f"SELECT sop_instance_uid FROM image WHERE series_instance_uid = '{s}' "
                              "ORDER BY sop_instance_uid LIMIT 2"):
            reject(cfg, sop=sop, code="113001", reason="test", run_id="reject")
            sops.add(sop)
    return sops, series


def _assert_end_state(cfg: Any, s3: Any, before: dict[str, dict[str, Any]], victims: set[str]) -> None:
    after = _copies(cfg)
    assert set(after) == set(before) - victims
    for sop, c in before.items():
        if sop in victims:
            if c["online"]:
                assert not Path(c["online"]).exists(), "a rejected instance's online file is still there"
            if c["offline"] and c["offset"] is None:
                assert _offline_sha(s3, c["offline"], None, None) is None
            continue
        now = after[sop]
        if now["online"]:
            assert _online_sha(now["online"]) == c["sha256"]
        if now["offline"]:
            assert _offline_sha(s3, now["offline"], now["offset"], now["length"]) == c["sha256"], (
                "a kept instance's offline copy does not hold its bytes")
        assert bool(now["offline"]) == bool(c["offline"]) and bool(now["online"]) == bool(c["online"])
    # the old tars that held a deleted member are gone; every tar the catalogue names exists
    for c in (before[s] for s in victims):
        if c["offline"] and c["offset"] is not None:
            assert _offline_sha(s3, c["offline"], None, None) is None, "the old tar is still there"
    audit = _q(cfg, "SELECT sop_instance_uid, tier, sha256, why FROM deletion")
    expected = {(s, t, before[s]["sha256"]) for s in victims for t in ("online", "offline") if before[s][t]}
    assert {(s, t, h) for s, t, h, _w in audit} == expected and len(audit) == len(expected)
    assert {w for *_x, w in audit} == {"rejected:113001"}
    assert check(cfg) == []
    # the snapshot: no deleted image, the audit rows there
    def read(con: Any) -> tuple[set[str], int]:
        images = {r[0] for r in con.execute("SELECT sop_instance_uid FROM image").fetchall()}
        return images, con.execute("SELECT count(*) FROM deletion").fetchall()[0][0]

    images, deletions = snapshot.with_snapshot(cfg.parquet, read)
    assert images == set(after) and deletions == len(expected)


@pytest.mark.parametrize("packing", [False, True], ids=["per-file", "packed"])
def test_dry_run_then_purge_deletes_exactly_the_rejected_copies(archive, s3, packing: bool) -> None:
    cfg = _build(archive, s3, packing=packing)
    victims, series = _victims(cfg)
    before = _copies(cfg)
    counts = dict(_q(cfg, "SELECT series_instance_uid, image_count FROM series"))
    dry = _pacs(cfg, "purge", "--rejected-before", TOMORROW, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["state"] == "dry_run" and plan["instances"] == len(victims)
    assert _copies(cfg) == before, "a dry run changed the catalogue"
    assert _q(cfg, "SELECT count(*) FROM deletion") == [(0,)]

    done = _pacs(cfg, "purge", "--rejected-before", TOMORROW)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["state"] == "done" and out["instances_deleted"] == len(victims)
    _assert_end_state(cfg, s3, before, victims)
    for s in series:
        assert dict(_q(cfg, "SELECT series_instance_uid, image_count FROM series"))[s] == counts[s] - 2
    if packing:
        assert any(before[v]["offset"] is not None for v in victims), "the packed case packed nothing"
    again = _pacs(cfg, "purge", "--rejected-before", TOMORROW)
    assert again.returncode == 0 and json.loads(again.stdout)["state"] == "done"
    assert len(_q(cfg, "SELECT * FROM deletion")) == sum(bool(before[v]["online"]) + bool(before[v]["offline"])
                                                         for v in victims)


@pytest.mark.parametrize("packing", [False, True], ids=["per-file", "packed"])
@pytest.mark.parametrize("kill_after", [1, 3])
def test_sigkill_during_purge_then_rerun_ends_as_one_run(archive, s3, packing: bool, kill_after: int) -> None:
    cfg = _build(archive, s3, packing=packing)
    victims, _series = _victims(cfg)
    before = _copies(cfg)
    killed = _pacs(cfg, "purge", "--rejected-before", TOMORROW,
                   env={"PACS_TEST_PURGE_KILL_AFTER": str(kill_after)})
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    assert _q(cfg, "SELECT count(*) FROM deletion") == [(0,)], "audit rows before the commit"
    (killed_plan,) = _q(cfg, "SELECT plan_id FROM purge_run WHERE state = 'planned'")[0]
    rerun = _pacs(cfg, "purge", "--rejected-before", TOMORROW)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["resumed_plans"] == [killed_plan]
    _assert_end_state(cfg, s3, before, victims)
    # the killed plan was finished, not left behind: it holds the audit rows, no plan stays open
    assert _q(cfg, "SELECT count(*) FROM purge_run WHERE state <> 'done'") == [(0,)]
    assert _q(cfg, "SELECT DISTINCT plan_id FROM deletion") == [(killed_plan,)]


def test_held_and_pinned_studies_are_refused(archive, s3) -> None:
    cfg0 = _build(archive, s3, packing=False)
    victims, _series = _victims(cfg0, n_series=2)
    studies = sorted({s for (s,) in _q(cfg0, "SELECT study_instance_uid FROM image WHERE sop_instance_uid IN ("
                                             + ",".join(f"'{v}'" for v in victims) + ")")})
    if len(studies) < 2:
        pytest.skip("the two series are in one study")
    held, pinned = studies[0], studies[1]
    cfg = archive(offline=f"s3://{BUCKET}/archive",
                  policy={"online_retention_years": 3, "hold": {"studies": [held]}})
    import duckdb

    con = duckdb.connect(str(cfg.duckdb))
    con.execute("UPDATE study SET pinned_until = DATE '2099-01-01', updated_at = now() WHERE study_instance_uid = $s",
                {"s": pinned})
    con.close()
    before = _copies(cfg)
    out = _pacs(cfg, "purge", "--rejected-before", TOMORROW)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["refused_held"] + res["refused_pinned"] == len(victims)
    assert res["refused_held"] >= 1 and res["refused_pinned"] >= 1
    assert _copies(cfg) == before, "a held or pinned study lost an instance"
    assert _q(cfg, "SELECT count(*) FROM deletion") == [(0,)]


def test_retention_deletes_expired_instances_of_that_modality_only(archive, s3) -> None:
    cfg0 = _build(archive, s3, packing=False)
    modalities = dict(_q(cfg0, "SELECT modality, count(*) FROM series GROUP BY 1"))
    target = sorted(modalities)[0]
    cfg = archive(offline=f"s3://{BUCKET}/archive",
                  policy={"online_retention_years": 3, "delete_after_years": {target: 4}})
    cutoff = dt.date.today().replace(year=dt.date.today().year - 4)
    expected = {s for (s,) in _q(cfg, "SELECT i.sop_instance_uid FROM image i JOIN series se USING "
                                      "(series_instance_uid) JOIN study st ON st.study_instance_uid = "
                                      f"i.study_instance_uid WHERE se.modality = '{target}' "
                                      f"AND st.study_date < DATE '{cutoff}'")}
    assert expected, "the archive has nothing old enough to expire"
    before = _copies(cfg)
    out = _pacs(cfg, "purge", "--retention")
    assert out.returncode == 0, out.stderr
    assert set(_copies(cfg)) == set(before) - expected
    assert {w for (w,) in _q(cfg, "SELECT DISTINCT why FROM deletion")} == {f"retention:{target}:4y"}
    assert check(cfg) == []


def test_mistakes_are_one_line_and_change_nothing(archive, s3) -> None:
    cfg = archive(policy={"online_retention_years": 3})
    run_ingest(cfg)
    for args in (["purge"], ["purge", "--rejected-before", "yesterday"], ["purge", "--retention"]):
        r = _pacs(cfg, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_moved_study_purged_whole_leaves_the_catalogue_consistent(archive, s3) -> None:
    """A study corrected (moved to another patient), then rejected and purged whole: the
    correction row stays as history, the study is gone from both tiers, `pacs check` is clean."""
    from pacs.admin import study_move

    cfg = _build(archive, s3, packing=False)
    study, patient = _q(cfg, "SELECT study_instance_uid, patient_id FROM study ORDER BY 1 LIMIT 1")[0]
    other = _q(cfg, f"SELECT patient_id FROM patient WHERE patient_id <> '{patient}' ORDER BY 1 LIMIT 1")[0][0]
    study_move(cfg, study=study, to_patient=other, reason="filed under the wrong patient", run_id="move")
    reject(cfg, study=study, code="113038", reason="wrong worklist entry", run_id="reject")
    victims = {s for (s,) in _q(cfg, f"SELECT sop_instance_uid FROM image WHERE study_instance_uid = '{study}'")}
    before = _copies(cfg)
    out = _pacs(cfg, "purge", "--rejected-before", TOMORROW)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["instances_deleted"] == len(victims)
    assert _q(cfg, f"SELECT count(*) FROM study WHERE study_instance_uid = '{study}'") == [(0,)]
    assert _q(cfg, f"SELECT action FROM correction WHERE study_instance_uid = '{study}'") == [("study_move",)]
    assert set(_copies(cfg)) == set(before) - victims
    assert check(cfg) == []
