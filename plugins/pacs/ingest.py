"""The steps of ``pacs_ingest``: sweep → process (one task per batch) → merge → finalize.

- **sweep** lists every landing location, takes files unchanged for ``settle_seconds`` that no
  open batch owns, and writes batch manifests to the journal (streaming: bounded memory for
  any backlog). Open batches of earlier, interrupted runs are resumed first.
- **process** reads each file once: sha256, header (pydicom, header only), validation; stores
  good files in the online tier under the UID layout (copy, or rename when landing and online
  share a filesystem) and rejected files in quarantine with a JSON sidecar.
- **merge** (single writer, pool ``pacs_catalogue``) decides duplicates and catalogue-level
  rejects and upserts everything in one transaction.
- **finalize** deletes landing files — only after their outcome is committed.

Every step is idempotent; see :mod:`pacs.journal` for how a killed step resumes.
Nothing here logs patient data: counts, batch ids and reason codes only.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pacs import catalogue, journal, storage
from pacs.config import Config, Location
from pacs.dicom import HeaderError, read_header, read_header_bytes
from pacs.layout import image_key, quarantine_key
from pacs.quarantine import RESUBMIT_FOLDER
from pacs.validation import UIDS, UNREADABLE, UNSAFE_PATH, is_valid_uid, validate

log = logging.getLogger(__name__)

MEMORY_LIMIT = 64 * 1024 * 1024  # files up to this size are read once into memory
JOURNAL_RETENTION = dt.timedelta(days=7)

_STR = pa.string()
_DATE = pa.date32()
_INT = pa.int32()
HEADER_SCHEMA = [
    ("patient_id", _STR), ("issuer_of_patient_id", _STR), ("patient_name", _STR), ("patient_birth_date", _DATE),
    ("patient_sex", _STR), ("patient_age", _STR), ("study_instance_uid", _STR), ("study_date", _DATE),
    ("study_time", _STR), ("accession_number", _STR), ("study_id", _STR), ("study_description", _STR),
    ("referring_physician_name", _STR), ("institution_name", _STR), ("series_instance_uid", _STR),
    ("modality", _STR), ("series_number", _INT), ("series_description", _STR), ("series_date", _DATE),
    ("body_part_examined", _STR), ("manufacturer", _STR), ("manufacturer_model_name", _STR),
    ("station_name", _STR), ("sop_instance_uid", _STR), ("sop_class_uid", _STR), ("instance_number", _INT),
    ("content_date", _DATE), ("rows", _INT), ("columns", _INT), ("number_of_frames", _INT),
    ("bits_allocated", _INT), ("transfer_syntax_uid", _STR),
]
STAGED_SCHEMA = pa.schema([
    ("batch_id", _STR), ("row_no", _INT), ("source_uri", _STR), ("source_path", _STR),
    ("landing", _INT), ("source_size", pa.int64()), ("source_mtime_ns", pa.int64()),
    ("received_at", pa.timestamp("us", tz="UTC")), ("status", _STR), ("reason", _STR), ("detail", _STR),
    ("sha256", _STR), ("size_bytes", pa.int64()), ("dst_uri", _STR), ("move", pa.bool_()),
    ("in_place", pa.bool_()), ("quarantine_uri", _STR), ("sidecar_uri", _STR),
    ("source_dev", pa.int64()), ("source_ino", pa.int64()), ("read_mtime_ns", pa.int64()),
    *HEADER_SCHEMA,
])
_HEADER_COLS = [name for name, _ in HEADER_SCHEMA]
_UID_COLS = [col for _, col in UIDS]


# ---------------------------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------------------------

def _walk_local(loc: Location, cfg: Config) -> Iterator[dict[str, Any]]:
    """Regular files and links under a local landing root; links are never followed out of it."""
    root = os.path.realpath(loc.root)
    stack = [loc.root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            log.warning("landing folder not readable; skipped (batch files elsewhere continue)")
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if cfg.ingest.ignored(entry.name) or entry.name.startswith(storage.TMP_MARK):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                inside = target == root or target.startswith(root + os.sep)
                if inside and os.path.isdir(target):
                    continue  # its content is swept through its real path
                if inside and os.path.isfile(target):
                    tst = os.stat(entry.path)
                    yield {"path": entry.path, "size": tst.st_size, "mtime_ns": max(st.st_mtime_ns, tst.st_mtime_ns),
                           "link": "inside"}
                    continue
                detail = ("link points outside its landing root" if not inside and os.path.exists(target)
                          else "link target does not exist" if not os.path.exists(target)
                          else "link points to something that is not a regular file")
                yield {"path": entry.path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "link": "unsafe",
                       "detail": detail}
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                yield {"path": entry.path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "link": None}
            # sockets, FIFOs and devices are not files a modality sends; they are left alone


def _walk_object(loc: Location, cfg: Config) -> Iterator[dict[str, Any]]:
    fs = loc.fs
    if not fs.exists(loc.root):
        return
    for path, info in sorted(fs.find(loc.root, detail=True).items()):
        name = path.rsplit("/", 1)[-1]
        if info.get("type") != "file" or cfg.ingest.ignored(name):
            continue
        modified = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
        if isinstance(modified, dt.datetime):
            mtime_ns = int(modified.timestamp() * 1e9)
        elif modified is not None:
            mtime_ns = int(float(modified) * 1e9)
        else:
            mtime_ns = 0
        yield {"path": path, "size": int(info.get("size") or 0), "mtime_ns": mtime_ns, "link": None}


def walk_landing(loc: Location, cfg: Config) -> Iterator[dict[str, Any]]:
    return _walk_local(loc, cfg) if loc.is_local else _walk_object(loc, cfg)


@contextlib.contextmanager
def _sweep_lock(work: Location, timeout: float = 600.0) -> Iterator[None]:
    """One sweep at a time (a DAG run and a ``pacs ingest`` must not claim the same file twice).

    A blocking ``flock`` on a local ``work`` folder; a lease (see :mod:`pacs.journal`) on
    object storage, waited for.
    """
    if work.is_local:
        os.makedirs(work.path(journal.PREFIX), exist_ok=True)
        with open(work.path(f"{journal.PREFIX}/.sweep.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    deadline = time.monotonic() + timeout
    while True:
        with journal.lease(work, "sweep", prefix="locks") as held:
            if held:
                yield
                return
        if time.monotonic() > deadline:
            raise storage.TierError(0, f"another sweep has held the journal at {work.url} for {timeout:.0f}s; "
                                       "re-run once it has finished")
        time.sleep(1.0)


SEEN = ".seen.json"
LAST_SWEEP = ".last-sweep.json"


@dataclass
class SweepStats:
    """What one sweep saw (counts only)."""

    taken: int = 0
    batches: int = 0
    resumed: int = 0
    owned_elsewhere: int = 0
    waiting: int = 0
    future_dated: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def _read_json(work: Location, name: str) -> dict[str, Any]:
    """A sweep's own file in the ingest journal (``{}`` when there is none yet)."""
    try:
        with work.fs.open(work.path(f"{journal.PREFIX}/{name}"), "rb") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def _write_json(work: Location, name: str, obj: Any) -> None:
    journal.put(work, work.path(f"{journal.PREFIX}/{name}"), json.dumps(obj).encode())


def last_sweep(cfg: Config) -> dict[str, int]:
    """The counts of the most recent sweep (waiting and future-dated files included)."""
    return _read_json(cfg.work, LAST_SWEEP)


class _Settling:
    """Settling by observation: a file is taken once the sweeper itself has seen its size and
    mtime unchanged for ``settle_seconds`` (remembered between sweeps in the journal), or at
    once when its mtime is already that old by the sweeper's clock. A file whose mtime is
    recent or lies in the future (clock skew between the sender's host and the archive's,
    common on NFS) is therefore taken ``settle_seconds`` after it stopped changing, whatever
    its mtime says; the sweep reports how many files wait and how many carry future times.
    """

    def __init__(self, work: Location, settle_seconds: int) -> None:
        self.settle_ns = settle_seconds * 1_000_000_000
        self.now_ns = time.time_ns()
        self.seen = _read_json(work, SEEN) if self.settle_ns else {}
        self.still: dict[str, list[int]] = {}
        self.waiting = self.future = 0

    def settled(self, uri: str, size: int, mtime_ns: int) -> bool:
        if not self.settle_ns:
            return True
        future = mtime_ns > self.now_ns
        prev = self.seen.get(uri)
        changed = prev is not None and (prev[0], prev[1]) != (size, mtime_ns)
        first = prev[2] if prev is not None and not changed else self.now_ns
        old_by_clock = not future and self.now_ns - mtime_ns >= self.settle_ns
        if old_by_clock or (not changed and self.now_ns - first >= self.settle_ns):
            return True
        self.still[uri] = [size, mtime_ns, first]
        self.waiting += 1
        self.future += future
        return False


def sweep(cfg: Config, *, run_id: str = "manual", now: dt.datetime | None = None,
          limit: int | None = None) -> list[str]:
    """Write manifests for new settled files; return open batches to resume plus the new ones."""
    with _sweep_lock(cfg.work):
        ids, _stats = _sweep(cfg, run_id=run_id, now=now, limit=limit)
    return ids


def _sweep(cfg: Config, *, run_id: str, now: dt.datetime | None, limit: int | None
           ) -> tuple[list[str], SweepStats]:
    now = now or dt.datetime.now(dt.UTC)
    work = cfg.work
    stats = SweepStats()
    open_ids = journal.open_batches(work)
    # A batch whose lease is held belongs to a running step of another run: not ours to resume.
    resumed = [b for b in open_ids if not journal.is_leased(work, b)]
    stats.resumed, stats.owned_elsewhere = len(resumed), len(open_ids) - len(resumed)
    claimed = journal.claimed_sources(work, open_ids)
    journal.prune_done(work, JOURNAL_RETENTION, now)
    limit = limit or cfg.ingest.max_files_per_run
    settling = _Settling(work, cfg.settle_seconds)
    token_ids = iter(journal.new_batch_ids(limit // cfg.ingest.batch_size + 2, now))
    new_ids: list[str] = []
    current: list[dict[str, Any]] = []

    def flush() -> None:
        if not current:
            return
        batch_id = next(token_ids)
        for i, f in enumerate(current):
            f["row"] = i
        journal.write_json(work, batch_id, journal.MANIFEST, {
            "batch_id": batch_id, "run_id": run_id, "created_at": now.isoformat(), "files": current,
        })
        new_ids.append(batch_id)
        current.clear()

    # Re-submitted files are published atomically by pacs itself: no need to wait for them.
    resubmitted = cfg.landing[0].path(RESUBMIT_FOLDER) + ("/" if not cfg.landing[0].is_local else os.sep)
    for index, loc in enumerate(cfg.landing):
        for f in walk_landing(loc, cfg):
            uri = loc.uri(f["path"])
            if uri in claimed:
                continue
            ours = index == 0 and f["path"].startswith(resubmitted)
            if not ours and not settling.settled(uri, f["size"], f["mtime_ns"]):
                continue
            f["uri"] = uri
            f["landing"] = index
            current.append(f)
            stats.taken += 1
            if len(current) >= cfg.ingest.batch_size:
                flush()
            if stats.taken >= limit:
                break
        if stats.taken >= limit:
            break
    flush()
    stats.batches, stats.waiting, stats.future_dated = len(new_ids), settling.waiting, settling.future
    if settling.settle_ns:
        _write_json(work, SEEN, settling.still)
    _write_json(work, LAST_SWEEP, stats.as_dict())
    log.info("sweep: %d new file(s) in %d batch(es), %d open batch(es) resumed, %d left to the runs working "
             "on them, %d file(s) waiting to settle (%d with a modification time in the future)",
             stats.taken, stats.batches, stats.resumed, stats.owned_elsewhere, stats.waiting, stats.future_dated)
    if stats.future_dated:
        log.warning("%d landing file(s) carry a modification time in the future (clock skew?); they are taken "
                    "once unchanged for %ds as seen by this sweeper", stats.future_dated, cfg.settle_seconds)
    return resumed + new_ids, stats


# ---------------------------------------------------------------------------------------------
# process
# ---------------------------------------------------------------------------------------------

def _sidecar(cfg: Config, row: dict[str, Any], qpath: str, fsync: bool = False) -> str:
    side = qpath.rsplit(".", 1)[0] + ".json"
    body = {
        "reason": row["reason"], "detail": row["detail"], "source_uri": row["source_uri"],
        "batch_id": row["batch_id"], "row": row["row_no"], "sha256": row["sha256"],
        "size_bytes": row["size_bytes"], "quarantined_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    data = json.dumps(body, indent=1).encode()
    storage.write(cfg.quarantine, side, data, storage.hash_bytes(data), fsync=fsync, overwrite=True)
    return cfg.quarantine.uri(side)


def _reject(row: dict[str, Any], reason: str, detail: str, header: dict[str, Any] | None) -> None:
    row["status"], row["reason"], row["detail"] = "rejected", reason, detail
    for col in _UID_COLS:  # keep only identifiers that are safe to record
        value = (header or {}).get(col)
        row[col] = value if is_valid_uid(value) else None


def _quarantine_bytes(cfg: Config, row: dict[str, Any], data: bytes | None, src_fs: Any = None,
                      src_path: str | None = None, suffix: str = ".dcm", fsync: bool = False) -> None:
    """Store a rejected file's original bytes (and sidecar) under its deterministic key.

    Without ``fsync`` the caller flushes the filesystem before recording the batch as stored.
    """
    qpath = cfg.quarantine.path(quarantine_key(row["reason"], row["batch_id"], row["row_no"], suffix))
    with storage.tier_faults(cfg.quarantine):
        if data is not None:
            storage.write(cfg.quarantine, qpath, data, row["sha256"] or storage.hash_bytes(data),
                          fsync=fsync, overwrite=True, tag=row["batch_id"])
        else:
            written = storage.copy_stream(src_fs, src_path, cfg.quarantine, qpath, fsync=fsync,
                                          overwrite=True, tag=row["batch_id"])
            row["sha256"], row["size_bytes"] = written.sha256, written.size
        row["quarantine_uri"] = cfg.quarantine.uri(qpath)
        row["sidecar_uri"] = _sidecar(cfg, row, qpath, fsync=fsync)


def _base_row(batch_id: str, f: dict[str, Any]) -> dict[str, Any]:
    row = dict.fromkeys(STAGED_SCHEMA.names)
    row.update(
        batch_id=batch_id, row_no=f["row"], source_uri=f["uri"], source_path=f["path"], landing=f["landing"],
        source_size=f["size"], source_mtime_ns=f["mtime_ns"],
        received_at=dt.datetime.fromtimestamp(f["mtime_ns"] / 1e9, dt.UTC), move=False,
    )
    return row


def examine(cfg: Config, batch_id: str, f: dict[str, Any], move_ok: bool, move_quarantine: bool
            ) -> dict[str, Any]:
    """Read, hash, parse and validate one landing file, and store it unless it is to be renamed.

    With ``move_ok``/``move_quarantine`` the file is only planned (``move`` set); the rename
    happens in :func:`_apply_moves` once the plan is in the journal.

    One file never fails its batch: an unexpected error while reading or parsing it makes it
    ``unreadable`` (its bytes quarantined) or, when even that is impossible, deferred with the
    reason. Only faults of a tier (full, read-only, unreachable) stop the batch, as
    :class:`~pacs.storage.TierError`: nothing is recorded, and the next run redoes it.
    """
    try:
        return _examine(cfg, batch_id, f, move_ok, move_quarantine)
    except storage.TierError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolate the file, whatever went wrong with it
        log.warning("batch %s row %s: %s while examining; the file is set aside", batch_id, f["row"],
                    type(exc).__name__)
        row = _base_row(batch_id, f)
        detail = f"could not be examined ({type(exc).__name__})"
        try:
            loc = cfg.landing[f["landing"]]
            _reject(row, UNREADABLE, detail, None)
            _quarantine_bytes(cfg, row, None, loc.fs, f["path"])
        except storage.TierError:
            raise
        except Exception:  # noqa: BLE001 - not even its bytes could be read: leave it in landing
            _defer(row, detail)
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
    if loc.is_local and f["size"] <= MEMORY_LIMIT:
        data, ident = storage.read_local_identified(src)
        if ident is None:
            raise _Changed
        row["sha256"], row["size_bytes"] = storage.hash_bytes(data), len(data)
        row["source_dev"], row["source_ino"], row["read_mtime_ns"] = ident.dev, ident.ino, ident.mtime_ns
    else:
        row["size_bytes"] = f["size"]
    try:
        header = read_header_bytes(data) if data is not None else read_header(loc.fs, src, size=f["size"])
    except HeaderError as exc:
        return data, None, exc
    return data, header, None


class _Changed(Exception):
    """The landing file changed while it was being read."""


def _examine(cfg: Config, batch_id: str, f: dict[str, Any], move_ok: bool, move_quarantine: bool
             ) -> dict[str, Any]:
    row = _base_row(batch_id, f)
    loc = cfg.landing[f["landing"]]
    src = f["path"]
    if f.get("link") == "unsafe":
        try:
            target = os.readlink(src).encode()
        except OSError:
            target = b""
        row["size_bytes"] = len(target)
        row["sha256"] = storage.hash_bytes(target)
        _reject(row, UNSAFE_PATH, f.get("detail", "unsafe link"), None)
        _quarantine_bytes(cfg, row, target, suffix=".link")
        return row
    try:
        data, header, problem = _read_landing(cfg, row, f)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        row["status"], row["detail"] = "deferred", f"could not read the landing file: {type(exc).__name__}"
        return row
    except _Changed:
        row["status"], row["detail"] = "deferred", "the landing file changed while it was read"
        return row

    if problem is not None:
        _reject(row, problem.reason, problem.detail, None)
    else:
        rejection = validate(header)  # the header reader guarantees each column's type
        if rejection is not None:
            _reject(row, rejection.reason, rejection.detail, header)
        else:
            row.update({k: header.get(k) for k in _HEADER_COLS})
            row["status"] = "ok"

    link = f.get("link") == "inside"
    movable = data is not None and not link and row["source_ino"] is not None
    if row["status"] == "rejected":
        if move_quarantine and movable:
            row["move"] = True
            row["quarantine_uri"] = cfg.quarantine.uri(
                cfg.quarantine.path(quarantine_key(row["reason"], batch_id, row["row_no"])))
        else:
            _quarantine_bytes(cfg, row, data, loc.fs, src)
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
    with storage.tier_faults(cfg.online):
        if data is not None:
            created = storage.write(cfg.online, dst, data, row["sha256"], fsync=False, tag=row["batch_id"])
            row["in_place"] = created or _holds(cfg.online, dst, row["sha256"])
            return
        written = storage.copy_stream(loc.fs, src, cfg.online, dst, fsync=False, tag=row["batch_id"])
    if written.size != row["size_bytes"]:
        if written.created:
            storage.remove(cfg.online, dst)
        _defer(row, "the landing file changed while it was stored")
        return
    row["sha256"], row["size_bytes"] = written.sha256, written.size
    row["in_place"] = written.created or _holds(cfg.online, dst, row["sha256"])


def _holds(loc: Location, path: str, sha256: str) -> bool:
    """Whether an existing file at ``path`` has exactly the bytes with ``sha256``."""
    return storage.hash_at(loc, path) == sha256


def _copy_verified(cfg: Config, row: dict[str, Any], dst_loc: Location, dst: str) -> bool:
    """Copy a landing file whose rename is not allowed; True if the copy holds the recorded bytes."""
    src_loc = cfg.landing[row["landing"]]
    with storage.tier_faults(dst_loc):
        written = storage.copy_stream(src_loc.fs, row["source_path"], dst_loc, dst, fsync=False,
                                      overwrite=True, tag=row["batch_id"])
    if written.sha256 == row["sha256"]:
        return True
    storage.remove(dst_loc, dst)
    return False


def _identity(row: dict[str, Any]) -> storage.Identity:
    return storage.Identity(row["source_dev"], row["source_ino"], row["size_bytes"], row["read_mtime_ns"])


def _defer(row: dict[str, Any], detail: str) -> None:
    row["status"], row["detail"], row["in_place"] = "deferred", detail, False
    row["reason"], row["quarantine_uri"], row["sidecar_uri"], row["dst_uri"] = None, None, None, None
    row["move"] = False


_CHANGED = "the landing file changed after it was read; left in landing for the next sweep"


def _move_image(cfg: Config, row: dict[str, Any]) -> None:
    """Rename one planned image into the online tier, proving it is the file that was read."""
    src, dst = row["source_path"], cfg.online.path_of_uri(row["dst_uri"])
    with storage.tier_faults(cfg.online):
        outcome = storage.move_verified(src, dst, _identity(row))
    if outcome == "moved":
        row["in_place"] = True
    elif outcome == "exists":  # resumed after our own rename, or another file holds the path
        held = _holds(cfg.online, dst, row["sha256"])
        row["in_place"] = held
        if held and os.path.lexists(src) and os.path.samefile(src, dst):
            os.unlink(src)
    elif outcome == "gone":  # moved by the interrupted attempt, or taken away by someone else
        row["in_place"] = _holds(cfg.online, dst, row["sha256"])
        if not row["in_place"]:
            _defer(row, "the landing file vanished before it was stored")
    elif outcome == "changed":
        _defer(row, _CHANGED)
    else:  # "copy": the rename is not permitted here; copy, verify, remove landing after commit
        row["move"] = False
        if _copy_verified(cfg, row, cfg.online, dst):
            row["in_place"] = True
        else:
            _defer(row, _CHANGED)


def _move_rejected(cfg: Config, row: dict[str, Any]) -> None:
    """Rename one planned reject into quarantine (or copy it where renaming is not allowed)."""
    src, qpath = row["source_path"], cfg.quarantine.path_of_uri(row["quarantine_uri"])
    with storage.tier_faults(cfg.quarantine):
        outcome = storage.move_verified(src, qpath, _identity(row))
    if outcome == "exists":
        if not _holds(cfg.quarantine, qpath, row["sha256"]):
            with storage.tier_faults(cfg.quarantine):
                storage.remove(cfg.quarantine, qpath)  # a stale slot of this very batch row
                outcome = storage.move_verified(src, qpath, _identity(row))
        elif os.path.lexists(src) and os.path.samefile(src, qpath):
            os.unlink(src)
    if outcome == "gone" and not _holds(cfg.quarantine, qpath, row["sha256"]):
        _defer(row, "the landing file vanished before it was quarantined")
        return
    if outcome == "changed":
        _defer(row, _CHANGED)
        return
    if outcome == "copy":
        row["move"] = False
        if not _copy_verified(cfg, row, cfg.quarantine, qpath):
            _defer(row, _CHANGED)
            return
    with storage.tier_faults(cfg.quarantine):
        row["sidecar_uri"] = _sidecar(cfg, row, qpath)


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
        if row["status"] == "ok":
            _move_image(cfg, row)
        elif row["status"] == "rejected":
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


def _counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    status = Counter(r["status"] for r in rows)
    reasons = Counter(r["reason"] for r in rows if r["status"] == "rejected")
    return {"files": len(rows), "ok": status["ok"], "rejected": status["rejected"],
            "deferred": status["deferred"], "bytes": sum(r["size_bytes"] or 0 for r in rows),
            "reasons": dict(sorted(reasons.items()))}


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    # column by column: 30x faster than Table.from_pylist for wide rows
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in STAGED_SCHEMA},
                    schema=STAGED_SCHEMA)


MAX_ATTEMPTS = 3
ATTEMPTS = "attempts.json"


def _left_to_owner(batch_id: str) -> None:
    log.info("batch %s is being worked on by another run; left to it", batch_id)


def _owned_elsewhere(batch_id: str) -> dict[str, Any]:
    _left_to_owner(batch_id)
    return {**_counts([]), "owned_elsewhere": 1}


def process_batch(cfg: Config, batch_id: str, *, workers: int | None = None) -> dict[str, Any]:
    """Process one batch; returns counts (no patient data). Idempotent and resumable.

    The batch's lease is held throughout: a batch another run is working on is skipped (its
    owner finishes it). A batch that keeps failing for a reason other than a tier fault is
    bounded: after ``MAX_ATTEMPTS`` failed attempts it is split into one batch per file, so a
    file that cannot be processed fails only itself and never blocks later batches.
    """
    with journal.lease(cfg.work, batch_id) as held:
        if not held:
            return _owned_elsewhere(batch_id)
        try:
            return _process_owned(cfg, batch_id, workers)
        except storage.TierError:
            raise
        except Exception as exc:
            attempts = _record_failure(cfg, batch_id, exc)
            if attempts < MAX_ATTEMPTS or journal.has(cfg.work, batch_id, journal.STAGED):
                raise
            return _split(cfg, batch_id, exc)


def _record_failure(cfg: Config, batch_id: str, exc: Exception) -> int:
    work = cfg.work
    attempts = journal.read_json(work, batch_id, ATTEMPTS)["failed"] if journal.has(work, batch_id, ATTEMPTS) else 0
    attempts += 1
    journal.write_json(work, batch_id, ATTEMPTS, {"failed": attempts, "last_error": type(exc).__name__})
    log.warning("batch %s failed (%s), attempt %d of %d", batch_id, type(exc).__name__, attempts, MAX_ATTEMPTS)
    return attempts


def _split(cfg: Config, batch_id: str, exc: Exception) -> dict[str, Any]:
    """Give a failing batch's files a batch each (one that fails alone is quarantined)."""
    work = cfg.work
    manifest = journal.read_json(work, batch_id, journal.MANIFEST)
    files = manifest["files"]
    if len(files) == 1:
        return _give_up_file(cfg, batch_id, files[0], exc)
    now = dt.datetime.now(dt.UTC)
    ids = journal.new_batch_ids(len(files), now)
    for new_id, f in zip(ids, files, strict=True):
        journal.write_json(work, new_id, journal.MANIFEST, {
            "batch_id": new_id, "run_id": manifest.get("run_id"), "created_at": now.isoformat(),
            "split_from": batch_id, "files": [{**f, "row": 0}],
        })
    journal.mark(work, batch_id, journal.DONE, {"batch_id": batch_id, "split_into": len(ids)})
    log.warning("batch %s failed %d times; split into %d single-file batches for the next run",
                batch_id, MAX_ATTEMPTS, len(ids))
    return {**_counts([]), "deferred": len(files), "split": len(ids)}


def _give_up_file(cfg: Config, batch_id: str, f: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """A single file that failed every attempt: quarantined ``unreadable`` with the error named."""
    row = _base_row(batch_id, f)
    _reject(row, UNREADABLE, f"processing failed {MAX_ATTEMPTS} times ({type(exc).__name__})", None)
    try:
        _quarantine_bytes(cfg, row, None, cfg.landing[f["landing"]].fs, f["path"], fsync=cfg.ingest.fsync)
    except storage.TierError:
        raise
    except Exception:  # noqa: BLE001 - not even its bytes can be read: released to a later sweep
        _defer(row, f"processing failed {MAX_ATTEMPTS} times ({type(exc).__name__}); left in landing")
    journal.write_table(cfg.work, batch_id, journal.STORED, _table([row]))
    return _counts([row])


def _process_owned(cfg: Config, batch_id: str, workers: int | None) -> dict[str, Any]:
    work = cfg.work
    if journal.has(work, batch_id, journal.STORED):
        return _counts(journal.read_table(work, batch_id, journal.STORED).to_pylist())
    if journal.has(work, batch_id, journal.STAGED):
        rows = _apply_moves(cfg, journal.read_table(work, batch_id, journal.STAGED).to_pylist())
        journal.write_table(work, batch_id, journal.STORED, _table(rows))
        return _counts(rows)
    files = journal.read_json(work, batch_id, journal.MANIFEST)["files"]
    rename = cfg.ingest.rename
    move_ok = {i: rename and storage.same_filesystem(loc, cfg.online) for i, loc in enumerate(cfg.landing)}
    move_q = {i: rename and storage.same_filesystem(loc, cfg.quarantine) for i, loc in enumerate(cfg.landing)}
    n = workers or cfg.ingest.workers
    args = [(f, move_ok[f["landing"]], move_q[f["landing"]]) for f in files]
    if n <= 1 or len(files) < PARALLEL_MIN_FILES:
        rows = [examine(cfg, batch_id, *a) for a in args]
    else:
        rows = _examine_parallel(cfg, batch_id, args, n)
    if any(r["move"] for r in rows):
        journal.write_table(work, batch_id, journal.STAGED, _table(rows))
        rows = _apply_moves(cfg, rows)
    # An earlier, killed attempt may have left temporary files; they carry this batch's id.
    folders = {os.path.dirname(cfg.online.path_of_uri(r["dst_uri"])) for r in rows if r["dst_uri"]}
    folders |= {os.path.dirname(cfg.quarantine.path_of_uri(r["quarantine_uri"])) for r in rows if r["quarantine_uri"]}
    if cfg.online.is_local:
        storage.clean_temp_files(folders, batch_id)
    if cfg.ingest.fsync:  # one flush for the whole batch, before it is recorded as stored
        storage.sync_filesystems([loc.root for loc in (*cfg.landing, cfg.online, cfg.quarantine) if loc.is_local])
    journal.write_table(work, batch_id, journal.STORED, _table(rows))
    counts = _counts(rows)
    log.info("batch %s: %d file(s), %d ok, %d rejected %s, %d deferred", batch_id, counts["files"],
             counts["ok"], counts["rejected"], counts["reasons"], counts["deferred"])
    return counts


# ---------------------------------------------------------------------------------------------
# merge
# ---------------------------------------------------------------------------------------------

def _late_quarantine(cfg: Config) -> Any:
    def place(late: pa.Table) -> pa.Table:
        out = {"batch_id": [], "row_no": [], "quarantine_uri": [], "sidecar_uri": []}
        for r in late.to_pylist():
            src_loc = cfg.landing[r["landing"]]
            src = r["source_path"]
            if storage.exists(src_loc, src):
                fs, path = src_loc.fs, src
            elif r["in_place"]:
                fs, path = cfg.online.fs, cfg.online.path_of_uri(r["dst_uri"])
            else:
                raise storage.StorageError(f"batch {r['batch_id']} row {r['row_no']}: no copy left to quarantine")
            row = {k: r[k] for k in ("batch_id", "row_no", "reason", "detail", "source_uri", "sha256",
                                     "size_bytes")}
            qpath = cfg.quarantine.path(quarantine_key(row["reason"], row["batch_id"], row["row_no"]))
            if _holds(cfg.quarantine, qpath, r["sha256"]):  # done by an interrupted attempt
                row["quarantine_uri"] = cfg.quarantine.uri(qpath)
                row["sidecar_uri"] = _sidecar(cfg, row, qpath, fsync=cfg.ingest.fsync)
            else:
                _quarantine_bytes(cfg, row, None, fs, path, fsync=cfg.ingest.fsync)
                if row["sha256"] != r["sha256"]:
                    raise storage.StorageError(
                        f"batch {r['batch_id']} row {r['row_no']}: bytes changed while quarantining")
            for k in out:
                out[k].append(row[k])
        return pa.table(out, schema=pa.schema([("batch_id", _STR), ("row_no", _INT), ("quarantine_uri", _STR),
                                               ("sidecar_uri", _STR)]))
    return place


def _place_winners(cfg: Config) -> Any:
    """Put first-received files where a later file of the same SOP instance had landed first."""

    def place(rows: pa.Table) -> None:
        for r in rows.to_pylist():
            dst = cfg.online.path_of_uri(r["dst_uri"])
            if _holds(cfg.online, dst, r["sha256"]):
                continue  # placed by an interrupted attempt
            src_loc = cfg.landing[r["landing"]]
            written = storage.copy_stream(src_loc.fs, r["source_path"], cfg.online, dst, fsync=cfg.ingest.fsync,
                                          overwrite=True, tag=r["batch_id"])
            if written.sha256 != r["sha256"]:
                raise storage.StorageError(f"batch {r['batch_id']} row {r['row_no']}: landing file changed")
    return place


def merge_batches(cfg: Config, batch_ids: list[str], *, run_id: str = "manual",
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """Merge processed batches into the catalogue (the single writer). Idempotent."""
    work = cfg.work
    now = now or dt.datetime.now(dt.UTC)
    ready = [b for b in batch_ids if journal.has(work, b, journal.STORED)]
    not_ready = sorted(set(batch_ids) - set(ready))
    if not_ready:
        log.warning("%d batch(es) not processed yet; they stay open for the next run", len(not_ready))
    total = catalogue.MergeResult()
    with catalogue.opened(cfg.duckdb) as con:
        done = catalogue.merged_batches(con, ready)
        for b in done:  # committed by an interrupted attempt: only the marker is missing
            if not journal.has(work, b, journal.MERGED):
                journal.mark(work, b, journal.MERGED, catalogue.outcomes_from_catalogue(con, b))
        pending = [b for b in ready if b not in done]
        group: list[pa.Table] = []
        rows = 0

        def flush() -> None:
            nonlocal rows
            if not group:
                return
            staged = pa.concat_tables(group)
            ids = sorted(set(staged.column("batch_id").to_pylist()))

            def write_outcomes(outcomes: pa.Table) -> None:
                for b in ids:
                    mask = pc.equal(outcomes.column("batch_id"), b)
                    journal.write_table(work, b, journal.OUTCOME, outcomes.filter(mask))

            result = catalogue.merge(con, staged, run_id=run_id, now=now,
                                     quarantine_late_rejects=_late_quarantine(cfg), write_outcomes=write_outcomes,
                                     place_winners=_place_winners(cfg))
            for b in ids:
                journal.mark(work, b, journal.MERGED, result.batches.get(b, {}))
            total.batches.update(result.batches)
            total.bytes_catalogued += result.bytes_catalogued
            for k, v in result.reasons.items():
                total.reasons[k] = total.reasons.get(k, 0) + v
            group.clear()
            rows = 0

        with contextlib.ExitStack() as leases:
            for b in pending:
                if not leases.enter_context(journal.lease(work, b)):
                    _left_to_owner(b)
                    continue
                if journal.has(work, b, journal.MERGED):  # merged by another run meanwhile
                    continue
                t = journal.read_table(work, b, journal.STORED)
                group.append(t)
                rows += t.num_rows
                if rows >= cfg.ingest.merge_chunk_rows:
                    flush()
            flush()
    summary = total.as_dict()
    log.info("merge: %s", summary)
    return summary


# ---------------------------------------------------------------------------------------------
# finalize
# ---------------------------------------------------------------------------------------------

def _unchanged(loc: Location, path: str, size: int, mtime_ns: int) -> bool:
    """Whether a landing file is still the one the sweep saw (else it is left for the next sweep)."""
    if loc.is_local:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if os.path.islink(path):
            return st.st_mtime_ns <= mtime_ns
        return st.st_size == size and st.st_mtime_ns == mtime_ns
    try:
        info = loc.fs.info(path)
    except FileNotFoundError:
        return False
    return int(info.get("size") or 0) == size


def _referenced(con: Any, uri: str) -> bool:
    rows = con.execute("SELECT count(*) FROM image WHERE online_uri = $u", {"u": uri}).fetchall()
    return bool(rows[0][0])


def finalize_batch(cfg: Config, batch_id: str, con: Any = None) -> dict[str, Any]:
    """Delete the landing files of a merged batch, and our own copies the merge did not keep.

    A copy is deleted only if the catalogue (``con``, the writer's connection) still does not
    refer to its path: a recall may have adopted it since the merge.
    """
    with journal.lease(cfg.work, batch_id) as held:
        if not held:
            return {"batch_id": batch_id, "state": "owned by another run"}
        return _finalize_owned(cfg, batch_id, con)


def _finalize_owned(cfg: Config, batch_id: str, con: Any) -> dict[str, Any]:
    work = cfg.work
    if journal.has(work, batch_id, journal.DONE):
        return journal.read_json(work, batch_id, journal.DONE)
    if not journal.has(work, batch_id, journal.MERGED):
        return {"batch_id": batch_id, "state": "not merged"}
    outcomes = journal.read_table(work, batch_id, journal.OUTCOME).to_pylist()
    landing_of = {f["row"]: f["landing"] for f in journal.iter_manifest_files(work, batch_id)}
    removed = kept = dropped = not_permitted = 0
    for r in outcomes:
        if r["outcome"] == "deferred":
            kept += 1
            continue
        loc = cfg.landing[landing_of[r["row_no"]]]
        if _unchanged(loc, r["source_path"], r["source_size"], r["source_mtime_ns"]):
            try:
                storage.remove(loc, r["source_path"])
                removed += 1
            except PermissionError:  # e.g. another user's file in a sticky landing folder
                not_permitted += 1
        if r.get("delete_dst") and not (con is not None and _referenced(con, r["dst_uri"])) \
                and storage.remove(cfg.online, cfg.online.path_of_uri(r["dst_uri"])):
            dropped += 1
    if not_permitted:
        log.warning("batch %s: %d landing file(s) are stored and catalogued but could not be removed from landing "
                    "(not permitted): give the ingest user the right to delete in the landing folders",
                    batch_id, not_permitted)
    info = {"batch_id": batch_id, "landing_removed": removed, "left_in_landing": kept,
            "uncatalogued_copies_removed": dropped, "landing_not_removable": not_permitted}
    journal.mark(work, batch_id, journal.DONE, info)
    return info


def finalize_batches(cfg: Config, batch_ids: list[str]) -> dict[str, int]:
    """Finalize merged batches (runs in the catalogue writer's pool: it checks the catalogue)."""
    totals: Counter[str] = Counter()
    pending = [b for b in batch_ids if not journal.has(cfg.work, b, journal.DONE)]
    if not pending:
        return {}
    with catalogue.opened(cfg.duckdb) as con:
        infos = [finalize_batch(cfg, b, con) for b in pending]
    for info in infos:
        for k in ("landing_removed", "left_in_landing", "uncatalogued_copies_removed", "landing_not_removable"):
            totals[k] += int(info.get(k, 0))
    log.info("finalize: %s", dict(totals))
    return dict(totals)


# ---------------------------------------------------------------------------------------------
# whole run (CLI, tests, benchmarks); the DAG runs the same steps as tasks
# ---------------------------------------------------------------------------------------------

def refresh_snapshot(cfg: Config) -> dict[str, Any]:
    with catalogue.opened(cfg.duckdb) as con:
        return catalogue.refresh_snapshot(con, cfg.parquet)


def run_ingest(cfg: Config, *, run_id: str = "manual", now: dt.datetime | None = None,
               snapshot: bool = True) -> dict[str, Any]:
    """Sweep, process, merge, finalize and refresh the snapshot, in this process."""
    with _sweep_lock(cfg.work):
        ids, stats = _sweep(cfg, run_id=run_id, now=now, limit=None)
    failed: list[str] = []
    owned = 0
    for b in ids:
        try:
            owned += process_batch(cfg, b).get("owned_elsewhere", 0)
        except storage.TierError:
            raise
        except Exception as exc:  # noqa: BLE001 - one batch never stops the others
            log.error("batch %s failed (%s); the other batches go on, it is retried by the next run",
                      b, type(exc).__name__)
            failed.append(b)
    merged = merge_batches(cfg, ids, run_id=run_id, now=now)
    finalize_batches(cfg, ids)
    if snapshot:
        merged["snapshot"] = refresh_snapshot(cfg)
    merged["waiting"], merged["future_dated"] = stats.waiting, stats.future_dated
    merged["failed_batches"], merged["left_to_other_runs"] = len(failed), owned + stats.owned_elsewhere
    return merged
