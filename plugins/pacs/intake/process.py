"""Process: read, hash, parse, validate and store each file of one batch (one task per batch).

Each file is read once: sha256, header (pydicom, header only), validation. Good files are
stored in the online tier under the UID layout (copied, or renamed when landing and online
share a filesystem) and rejects in quarantine with a JSON sidecar. A batch's rows are written
to the journal (``stored``) before the merge sees them; a rename plan (``staged``) is written
before any file leaves landing, so a killed step resumes exactly where it stopped.

One bad file never fails its batch, and a batch that keeps failing is split so that it never
blocks later ones (see :func:`process_batch`).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import os
from typing import Any

from pacs import journal, store
from pacs.config import Config
from pacs.dicom import HeaderError, read_header, read_header_bytes
from pacs.dicom.layout import image_key, quarantine_key
from pacs.dicom.validation import UNREADABLE, UNSAFE_PATH, judge
from pacs.errors import TransientError
from pacs.intake.quarantine import quarantine_bytes, sidecar
from pacs.intake.staged import Status, accept, base_row, counts, defer, reject, table
from pacs.store import Location

log = logging.getLogger(__name__)

MEMORY_LIMIT = 64 * 1024 * 1024  # files up to this size are read once into memory


def examine(cfg: Config, batch_id: str, f: dict[str, Any], move_ok: bool, move_quarantine: bool
            ) -> dict[str, Any]:
    """Read, hash, parse and validate one landing file, and store it unless it is to be renamed.

    With ``move_ok``/``move_quarantine`` the file is only planned (``move`` set); the rename
    happens in :func:`_apply_moves` once the plan is in the journal.

    One file never fails its batch: an unexpected error while reading or parsing it makes it
    ``unreadable`` (its bytes quarantined) or, when even that is impossible, deferred with the
    reason. Only faults of a tier (full, read-only, unreachable) stop the batch, as
    :class:`~pacs.store.TierError`: nothing is recorded, and the next run redoes it.
    """
    try:
        return _examine(cfg, batch_id, f, move_ok, move_quarantine)
    except store.TierError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolate the file, whatever went wrong with it
        log.warning("batch %s row %s: %s while examining; the file is set aside", batch_id, f["row"],
                    type(exc).__name__)
        row = base_row(batch_id, f)
        detail = f"could not be examined ({type(exc).__name__})"
        try:
            loc = cfg.landing[f["landing"]]
            reject(row, UNREADABLE, detail, None)
            quarantine_bytes(cfg, row, None, loc.fs, f["path"])
        except store.TierError:
            raise
        except Exception:  # noqa: BLE001 - not even its bytes could be read: leave it in landing
            defer(row, detail)
        return row


def _read_landing(cfg: Config, row: dict[str, Any], f: dict[str, Any]) -> tuple[bytes | None, Any, Any]:
    """Read one landing file: (bytes or None, header or None, HeaderError or None).

    Local files up to MEMORY_LIMIT are read once (sha256 and header from the same bytes) and
    their identity (inode, size, mtime) is recorded so that a rename can later prove it moves
    exactly these bytes. Larger or remote files are parsed from small-block reads; their bytes
    are hashed while they are copied.
    """
    loc = cfg.landing[f["landing"]]
    src = f["path"]
    data: bytes | None = None
    small = store.read_small(loc, src, f["size"], MEMORY_LIMIT)
    if small is not None:
        data, ident = small
        if ident is None:
            raise _Changed
        row["sha256"], row["size_bytes"] = store.hash_bytes(data), len(data)
        row["source_dev"], row["source_ino"], row["read_mtime_ns"] = ident.dev, ident.ino, ident.mtime_ns
    else:
        row["size_bytes"] = f["size"]
    try:
        header = read_header_bytes(data) if data is not None else read_header(loc.fs, src, size=f["size"])
    except HeaderError as exc:
        return data, None, exc
    return data, header, None


class _Changed(TransientError):
    """The landing file changed while it was being read."""


def _examine(cfg: Config, batch_id: str, f: dict[str, Any], move_ok: bool, move_quarantine: bool
             ) -> dict[str, Any]:
    row = base_row(batch_id, f)
    loc = cfg.landing[f["landing"]]
    src = f["path"]
    if f.get("link") == "unsafe":
        try:
            target = os.readlink(src).encode()
        except OSError:
            target = b""
        row["size_bytes"] = len(target)
        row["sha256"] = store.hash_bytes(target)
        reject(row, UNSAFE_PATH, f.get("detail", "unsafe link"), None)
        quarantine_bytes(cfg, row, target, suffix=".link")
        return row
    try:
        data, header, problem = _read_landing(cfg, row, f)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        defer(row, f"could not read the landing file: {type(exc).__name__}")
        return row
    except _Changed:
        defer(row, "the landing file changed while it was read")
        return row

    rejection = judge(header, problem)  # the header reader guarantees each column's type
    if rejection is None:
        accept(row, header)
    else:
        reject(row, rejection.reason, rejection.detail, header if problem is None else None)

    link = f.get("link") == "inside"
    movable = data is not None and not link and row["source_ino"] is not None
    if row["status"] == Status.REJECTED:
        if move_quarantine and movable:
            row["move"] = True
            row["quarantine_uri"] = cfg.quarantine.uri(
                cfg.quarantine.path(quarantine_key(row["reason"], batch_id, row["row_no"])))
        else:
            quarantine_bytes(cfg, row, data, loc.fs, src)
        return row

    key = image_key(row["study_date"], row["study_instance_uid"], row["series_instance_uid"],
                    row["sop_instance_uid"])
    dst = cfg.online.path(key)
    row["dst_uri"] = cfg.online.uri(dst)
    if move_ok and movable:
        row["move"] = True
        return row
    _store_copy(cfg, row, data, loc, src, dst)
    return row


def _store_copy(cfg: Config, row: dict[str, Any], data: bytes | None, loc: Location, src: str, dst: str) -> None:
    """Publish a file into the online tier by copying it (its landing file stays until commit).

    From memory, the published bytes are the ones hashed and parsed. Streamed, the sha256 is
    of the bytes written; a file that no longer has the size it was parsed at is deferred.
    """
    with store.tier_faults(cfg.online):
        if data is not None:
            created = store.write(cfg.online, dst, data, row["sha256"], fsync=False, tag=row["batch_id"])
            row["in_place"] = created or store.holds(cfg.online, dst, row["sha256"])
            return
        written = store.copy_stream(loc.fs, src, cfg.online, dst, fsync=False, tag=row["batch_id"])
    if written.size != row["size_bytes"]:
        if written.created:
            store.remove(cfg.online, dst)
        defer(row, "the landing file changed while it was stored")
        return
    row["sha256"], row["size_bytes"] = written.sha256, written.size
    row["in_place"] = written.created or store.holds(cfg.online, dst, row["sha256"])


def _copy_verified(cfg: Config, row: dict[str, Any], dst_loc: Location, dst: str) -> bool:
    """Copy a landing file whose rename is not allowed; True if the copy holds the recorded bytes."""
    src_loc = cfg.landing[row["landing"]]
    with store.tier_faults(dst_loc):
        written = store.copy_stream(src_loc.fs, row["source_path"], dst_loc, dst, fsync=False,
                                      overwrite=True, tag=row["batch_id"])
    if written.sha256 == row["sha256"]:
        return True
    store.remove(dst_loc, dst)
    return False


def _identity(row: dict[str, Any]) -> store.Identity:
    return store.Identity(row["source_dev"], row["source_ino"], row["size_bytes"], row["read_mtime_ns"])


_CHANGED = "the landing file changed after it was read; left in landing for the next sweep"


def _move_image(cfg: Config, row: dict[str, Any]) -> None:
    """Rename one planned image into the online tier, proving it is the file that was read."""
    src, dst = row["source_path"], cfg.online.path_of_uri(row["dst_uri"])
    with store.tier_faults(cfg.online):
        outcome = store.move_verified(src, dst, _identity(row))
    if outcome == "moved":
        row["in_place"] = True
    elif outcome == "exists":  # resumed after our own rename, or another file holds the path
        held = store.holds(cfg.online, dst, row["sha256"])
        row["in_place"] = held
        if held and os.path.lexists(src) and os.path.samefile(src, dst):
            os.unlink(src)
    elif outcome == "gone":  # moved by the interrupted attempt, or taken away by someone else
        row["in_place"] = store.holds(cfg.online, dst, row["sha256"])
        if not row["in_place"]:
            defer(row, "the landing file vanished before it was stored")
    elif outcome == "changed":
        defer(row, _CHANGED)
    else:  # "copy": the rename is not permitted here; copy, verify, remove landing after commit
        row["move"] = False
        if _copy_verified(cfg, row, cfg.online, dst):
            row["in_place"] = True
        else:
            defer(row, _CHANGED)


def _move_rejected(cfg: Config, row: dict[str, Any]) -> None:
    """Rename one planned reject into quarantine (or copy it where renaming is not allowed)."""
    src, qpath = row["source_path"], cfg.quarantine.path_of_uri(row["quarantine_uri"])
    with store.tier_faults(cfg.quarantine):
        outcome = store.move_verified(src, qpath, _identity(row))
    if outcome == "exists":
        if not store.holds(cfg.quarantine, qpath, row["sha256"]):
            with store.tier_faults(cfg.quarantine):
                store.remove(cfg.quarantine, qpath)  # a stale slot of this very batch row
                outcome = store.move_verified(src, qpath, _identity(row))
        elif os.path.lexists(src) and os.path.samefile(src, qpath):
            os.unlink(src)
    if outcome == "gone" and not store.holds(cfg.quarantine, qpath, row["sha256"]):
        defer(row, "the landing file vanished before it was quarantined")
        return
    if outcome == "changed":
        defer(row, _CHANGED)
        return
    if outcome == "copy":
        row["move"] = False
        if not _copy_verified(cfg, row, cfg.quarantine, qpath):
            defer(row, _CHANGED)
            return
    with store.tier_faults(cfg.quarantine):
        row["sidecar_uri"] = sidecar(cfg, row, qpath)


def _apply_moves(cfg: Config, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rename planned files out of landing (same filesystem). Safe to repeat after a crash.

    Each rename proves at that moment that the landing name still holds the file that was
    hashed and parsed (inode, size, mtime); a file appended to, rewritten or replaced since is
    left in landing, deferred, for a later sweep. Where renaming is not permitted (another
    user's file under protected links, a sticky folder, another device) the file is copied and
    verified instead, and its landing file is removed only after commit, as in copy mode.
    """
    for row in rows:
        if not row["move"]:
            continue
        if row["status"] == Status.OK:
            _move_image(cfg, row)
        elif row["status"] == Status.REJECTED:
            _move_rejected(cfg, row)
    return rows


PARALLEL_MIN_FILES = 64
_WORKER_CONFIGS: dict[str, Config] = {}


def _examine_chunk(config_path: str, batch_id: str, args: list[tuple[dict[str, Any], bool, bool]]
                   ) -> list[dict[str, Any]]:
    from pacs.config import load_config

    cfg = _WORKER_CONFIGS.get(config_path)
    if cfg is None:
        cfg = _WORKER_CONFIGS[config_path] = load_config(config_path)
    return [examine(cfg, batch_id, *a) for a in args]


def _examine_parallel(cfg: Config, batch_id: str, args: list[tuple[dict[str, Any], bool, bool]], n: int
                      ) -> list[dict[str, Any]]:
    """Examine a batch in ``n`` worker processes (pydicom parsing holds the GIL, so threads
    would not use the other cores).

    Workers are forked: a spawned or fork-server worker re-imports the parent's ``__main__``
    (the whole Airflow CLI: ~2 s per worker). A forked worker only runs :func:`examine`
    (pydicom, hashing, file I/O; no Airflow calls), and Python re-initialises the logging and
    fsspec locks after a fork.
    """
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    size = -(-len(args) // (n * 4))  # a few chunks per worker evens out uneven file sizes
    chunks = [args[i:i + size] for i in range(0, len(args), size)]
    with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        parts = pool.map(_examine_chunk, [str(cfg.path)] * len(chunks), [batch_id] * len(chunks), chunks)
        return [row for part in parts for row in part]


MAX_ATTEMPTS = 3
ATTEMPTS = journal.Step.ATTEMPTS


def _owned_elsewhere(batch_id: str) -> dict[str, Any]:
    journal.left_to_owner(batch_id)
    return {**counts([]), "owned_elsewhere": 1}


def process_batch(cfg: Config, batch_id: str, *, workers: int | None = None) -> dict[str, Any]:
    """Process one batch; returns counts (no patient data). Idempotent and resumable.

    The batch's lease is held throughout: a batch another run is working on is skipped (its
    owner finishes it). A batch that keeps failing for a reason other than a tier fault is
    bounded: after ``MAX_ATTEMPTS`` failed attempts it is split into one batch per file, so a
    file that cannot be processed fails only itself and never blocks later batches.
    """
    j = journal.ingest(cfg.work)
    with j.lease(batch_id) as held:
        if not held:
            return _owned_elsewhere(batch_id)
        try:
            return _process_owned(cfg, batch_id, workers)
        except store.TierError:
            raise
        except Exception as exc:
            attempts = _record_failure(cfg, batch_id, exc)
            if attempts < MAX_ATTEMPTS or j.has(batch_id, journal.STAGED):
                raise
            return _split(cfg, batch_id, exc)


def _record_failure(cfg: Config, batch_id: str, exc: Exception) -> int:
    j = journal.ingest(cfg.work)
    attempts = j.read_json(batch_id, ATTEMPTS)["failed"] if j.has(batch_id, ATTEMPTS) else 0
    attempts += 1
    j.write_json(batch_id, ATTEMPTS, {"failed": attempts, "last_error": type(exc).__name__})
    log.warning("batch %s failed (%s), attempt %d of %d", batch_id, type(exc).__name__, attempts, MAX_ATTEMPTS)
    return attempts


def _split(cfg: Config, batch_id: str, exc: Exception) -> dict[str, Any]:
    """Give a failing batch's files a batch each (one that fails alone is quarantined)."""
    j = journal.ingest(cfg.work)
    manifest = j.read_json(batch_id, journal.MANIFEST)
    files = manifest["files"]
    if len(files) == 1:
        return _give_up_file(cfg, batch_id, files[0], exc)
    now = dt.datetime.now(dt.UTC)
    ids = journal.new_batch_ids(len(files), now)
    for new_id, f in zip(ids, files, strict=True):
        j.write_json(new_id, journal.MANIFEST, {
            "batch_id": new_id, "run_id": manifest.get("run_id"), "created_at": now.isoformat(),
            "split_from": batch_id, "files": [{**f, "row": 0}],
        })
    j.mark(batch_id, journal.DONE, {"batch_id": batch_id, "split_into": len(ids)})
    log.warning("batch %s failed %d times; split into %d single-file batches for the next run",
                batch_id, MAX_ATTEMPTS, len(ids))
    return {**counts([]), "deferred": len(files), "split": len(ids)}


def _give_up_file(cfg: Config, batch_id: str, f: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """A single file that failed every attempt: quarantined ``unreadable`` with the error named."""
    row = base_row(batch_id, f)
    reject(row, UNREADABLE, f"processing failed {MAX_ATTEMPTS} times ({type(exc).__name__})", None)
    try:
        quarantine_bytes(cfg, row, None, cfg.landing[f["landing"]].fs, f["path"], fsync=cfg.ingest.fsync)
    except store.TierError:
        raise
    except Exception:  # noqa: BLE001 - not even its bytes can be read: released to a later sweep
        defer(row, f"processing failed {MAX_ATTEMPTS} times ({type(exc).__name__}); left in landing")
    journal.ingest(cfg.work).write_table(batch_id, journal.STORED, table([row]))
    return counts([row])


def _process_owned(cfg: Config, batch_id: str, workers: int | None) -> dict[str, Any]:
    j = journal.ingest(cfg.work)
    if j.has(batch_id, journal.STORED):
        return counts(j.read_table(batch_id, journal.STORED).to_pylist())
    if j.has(batch_id, journal.STAGED):
        rows = _apply_moves(cfg, j.read_table(batch_id, journal.STAGED).to_pylist())
        j.write_table(batch_id, journal.STORED, table(rows))
        return counts(rows)
    files = j.read_json(batch_id, journal.MANIFEST)["files"]
    rename = cfg.ingest.rename
    move_ok = {i: rename and store.same_filesystem(loc, cfg.online) for i, loc in enumerate(cfg.landing)}
    move_q = {i: rename and store.same_filesystem(loc, cfg.quarantine) for i, loc in enumerate(cfg.landing)}
    n = workers or cfg.ingest.workers
    args = [(f, move_ok[f["landing"]], move_q[f["landing"]]) for f in files]
    if n <= 1 or len(files) < PARALLEL_MIN_FILES:
        rows = [examine(cfg, batch_id, *a) for a in args]
    else:
        rows = _examine_parallel(cfg, batch_id, args, n)
    if any(r["move"] for r in rows):
        j.write_table(batch_id, journal.STAGED, table(rows))
        rows = _apply_moves(cfg, rows)
    # An earlier, killed attempt may have left temporary files; they carry this batch's id.
    folders = {os.path.dirname(cfg.online.path_of_uri(r["dst_uri"])) for r in rows if r["dst_uri"]}
    folders |= {os.path.dirname(cfg.quarantine.path_of_uri(r["quarantine_uri"])) for r in rows if r["quarantine_uri"]}
    store.clean_temp(cfg.online, folders, batch_id)
    if cfg.ingest.fsync:  # one flush for the whole batch, before it is recorded as stored
        store.sync([*cfg.landing, cfg.online, cfg.quarantine])
    j.write_table(batch_id, journal.STORED, table(rows))
    summary = counts(rows)
    log.info("batch %s: %d file(s), %d ok, %d rejected %s, %d deferred", batch_id, summary["files"],
             summary["ok"], summary["rejected"], summary["reasons"], summary["deferred"])
    return summary
