"""What the archive's administration costs on a 1,000,000-image catalogue: a patient merge, a
study move, a rejection and a purge, each with its snapshot refresh, next to the bare SQL floor.

The catalogue is ``bench/merge_rate.py``'s builder at 1,000,000 images (300 images per study in
3 series, 2 studies per patient; cached under ``<workdir>/merge``). A fresh archive gets a copy
and its initial snapshot (untimed, reported). Then, in one run, each operation is timed as an
administrator runs it (the ``pacs.admin`` function the CLI and the ``pacs_admin`` DAG call: one
catalogue transaction with its audit row, then the snapshot refresh), with the snapshot bytes it
wrote (files new or changed under the snapshot folder) and the catalogue file's growth:

1. **patient merge** — a patient of 2 studies (600 images) into another;
2. **study move** — one study (300 images) to a third patient;
3. **reject** — one study's 300 instances (code 113001);
4. **purge** — those rejected instances deleted from the online tier (their image rows are
   pointed at real files written for the bench first: the purge deletes and verifies real files).

The floor, timed in the same run on another copy of the same catalogue: the same row changes as
bare DuckDB statements (no checks, no audit row, no aggregates, no snapshot) — what the change
itself costs in this catalogue. Prints a table and one JSON line; nothing is asserted.

Run: ``.venv/bin/python bench/admin_cost.py [--images 1000000] [--workdir /tmp/pacs-bench]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import duckdb
import merge_rate
from ingest_scale import listing, written

FROM_PATIENT, INTO_PATIENT, MOVE_TO = 10, 11, 13  # patient numbers of the builder (pid(p)); study 24 is patient 12's
REJECT_STUDY = 30  # a study of patient 15 (2 studies per patient)


def _pid(p: int) -> str:
    return "P" + str(p).rjust(9, "0")


def _study_uid(t: int) -> str:
    return "1.2.826.0.1.3680043.8.498.2.1" + str(t).rjust(20, "0")


def _archive(base: Path, src: Path) -> Any:
    from pacs.config import load_config

    common.rmtree(base)
    cfg = load_config(common.write_config(base))
    db = base / "catalogue" / "pacs.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, db)
    return cfg


def _real_files(cfg: Any, study: str) -> int:
    """Point the study's image rows at real files in the online tier (bytes whose sha256 the rows
    then carry), so that the purge deletes and verifies files that exist."""
    root = Path(cfg.online.root) / "bench" / study
    root.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(cfg.duckdb))
    try:
        sops = [r[0] for r in con.execute("SELECT sop_instance_uid FROM image WHERE study_instance_uid = $s",
                                          {"s": study}).fetchall()]
        rows = []
        for n, sop in enumerate(sops):
            data = f"bench file {n} of {study}".encode() * 64
            path = root / f"{sop}.dcm"
            path.write_bytes(data)
            rows.append((str(path), hashlib.sha256(data).hexdigest(), len(data), sop))
        con.executemany("UPDATE image SET uri = ?, online_uri = ?, sha256 = ?, size_bytes = ? "
                        "WHERE sop_instance_uid = ?", [(u, u, h, s, sop) for u, h, s, sop in rows])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return len(sops)


def timed(name: str, cfg: Any, fn: Callable[[], Any]) -> dict[str, Any]:
    snap = Path(cfg.parquet.root) if hasattr(cfg.parquet, "root") else Path(str(cfg.parquet))
    db = Path(str(cfg.duckdb))
    before, size0 = listing(snap), db.stat().st_size
    t = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t
    w = written(before, listing(snap))
    out = {"op": name, "s": round(seconds, 3), "snapshot_bytes": w["bytes"], "snapshot_files": w["files_written"],
           "catalogue_growth_bytes": db.stat().st_size - size0, "result": result}
    print(f"{name}: {seconds:.2f}s, snapshot wrote {w['bytes'] / 1e6:.2f} MB in {w['files_written']} files",
          file=sys.stderr)
    return out


FLOOR_SQL = {
    "patient merge": [
        f"UPDATE study SET patient_id = '{_pid(INTO_PATIENT)}' WHERE patient_id = '{_pid(FROM_PATIENT)}'",
        f"UPDATE patient SET merged_into = '{_pid(INTO_PATIENT)}' WHERE patient_id = '{_pid(FROM_PATIENT)}'"],
    "study move": [
        f"UPDATE study SET patient_id = '{_pid(MOVE_TO)}' WHERE study_instance_uid = '{_study_uid(24)}'"],
    "reject": [
        "INSERT INTO rejection (sop_instance_uid, series_instance_uid, study_instance_uid, code, meaning, source, "
        "rejected_at, run_id) SELECT sop_instance_uid, series_instance_uid, study_instance_uid, '113001', "
        "'Rejected for Quality Reasons', 'cli', now(), 'floor' FROM image "
        f"WHERE study_instance_uid = '{_study_uid(REJECT_STUDY)}'"],
    "purge": [f"DELETE FROM image WHERE study_instance_uid = '{_study_uid(REJECT_STUDY)}'"],
}


def floor(src: Path, work: Path) -> dict[str, float]:
    db = work / "floor.duckdb"
    shutil.copyfile(src, db)
    con = duckdb.connect(str(db))
    out: dict[str, float] = {}
    try:
        for name, statements in FLOOR_SQL.items():
            t = time.perf_counter()
            con.execute("BEGIN TRANSACTION")
            for s in statements:
                con.execute(s)
            con.execute("COMMIT")
            out[name] = round(time.perf_counter() - t, 4)
    finally:
        con.close()
        db.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    args = ap.parse_args(argv)
    start, info = common.code_version(), common.machine_info()
    from pacs import admin
    from pacs.catalogue import snapshot

    src = args.workdir / "merge" / f"catalogue-{args.images}.duckdb"
    built = merge_rate.build_catalogue(src, args.images)
    base = args.workdir / "admin_cost" / "run"
    cfg = _archive(base, src)
    files = _real_files(cfg, _study_uid(REJECT_STUDY))
    t = time.perf_counter()
    snapshot.refresh(cfg)
    initial = round(time.perf_counter() - t, 1)
    print(f"initial snapshot of {args.images:,} images: {initial}s (untimed)", file=sys.stderr)
    run = f"bench-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    ops = [
        timed("patient merge", cfg, lambda: admin.patient_merge(
            cfg, from_patient=_pid(FROM_PATIENT), into_patient=_pid(INTO_PATIENT), reason="bench", run_id=run)),
        timed("study move", cfg, lambda: admin.study_move(
            cfg, study=_study_uid(24), to_patient=_pid(MOVE_TO), reason="bench", run_id=run)),
        timed("reject", cfg, lambda: admin.reject(
            cfg, study=_study_uid(REJECT_STUDY), code="113001", reason="bench", run_id=run)),
        timed("purge", cfg, lambda: admin.purge(
            cfg, rejected_before=dt.date.today() + dt.timedelta(days=1), run_id=run)),
    ]
    gone = sum(1 for p in (Path(cfg.online.root) / "bench").rglob("*.dcm"))
    floors = floor(src, base)
    rows = [(o["op"], o["s"], floors[o["op"]], common.ratio(o["s"], floors[o["op"]]), o["snapshot_bytes"] / 1e6,
             o["snapshot_files"]) for o in ops]
    common.print_table(("operation", "pacs s", "bare SQL s", "ratio", "snapshot MB", "snapshot files"), rows,
                       title=f"administration on a {args.images:,}-image catalogue (initial snapshot {initial}s)")
    print(f"purge: {files} real files written for the rejected study, {gone} left after the purge")
    common.final_json({"bench": "admin_cost", "images": args.images, "catalogue": built, "initial_snapshot_s": initial,
                       "ops": ops, "floor_s": floors, "files_left_after_purge": gone, "machine": info,
                       "code": common.provenance(start)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
