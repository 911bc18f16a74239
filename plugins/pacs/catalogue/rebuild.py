"""Rebuild the catalogue from the tiers alone (``pacs rebuild``): the archive outlives its index.

Orthanc reconstructs its index from its storage, dcm4chee re-indexes storage on import; this is
the archive's own. :func:`rebuild` reads

- every image file of the online tier (``YYYY/MM/DD/<study>/<series>/<sop>.dcm``),
- every object of the offline tier: per-file images, and the members of packed series tars
  (``<series>.<pack>.tar``: each member's offset and length from the tar's own headers),
- every quarantine sidecar (``<reason>/<batch>/<row>.json``),

and reconstructs patient, study, series and image (UIDs, header columns, sha256, sizes, tier,
online and offline URIs, packed members' offsets and lengths), the departmental tables
(acquisition parameters, dose reports and their events, read from the same headers as at intake)
and the quarantine table. Each
file's header is read by the intake's own reader and judged by the intake's own rules; a file
whose header disagrees with the UIDs of its path, or that cannot be read, is reported and left
out (it is a finding, not an image). An offline object on an object store that recorded its
SHA-256 at the put (``x-amz-checksum-sha256``) is read only up to its pixel data; everything
else is read whole and hashed.

What no file holds comes from the newest verified backup (:mod:`pacs.catalogue.backup`) when
there is one, and the result says which: when each image was received and ingested (and by
which batch), lifecycle runs and plans, recalls and their pins, identity corrections, rejections
made by ``pacs reject`` (those of KOS rejection notes are in the files), deletions, purge plans,
fixity history and the quarantine's resubmissions. Without a backup these start empty, a file's
``received_at`` is its modification time, and the tables say so (``catalogue_meta``).

**Resumable.** The work lives in ``<catalogue>.rebuild/`` beside the catalogue: the listing,
taken once, and one Parquet part per unit of files, each published atomically. A rebuild killed
at any point and run again lists nothing again and reads only the units without a part; the new
catalogue is assembled into that folder from the parts and only then put in place. An existing
catalogue is replaced only with ``force`` and kept beside as ``<file>.replaced-<time>``.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import hashlib
import io
import json
import logging
import multiprocessing as mp
import re
import shutil
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pacs import store
from pacs.catalogue import backup as backups
from pacs.catalogue import db, merge
from pacs.config import Config
from pacs.errors import HeaderError, UsageError

log = logging.getLogger(__name__)

_DAY = r"(?:\d{4}/\d{2}/\d{2}|undated)"
_UID = r"[0-9.]{1,64}"
IMAGE_KEY = re.compile(rf"{_DAY}/(?P<study>{_UID})/(?P<series>{_UID})/(?P<sop>{_UID})\.dcm")
PACK_KEY = re.compile(rf"{_DAY}/(?P<study>{_UID})/(?P<series>{_UID})\.(?P<pack>[0-9A-Za-z_-]{{1,80}})\.tar")
SIDECAR_KEY = re.compile(r"(?P<reason>[a-z_]{1,40})/(?P<batch>[0-9A-Za-z_-]{1,80})/(?P<row>\d{6})\.json")
UNIT_FILES = 200
"""Files per unit of work (a part file); a packed series tar is a unit of its own."""

FROM_BACKUP = ("ingest_batch", "lifecycle_run", "lifecycle_plan", "recall", "fixity_run", "fixity_finding",
               "correction", "rejection", "deletion", "purge_run", "purge_plan")
"""Tables no file holds: taken whole from the newest backup when there is one."""

_EXTRA = pa.schema([("copy_tier", pa.string()), ("copy_uri", pa.string()), ("copy_offset", pa.int64()),
                    ("copy_length", pa.int64()), ("hashed", pa.bool_()), ("problem", pa.string())])


def state_dir(cfg: Config) -> Path:
    """Where a rebuild keeps its work (beside the catalogue; removed when the rebuild is done)."""
    return cfg.duckdb.with_name(cfg.duckdb.name + ".rebuild")


# --- listing ----------------------------------------------------------------------------------

def _listing(cfg: Config) -> list[dict[str, Any]]:
    """Every file the rebuild reads, as units: online images, offline images and tars, sidecars."""
    entries: list[dict[str, Any]] = []
    skipped = 0
    for kind, loc in (("online", cfg.online), ("offline", cfg.offline)):
        with store.tier_faults(loc):
            for path, size in store.iter_files(loc):
                key = loc.key(path)
                if key.startswith(backups.BACKUP_PREFIX.split("/", 1)[0] + "/"):
                    continue
                if IMAGE_KEY.fullmatch(key):
                    entries.append({"kind": kind, "path": path, "size": size})
                elif kind == "offline" and PACK_KEY.fullmatch(key):
                    entries.append({"kind": "pack", "path": path, "size": size})
                else:
                    skipped += 1
    with store.tier_faults(cfg.quarantine):
        names = {p for p, _ in store.iter_files(cfg.quarantine)}
    for path in sorted(names):
        if SIDECAR_KEY.fullmatch(cfg.quarantine.key(path)):
            entries.append({"kind": "sidecar", "path": path, "size": 0})
    if skipped:
        log.warning("rebuild: %d file(s) in the tiers are not archive files (not in the layout); left alone", skipped)
    entries.sort(key=lambda e: (e["kind"], e["path"]))
    units: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for e in entries:
        full = current is not None and len(current["paths"]) >= UNIT_FILES
        if e["kind"] == "pack" or current is None or current["kind"] != e["kind"] or full:
            current = {"unit": len(units), "kind": e["kind"], "paths": [], "sizes": []}
            units.append(current)
        current["paths"].append(e["path"])
        current["sizes"].append(e["size"])
    return units


# --- reading one unit (in a worker process) -------------------------------------------------------

_WORKER_CONFIGS: dict[str, Config] = {}


def _worker_config(config_path: str) -> Config:
    from pacs.config import load_config

    if config_path not in _WORKER_CONFIGS:
        _WORKER_CONFIGS[config_path] = load_config(config_path)
    return _WORKER_CONFIGS[config_path]


def _judged(data: bytes | None, header: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, str | None]:
    from pacs.dicom import read_header_bytes
    from pacs.dicom.validation import judge

    try:
        header = header if header is not None else read_header_bytes(data or b"")
    except HeaderError as exc:
        return None, f"{exc.reason}: {exc.detail}"
    rejection = judge(header, None)
    if rejection is not None:
        return None, f"{rejection.reason}: {rejection.detail}"
    return header, None


_PROBLEM_KEEPS = frozenset({"batch_id", "row_no", "source_uri", "sha256", "size_bytes", "received_at", "status"})


def _image_row(rebuild_id: str, unit: int, n: int, header: dict[str, Any] | None, problem: str | None, *,
               tier: str, uri: str, offset: int | None, length: int | None, sha256: str, size: int,
               mtime_ns: int, hashed: bool, key_uids: tuple[str, str, str]) -> dict[str, Any]:
    from pacs.intake.staged import STAGED_SCHEMA, accept

    row = dict.fromkeys(STAGED_SCHEMA.names)
    if header is not None:
        accept(row, header)
        got = (row["study_instance_uid"], row["series_instance_uid"], row["sop_instance_uid"])
        if got != key_uids:
            problem = "its header's study, series or SOP instance UID is not the one its path names"
    row.update(batch_id=f"rebuild-{rebuild_id}", row_no=unit * 1_000_000 + n, source_uri=uri,
               received_at=dt.datetime.fromtimestamp(mtime_ns / 1e9, dt.UTC), sha256=sha256, size_bytes=size,
               dst_uri=uri if tier == "online" else None, status="ok" if problem is None else "problem")
    row.update(copy_tier=tier, copy_uri=uri, copy_offset=offset, copy_length=length, hashed=hashed, problem=problem)
    if problem is not None:  # a file's origin and bytes are kept, nothing of its header but its path's UIDs
        for k in set(STAGED_SCHEMA.names) - _PROBLEM_KEEPS:
            row[k] = None
        row["study_instance_uid"], row["series_instance_uid"], row["sop_instance_uid"] = key_uids
    return row


def _mtime_ns(loc: Any, path: str) -> int:
    return int((store.modified(loc, path) or 0) * 1e9)


def _read_files(cfg: Config, rebuild_id: str, unit: dict[str, Any]) -> list[dict[str, Any]]:
    from pacs.dicom import read_header

    loc = cfg.online if unit["kind"] == "online" else cfg.offline
    rows = []
    for n, (path, size) in enumerate(zip(unit["paths"], unit["sizes"], strict=True)):
        m = IMAGE_KEY.fullmatch(loc.key(path))
        assert m is not None
        uids = (m["study"], m["series"], m["sop"])
        recorded = store.recorded_sha256(loc, path) if unit["kind"] == "offline" else None
        if recorded is not None:  # the store verified these bytes at the put: the header is enough
            try:
                header, problem = _judged(None, read_header(loc.fs, path, size=size))
            except HeaderError as exc:
                header, problem = None, f"{exc.reason}: {exc.detail}"
            sha, hashed = recorded, False
        else:
            data = store.read(loc, path)
            size = len(data)
            sha, hashed = hashlib.sha256(data).hexdigest(), True
            header, problem = _judged(data)
        rows.append(_image_row(rebuild_id, unit["unit"], n, header, problem, tier=unit["kind"], uri=loc.uri(path),
                               offset=None, length=None, sha256=sha, size=size, mtime_ns=_mtime_ns(loc, path),
                               hashed=hashed, key_uids=uids))
    return rows


def _read_pack(cfg: Config, rebuild_id: str, unit: dict[str, Any]) -> list[dict[str, Any]]:
    loc = cfg.offline
    (path,) = unit["paths"]
    m = PACK_KEY.fullmatch(loc.key(path))
    assert m is not None
    data = store.read(loc, path)
    mtime_ns, uri = _mtime_ns(loc, path), loc.uri(path)
    rows = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for n, member in enumerate(tar.getmembers()):
            if not member.isfile() or not member.name.endswith(".dcm"):
                continue
            body = data[member.offset_data:member.offset_data + member.size]
            header, problem = _judged(body)
            rows.append(_image_row(rebuild_id, unit["unit"], n, header, problem, tier="offline", uri=uri,
                                   offset=member.offset_data, length=member.size,
                                   sha256=hashlib.sha256(body).hexdigest(), size=member.size, mtime_ns=mtime_ns,
                                   hashed=True, key_uids=(m["study"], m["series"], member.name.removesuffix(".dcm"))))
    return rows


def _read_sidecars(cfg: Config, unit: dict[str, Any]) -> pa.Table:
    loc = cfg.quarantine
    rows = []
    for path in unit["paths"]:
        m = SIDECAR_KEY.fullmatch(loc.key(path))
        assert m is not None
        try:
            body = json.loads(store.read(loc, path))
        except (OSError, ValueError) as exc:
            log.warning("rebuild: quarantine sidecar %s unreadable (%s); left out", loc.uri(path), exc)
            continue
        stem = path.rsplit(".", 1)[0]
        kept = next((stem + s for s in (".dcm", ".link") if store.exists(loc, stem + s)), None)
        if kept is None:
            log.warning("rebuild: quarantine sidecar %s has no quarantined file beside it; left out", loc.uri(path))
            continue
        at = body.get("quarantined_at")
        rows.append({
            "quarantine_id": f"{m['batch']}:{int(m['row'])}", "batch_id": m["batch"],
            "source_uri": body.get("source_uri") or "", "quarantine_uri": loc.uri(kept), "sidecar_uri": loc.uri(path),
            "reason": body.get("reason") or m["reason"], "detail": body.get("detail") or "",
            "sha256": body.get("sha256"), "size_bytes": body.get("size_bytes"),
            "quarantined_at": dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC),
        })
    schema = pa.schema([("quarantine_id", pa.string()), ("batch_id", pa.string()), ("source_uri", pa.string()),
                        ("quarantine_uri", pa.string()), ("sidecar_uri", pa.string()), ("reason", pa.string()),
                        ("detail", pa.string()), ("sha256", pa.string()), ("size_bytes", pa.int64()),
                        ("quarantined_at", pa.timestamp("us", tz="UTC"))])
    return pa.Table.from_pylist(rows, schema=schema)


def _images_table(rows: list[dict[str, Any]]) -> pa.Table:
    from pacs.intake.staged import STAGED_SCHEMA, table

    staged = table(rows)
    for f in _EXTRA:
        staged = staged.append_column(f, pa.array([r[f.name] for r in rows], type=f.type))
    return staged if rows else pa.schema([*STAGED_SCHEMA, *_EXTRA]).empty_table()


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    backups.move(tmp, path)


def read_unit(config_path: str, folder: str, rebuild_id: str, unit: dict[str, Any]) -> dict[str, int]:
    """Read one unit's files and publish its part (a worker process's job); returns its counts."""
    cfg = _worker_config(config_path)
    parts = Path(folder) / "parts"
    if unit["kind"] == "sidecar":
        out = _read_sidecars(cfg, unit)
        _write_atomic(out, parts / f"quarantine-{unit['unit']:06d}.parquet")
        return {"files": len(unit["paths"]), "bytes": 0, "problems": 0, "header_only": 0}
    with store.tier_faults(cfg.online if unit["kind"] == "online" else cfg.offline):
        rows = _read_pack(cfg, rebuild_id, unit) if unit["kind"] == "pack" else _read_files(cfg, rebuild_id, unit)
    _write_atomic(_images_table(rows), parts / f"images-{unit['unit']:06d}.parquet")
    return {"files": len(unit["paths"]), "bytes": sum(unit["sizes"]),
            "problems": sum(r["problem"] is not None for r in rows),
            "header_only": sum(not r["hashed"] for r in rows)}


# --- the whole rebuild ------------------------------------------------------------------------------

def _state(cfg: Config, folder: Path, restart: bool) -> dict[str, Any]:
    if restart and folder.exists():
        shutil.rmtree(folder)
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    state_file = folder / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        log.info("rebuild %s: resuming (%d units listed)", state["rebuild_id"], len(state["units"]))
        return state
    started = time.monotonic()
    units = _listing(cfg)
    state = {"rebuild_id": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
             "started_at": dt.datetime.now(dt.UTC).isoformat(), "units": units}
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    backups.move(tmp, state_file)
    log.info("rebuild %s: listed %d files in %d units in %.1fs", state["rebuild_id"],
             sum(len(u["paths"]) for u in units), len(units), time.monotonic() - started)
    return state


def _part_name(unit: dict[str, Any]) -> str:
    return f"{'quarantine' if unit['kind'] == 'sidecar' else 'images'}-{unit['unit']:06d}.parquet"


def _read_all(cfg: Config, folder: Path, state: dict[str, Any], workers: int) -> dict[str, int]:
    """Read every unit without a part, in ``workers`` processes, logging progress."""
    units = state["units"]
    todo = [u for u in units if not (folder / "parts" / _part_name(u)).exists()]
    total_files = sum(len(u["paths"]) for u in units)
    done_files = total_files - sum(len(u["paths"]) for u in todo)
    counts = {"files": 0, "bytes": 0, "problems": 0, "header_only": 0, "resumed_files": done_files}
    if not todo:
        return counts
    started, last = time.monotonic(), 0.0
    args = (str(cfg.path), str(folder), state["rebuild_id"])

    def progress(got: dict[str, int]) -> None:
        nonlocal done_files, last
        for k in ("files", "bytes", "problems", "header_only"):
            counts[k] += got[k]
        done_files += got["files"]
        now = time.monotonic()
        if now - last >= 5 or done_files == total_files:
            last = now
            rate = counts["files"] / max(now - started, 1e-9)
            eta = (total_files - done_files) / rate if rate else 0
            log.info("rebuild: %d of %d files read (%.0f%%), %.0f files/s, about %.0fs left", done_files,
                     total_files, 100 * done_files / max(total_files, 1), rate, eta)

    if workers <= 1:
        for u in todo:
            progress(read_unit(*args, u))
        return counts
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(read_unit, *args, u) for u in todo]
        for fut in cf.as_completed(futures):
            progress(fut.result())
    return counts


def _parts(folder: Path, prefix: str) -> list[str]:
    return sorted(str(p) for p in (folder / "parts").glob(f"{prefix}-*.parquet"))


def _assemble(cfg: Config, folder: Path, state: dict[str, Any], gen: backups.Generation | None,
              now: dt.datetime) -> dict[str, Any]:
    """Build the new catalogue in ``folder`` from the parts (and the backup); returns its counts."""
    target = folder / "catalogue.duckdb"
    for p in (target, target.with_name(target.name + ".wal")):
        p.unlink(missing_ok=True)  # an assembly killed before it was placed: ours, made again
    bk_path = None
    if gen is not None:
        bk_path = folder / f"backup-g{gen.number}.duckdb"
        if not bk_path.exists():
            backups.download(cfg, gen, bk_path.with_suffix(".tmp"))
            backups.move(bk_path.with_suffix(".tmp"), bk_path)
    con = db.connect(target)
    try:
        images, quarantine = _parts(folder, "images"), _parts(folder, "quarantine")
        problems: list[tuple[Any, ...]] = []
        conflicts = 0
        with db.transaction(con):
            if bk_path is not None:
                con.execute(f"ATTACH '{bk_path}' AS bk (READ_ONLY)")
            if images:
                con.execute("CREATE TEMP TABLE found AS SELECT * FROM read_parquet($f, union_by_name = true)",
                            {"f": images})
                problems = con.execute("SELECT copy_tier, copy_uri, problem FROM found WHERE problem IS NOT NULL "
                                       "ORDER BY 2").fetchall()
                db.run(con, "rebuild_images", {"now": now})
                if bk_path is not None:
                    db.run(con, "rebuild_backup_times")
                db.run(con, "rebuild_apply", {"now": now})
                _departmental(con, now)
                conflicts = con.execute("SELECT count(*) FROM rebuild_conflicts").fetchall()[0][0]
            if quarantine:
                con.execute("CREATE TEMP TABLE found_quarantine AS SELECT * FROM read_parquet($f)", {"f": quarantine})
                db.run(con, "rebuild_quarantine")
            if bk_path is not None:
                for t in FROM_BACKUP:
                    con.execute(f"INSERT INTO {t} BY NAME SELECT * FROM bk.{t}")
                db.run(con, "rebuild_from_backup")
            elif images:
                _rejections_from_notes(con)
            db.run_all(con, ("rebuild_finish", "aggregates", "lifecycle_study_state"), {"now": now})
            con.execute("INSERT INTO catalogue_meta VALUES ('rebuilt_at', $at), ('rebuilt_from', $src), "
                        "('rebuild_id', $id) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        {"at": now.isoformat(), "id": state["rebuild_id"],
                         "src": f"tiers + backup generation {gen.number}" if gen else "tiers only"})
        if bk_path is not None:
            con.execute("DETACH bk")
        counts = backups.counts(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return {"counts": counts, "problems": problems, "conflicts": int(conflicts)}


def _departmental(con: duckdb.DuckDBPyConnection, now: dt.datetime) -> None:
    """The departmental rows (acquisition parameters, dose reports and their events) of the rebuilt
    images, from the same header columns the intake's merge reads (``merge_departmental.sql``);
    parts written before those columns existed have none."""
    columns = {r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE rebuilt)").fetchall()}
    if not set(merge.DEPARTMENTAL_COLUMNS) <= columns:
        return
    present = con.execute("SELECT count(*) FROM rebuilt WHERE "
                          + " OR ".join(f"{c} IS NOT NULL" for c in merge.DEPARTMENTAL_COLUMNS)).fetchall()[0][0]
    if present:
        con.execute("CREATE OR REPLACE TEMP VIEW new_images AS SELECT * FROM rebuilt")
        db.run_all(con, ("merge_departmental", "rebuild_departmental"), {"now": now})


def _rejections_from_notes(con: duckdb.DuckDBPyConnection) -> None:
    """Without a backup: the rejections of the KOS rejection notes among the files (as the merge
    records them), in the rebuilt order of receipt."""
    has_notes = con.execute("SELECT count(*) FROM rebuilt WHERE rejection_note IS NOT NULL").fetchall()[0][0]
    if has_notes:
        con.execute("CREATE OR REPLACE TEMP VIEW new_images AS SELECT * FROM rebuilt")
        db.run(con, "merge_rejections", {"run_id": "rebuild"})


def _place(cfg: Config, folder: Path, now: dt.datetime) -> str | None:
    """Put the assembled catalogue in place of ``cfg.duckdb`` (the old one set aside)."""
    aside = backups.set_aside(cfg.duckdb, now)
    cfg.duckdb.parent.mkdir(parents=True, exist_ok=True)
    backups.move(folder / "catalogue.duckdb", cfg.duckdb)
    (folder / "placed").write_text(str(aside or ""))
    return str(aside) if aside else None


def _placed_by(cfg: Config, folder: Path, state: dict[str, Any]) -> bool:
    """Whether the catalogue in place is this rebuild's (killed after placing it)."""
    if not (folder / "placed").exists() or not cfg.duckdb.exists():
        return False
    with db.opened(cfg.duckdb, read_only=True) as con:
        row = con.execute("SELECT value FROM catalogue_meta WHERE key = 'rebuild_id'").fetchall()[0]
    return bool(row) and row[0] == state["rebuild_id"]


def rebuild(cfg: Config, *, force: bool = False, restart: bool = False, use_backup: bool = True,
            workers: int | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Reconstruct the catalogue from the tiers (and the newest backup); see the module text."""
    from pacs.catalogue.snapshot_refresh import refresh_snapshot

    folder = state_dir(cfg)
    now = now or dt.datetime.now(dt.UTC)
    state_file = folder / "state.json"
    resuming = state_file.exists() and not restart
    if resuming and _placed_by(cfg, folder, json.loads(state_file.read_text())):
        state = json.loads(state_file.read_text())
        placed_aside = (folder / "placed").read_text() or None
        return _finish(cfg, folder, state, refresh_snapshot, {"replaced": placed_aside, "resumed": True})
    if cfg.duckdb.exists() and not force:
        raise UsageError(f"catalogue {cfg.duckdb} exists; `pacs rebuild --force` replaces it (the current file is "
                         f"kept as {cfg.duckdb.name}.replaced-<time>), or `pacs restore` takes a backup instead")
    started = time.monotonic()
    state = _state(cfg, folder, restart)
    gen = None
    if use_backup:
        gens = backups.generations(cfg)
        gen = gens[-1] if gens else None
    read = _read_all(cfg, folder, state, workers or cfg.ingest.workers)
    read_seconds = time.monotonic() - started
    built = _assemble(cfg, folder, state, gen, now)
    aside = _place(cfg, folder, now)
    out = _finish(cfg, folder, state, refresh_snapshot, {"replaced": aside, "resumed": resuming})
    files = sum(len(u["paths"]) for u in state["units"])
    out.update({
        "files": files, "files_read": read["files"], "bytes_read": read["bytes"],
        "read_header_only": read["header_only"],
        "read_seconds": round(read_seconds, 2), "seconds": round(time.monotonic() - started, 2),
        "files_per_second": round(read["files"] / read_seconds, 1) if read["files"] and read_seconds else None,
        "counts": built["counts"], "problems": len(built["problems"]),
        "problem_files": [{"tier": t, "uri": u, "problem": p} for t, u, p in built["problems"][:20]],
        "copies_that_differ": built["conflicts"],
        "from_backup": gen.number if gen else None,
        "not_rebuilt": [] if gen else ["received and ingested times (file times instead)", "lifecycle runs and plans",
                                       "recalls and their pins", "identity corrections",
                                       "rejections made by pacs reject", "deletions and purge plans",
                                       "fixity history", "quarantine resubmissions", "ingest batches"],
    })
    log.info("rebuild: %d images from %d files%s; %d problem file(s)", out["counts"]["image"], files,
             f", history from backup generation {gen.number}" if gen else ", no backup: history not rebuilt",
             out["problems"])
    return out


def _finish(cfg: Config, folder: Path, state: dict[str, Any], refresh: Any, out: dict[str, Any]) -> dict[str, Any]:
    with db.opened(cfg.duckdb) as con:
        refresh(con, cfg.parquet, force=True)
    shutil.rmtree(folder, ignore_errors=True)
    return {"rebuild_id": state["rebuild_id"], "catalogue": str(cfg.duckdb), **out}
