"""Intake as production runs it (issue 11): landing and the work journal on object storage (moto's
S3 server), the online tier and the DuckDB catalogue on local disk, and more than one run at a
time, each in its own process.

Two whole intake runs at once end as one would: every input catalogued, quarantined with its
reason or counted as an identical duplicate, exactly once, nothing lost. A batch whose lease
another process holds is left to it by every step. The expected outcomes come from the
synthetic archive's own record of what each file is, not from intake.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from helpers import MotoServer, s3fs_for
from helpers import query as _q
from processes import Child, wait_until

from pacs import intake, journal, synth
from pacs.catalogue.checks import check


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _online_files(cfg: Any) -> dict[str, str]:
    return {str(p): _sha(p) for p in Path(cfg.online.root).rglob("*") if p.is_file()}


def _upload_in_order(s3: MotoServer, hospital: synth.SynthResult, prefix: str) -> list[synth.SynthFile]:
    """Upload the good files, then (once the store's clock has moved on) the rest: on object storage
    a file's arrival time is its LastModified, and "first received wins" must find the good ones
    first, as their mtimes say. Links cannot be uploaded and are left out; the files uploaded."""
    fs = s3fs_for(s3)
    files = [f for f in hospital.files if not Path(f.path).is_symlink()]
    good = [f for f in files if f.kind == "good"]
    rest = [f for f in files if f.kind != "good"]
    for f in good:
        fs.put_file(f.path, f"{prefix}/{Path(f.path).relative_to(hospital.root)}")
    latest = max(i["LastModified"] for i in fs.find(prefix, detail=True).values())

    def later() -> bool:
        fs.pipe_file("clock/tick", b"")
        return fs.info("clock/tick", refresh=True)["LastModified"] > latest

    wait_until(later, "the store's clock to pass the good files' uploads")
    for f in rest:
        fs.put_file(f.path, f"{prefix}/{Path(f.path).relative_to(hospital.root)}")
    return files


_INTAKE = """
    import json, sys
    from pacs.config import load_config
    from pacs.intake import run_ingest
    cfg = load_config(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(run_ingest(cfg, run_id=sys.argv[2]), default=str), flush=True)
"""


def _outcomes(cfg: Any) -> Counter[tuple[str, str]]:
    """(source URI, outcome) of every merged batch's rows, counted."""
    j = journal.ingest(cfg.work)
    seen: Counter[tuple[str, str]] = Counter()
    for b in j.runs():
        if j.has(b, journal.OUTCOME):
            t = j.read_table(b, journal.OUTCOME, columns=["source_uri", "outcome"])
            seen.update(zip(t.column("source_uri").to_pylist(), t.column("outcome").to_pylist(), strict=True))
    return seen


def test_two_whole_intake_runs_at_once_on_object_storage_end_as_one_would(
        s3: MotoServer, archive: Any, tmp_path: Path) -> None:
    fs = s3fs_for(s3)
    for bucket in ("landing-runs", "work-runs", "clock"):
        fs.mkdir(bucket)
    hospital = synth.generate_archive(tmp_path / "source", seed=7, patients=4, count_scale=0.03, size_scale=0.05,
                                      bad=True, duplicates=3)
    files = _upload_in_order(s3, hospital, "landing-runs/in")
    cfg = archive(landing=["s3://landing-runs/in"], work="s3://work-runs/journal",
                  ingest={"batch_size": 10, "workers": 1, "fsync": False})
    runs = {name: Child(_INTAKE, str(cfg.path), name, log=tmp_path / f"{name}.log") for name in ("run-a", "run-b")}
    try:
        assert [r.line() for r in runs.values()] == ["ready", "ready"]
        for r in runs.values():
            r.send("go")
        summaries = [json.loads(r.line()) for r in runs.values()]
        assert [r.wait() for r in runs.values()] == [0, 0]
    finally:
        for r in runs.values():
            r.kill()

    kinds = Counter(f.kind for f in files)
    reasons = {k: n for k, n in kinds.items() if k not in ("good", "duplicate")}
    total = {k: sum(s[k] for s in summaries) for k in ("files", "catalogued", "duplicates", "quarantined", "deferred")}
    assert total == {"files": len(files), "catalogued": kinds["good"], "duplicates": kinds["duplicate"],
                     "quarantined": sum(reasons.values()), "deferred": 0}, summaries
    assert sum((Counter(s["reasons"]) for s in summaries), Counter()) == reasons
    # each landing file has exactly one outcome, in one batch merged by one of the runs
    outcomes = _outcomes(cfg)
    assert set(outcomes.values()) == {1}
    uploaded = {f"s3://landing-runs/in/{Path(f.path).relative_to(hospital.root)}" for f in files}
    assert {uri for uri, _ in outcomes} == uploaded and len(outcomes) == len(files)
    # the catalogue holds the good files' bytes, quarantine every bad file's original, and nothing else
    good = {f.sop_instance_uid: _sha(f.path) for f in files if f.kind == "good"}
    assert dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image")) == good
    bad = Counter((f.kind, _sha(f.path)) for f in files if f.kind in reasons)
    assert Counter(_q(cfg, "SELECT reason, sha256 FROM quarantine")) == bad
    assert _online_files(cfg) == dict(_q(cfg, "SELECT online_uri, sha256 FROM image"))
    assert check(cfg) == []
    assert fs.find("landing-runs/in") == []  # every landing file removed once its outcome was committed
    assert journal.ingest(cfg.work).open_runs() == []
    assert intake.run_ingest(cfg, run_id="after")["files"] == 0  # nothing left over for a later run


_OWNER = """
    import sys
    from pacs import intake, journal
    from pacs.config import load_config
    cfg = load_config(sys.argv[1])
    batch = sys.argv[2]
    j = journal.ingest(cfg.work)
    cm = j.lease(batch)
    assert cm.__enter__()
    print("held", flush=True)
    sys.stdin.readline()
    cm.__exit__(None, None, None)
    intake.process_batch(cfg, batch)
    cm = j.lease(batch)  # processed, and held again as by its merge
    assert cm.__enter__()
    print("stored and held", flush=True)
    sys.stdin.readline()
    cm.__exit__(None, None, None)
    print("released", flush=True)
"""


def _every_step_leaves_it(cfg: Any, batch: str) -> None:
    j = journal.ingest(cfg.work)
    assert j.is_leased(batch)
    assert intake.sweep(cfg, run_id="another") == []  # not resumed by another run's sweep
    assert intake.process_batch(cfg, batch).get("owned_elsewhere") == 1
    assert intake.merge_batches(cfg, [batch], run_id="another")["files"] == 0
    assert intake.finalize_batch(cfg, batch)["state"] == "owned by another run"
    assert not j.has(batch, journal.MERGED) and not j.has(batch, journal.DONE)


def test_a_batch_whose_lease_another_process_holds_is_left_to_it_by_every_step(
        s3: MotoServer, archive: Any, tmp_path: Path) -> None:
    fs = s3fs_for(s3)
    fs.mkdir("landing-held")
    fs.mkdir("work-held")
    src = synth.generate_ct_slices(tmp_path / "ct", 3, per_series=3, rows=16, columns=16)
    for f in src.good():
        fs.put_file(f.path, f"landing-held/in/{Path(f.path).name}")
    cfg = archive(landing=["s3://landing-held/in"], work="s3://work-held/journal",
                  ingest={"batch_size": 50, "workers": 1, "fsync": False})
    (batch,) = intake.sweep(cfg, run_id="owner")
    j = journal.ingest(cfg.work)
    owner = Child(_OWNER, str(cfg.path), batch, log=tmp_path / "owner.log")
    try:
        assert owner.line() == "held"
        _every_step_leaves_it(cfg, batch)
        assert not j.has(batch, journal.STORED)
        owner.send("process")
        assert owner.line() == "stored and held"
        stored = fs.info(cfg.work.path(j.key(batch, journal.STORED)), refresh=True)["ETag"]
        _every_step_leaves_it(cfg, batch)
        assert _q(cfg, "SELECT count(*) FROM image") == [(0,)]
        owner.send("release")
        assert owner.line() == "released"
        assert owner.wait() == 0
    finally:
        owner.kill()
    summary = intake.run_ingest(cfg, run_id="next")
    assert summary["catalogued"] == 3
    assert fs.info(cfg.work.path(j.key(batch, journal.STORED)), refresh=True)["ETag"] == stored  # not redone
    assert dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image")) == {f.sop_instance_uid: _sha(f.path)
                                                                            for f in src.good()}
    assert fs.find("landing-held/in") == [] and j.open_runs() == []


def test_a_landing_object_replaced_after_the_sweep_is_not_removed_with_the_one_taken_in(
        s3: MotoServer, archive: Any, tmp_path: Path) -> None:
    fs = s3fs_for(s3)
    fs.mkdir("landing-resent")
    fs.mkdir("work-resent")
    (f,) = synth.generate_ct_slices(tmp_path / "ct", 1, per_series=1, rows=16, columns=16).good()
    key = f"landing-resent/in/{Path(f.path).name}"
    fs.put_file(f.path, key)
    cfg = archive(landing=["s3://landing-resent/in"], work="s3://work-resent/journal",
                  ingest={"batch_size": 50, "workers": 1, "fsync": False})
    ids = intake.sweep(cfg, run_id="run")
    intake.process_batch(cfg, ids[0])
    intake.merge_batches(cfg, ids, run_id="run")
    # the sender sends the file again, corrected, under the same name and with the same size
    resent = bytearray(Path(f.path).read_bytes())
    resent[-1] ^= 0xFF
    s3fs_for(s3).pipe_file(key, bytes(resent))
    intake.finalize_batches(cfg, ids)
    assert fs.cat_file(key) == bytes(resent)  # not removed: it is not the object that was taken in
    assert dict(_q(cfg, "SELECT sop_instance_uid, sha256 FROM image")) == {f.sop_instance_uid: _sha(f.path)}
    later = intake.run_ingest(cfg, run_id="later")  # the next run takes the resent object in its turn
    assert later["files"] == 1 and later["reasons"] == {"sop_conflict": 1}
    assert _q(cfg, "SELECT sha256 FROM quarantine") == [(hashlib.sha256(resent).hexdigest(),)]
    assert fs.find("landing-resent/in") == []
