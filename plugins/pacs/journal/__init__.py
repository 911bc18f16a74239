"""The ingest work journal: one folder per batch that makes every ingest step resumable.

``<work>/ingest/<batch_id>/`` holds, in the order the steps write them:

- ``manifest.json`` (sweep): the landing files the batch owns, with size and mtime;
- ``staged.parquet`` (process, same-filesystem mode only): the plan, written *before* any file
  is renamed out of landing, so an interrupted batch knows where every file went;
- ``stored.parquet`` (process): one row per file with its hash, header and where it is now;
- ``outcome.parquet`` (merge, before COMMIT) and ``merged`` (after COMMIT);
- ``done`` (finalize): landing cleaned up.

A batch without ``done`` is *open*: its files are claimed (the sweep leaves them alone) and the
next run resumes it from its last written step.

**Ownership.** A step works on a batch only while it holds the batch's :class:`Lease`, which
dies with the process holding it: on a local ``work`` folder an ``flock`` on ``<batch>/lease``
(released by the kernel when the owner exits or is killed); on object storage a lease object
written with a conditional put (``If-None-Match``), renewed by a heartbeat thread and taken
over only once it has expired (``If-Match`` on the expired lease's ETag, so two takers cannot
both win). A batch whose lease is held belongs to a running step of another run: the sweep
does not resume it, and a step that finds it held skips it (its owner finishes it). Two runs
at once therefore end as one would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pacs.dicom.layout import checked_batch_id
from pacs.store import Location

log = logging.getLogger(__name__)

PREFIX = "ingest"
MANIFEST = "manifest.json"
STAGED = "staged.parquet"
STORED = "stored.parquet"
OUTCOME = "outcome.parquet"
MERGED = "merged"
DONE = "done"
LEASE = "lease"
LEASE_TTL_SECONDS = 120.0  # object-storage leases: renewed every third of this while held


def new_batch_ids(n: int, when: dt.datetime) -> list[str]:
    """Sortable, unique batch ids: ``<UTC time>-<random>-<seq>``."""
    stamp = when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
    token = secrets.token_hex(4)
    return [f"{stamp}-{token}-{i:04d}" for i in range(n)]


def _key(batch_id: str, name: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/{checked_batch_id(batch_id)}/{name}"


def path(work: Location, batch_id: str, name: str, prefix: str = PREFIX) -> str:
    return work.path(_key(batch_id, name, prefix))


def has(work: Location, batch_id: str, name: str, prefix: str = PREFIX) -> bool:
    p = path(work, batch_id, name, prefix)
    return os.path.exists(p) if work.is_local else work.fs.exists(p)


def put(work: Location, p: str, data: bytes) -> None:
    """Write a journal file atomically and durably (replacing it)."""
    if work.is_local:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        tmp = f"{p}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        fd = os.open(os.path.dirname(p), os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself is durable before the step goes on
        finally:
            os.close(fd)
    else:
        work.fs.pipe_file(p, data)


def write_json(work: Location, batch_id: str, name: str, obj: Any, prefix: str = PREFIX) -> None:
    put(work, path(work, batch_id, name, prefix), json.dumps(obj, default=str).encode())


def read_json(work: Location, batch_id: str, name: str, prefix: str = PREFIX) -> Any:
    with work.fs.open(path(work, batch_id, name, prefix), "rb") as f:
        return json.load(f)


def write_table(work: Location, batch_id: str, name: str, table: pa.Table, prefix: str = PREFIX) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    put(work, path(work, batch_id, name, prefix), buf.getvalue())


def read_table(work: Location, batch_id: str, name: str, prefix: str = PREFIX,
               filters: list[tuple[str, str, Any]] | None = None, columns: list[str] | None = None) -> pa.Table:
    with work.fs.open(path(work, batch_id, name, prefix), "rb") as f:
        return pq.read_table(f, filters=filters, columns=columns)


def names(work: Location, batch_id: str, prefix: str = PREFIX) -> list[str]:
    """The files a batch's (or plan's) folder holds, sorted."""
    folder = work.path(f"{prefix}/{checked_batch_id(batch_id)}")
    if work.is_local:
        try:
            return sorted(os.listdir(folder))
        except FileNotFoundError:
            return []
    if not work.fs.exists(folder):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in work.fs.ls(folder, detail=False))


def mark(work: Location, batch_id: str, name: str, info: dict[str, Any] | None = None) -> None:
    write_json(work, batch_id, name, info or {})


def batch_ids(work: Location) -> list[str]:
    """Every batch in the journal, oldest first."""
    root = work.path(PREFIX)
    if work.is_local:
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return []
    else:
        if not work.fs.exists(root):
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in work.fs.ls(root, detail=False)]
    return sorted(n for n in names if not n.startswith("."))


def open_batches(work: Location) -> list[str]:
    """Batches not yet finalized (their files are still claimed), oldest first."""
    return [b for b in batch_ids(work) if has(work, b, MANIFEST) and not has(work, b, DONE)]


def claimed_sources(work: Location, batches: list[str]) -> set[str]:
    claimed: set[str] = set()
    for b in batches:
        for f in read_json(work, b, MANIFEST)["files"]:
            claimed.add(f["uri"])
    return claimed


def prune_done(work: Location, older_than: dt.timedelta, now: dt.datetime) -> int:
    """Delete finalized batch folders older than the retention (their outcome stays in the catalogue)."""
    removed = 0
    cutoff = (now - older_than).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
    for b in batch_ids(work):
        if b[:15] < cutoff and has(work, b, DONE):
            work.fs.rm(work.path(f"{PREFIX}/{b}"), recursive=True)
            removed += 1
    return removed


def iter_manifest_files(work: Location, batch_id: str) -> Iterator[dict[str, Any]]:
    yield from read_json(work, batch_id, MANIFEST)["files"]


class Lease:
    """Exclusive, process-bound ownership of one batch (or plan) folder of the journal.

    Use :func:`lease` (a context manager) rather than this class directly.
    """

    def __init__(self, work: Location, batch_id: str, prefix: str = PREFIX, owner: str = "") -> None:
        self.work, self.batch_id, self.prefix = work, batch_id, prefix
        self.path = path(work, batch_id, LEASE, prefix)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._fd: int | None = None
        self._etag: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- local: flock ---------------------------------------------------------------------
    def _acquire_local(self) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"owner": self.owner, "since": time.time()}).encode())
        self._fd = fd
        return True

    # -- object storage: conditional puts with expiry ---------------------------------------
    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires": time.time() + LEASE_TTL_SECONDS}).encode()

    def _client_put(self, **cond: str) -> str | None:
        """Put the lease object under a condition; its ETag, or None when the condition failed."""
        fs = self.work.fs
        bucket, key = self.path.split("/", 1)

        async def put() -> Any:
            return await fs._call_s3("put_object", Bucket=bucket, Key=key, Body=self._body(), **cond)

        from fsspec.asyn import sync

        try:
            out = sync(fs.loop, put)
        except (FileExistsError, PermissionError):
            return None
        except OSError as exc:
            if "Precondition" in str(exc) or "412" in str(exc) or "409" in str(exc):
                return None
            raise
        return str(out.get("ETag", ""))

    def _current(self) -> tuple[dict[str, Any], str] | None:
        fs = self.work.fs
        try:
            info = fs.info(self.path, refresh=True)
            body = json.loads(fs.cat_file(self.path))
        except (FileNotFoundError, ValueError):
            return None
        return body, str(info.get("ETag", ""))

    def _acquire_object(self) -> bool:
        self.work.fs.invalidate_cache()
        etag = self._client_put(IfNoneMatch="*")
        if etag is None:
            current = self._current()
            if current is None:  # released between our put and our read: try once more
                etag = self._client_put(IfNoneMatch="*")
            elif not self._alive(current[0]):
                etag = self._client_put(IfMatch=current[1])  # take over an expired lease
        if etag is None:
            return False
        self._etag = etag
        self._beat = threading.Thread(target=self._heartbeat, name=f"lease-{self.batch_id}", daemon=True)
        self._beat.start()
        return True

    @staticmethod
    def _alive(body: dict[str, Any]) -> bool:
        return float(body.get("expires", 0)) >= time.time()

    def _heartbeat(self) -> None:
        while not self._stop.wait(LEASE_TTL_SECONDS / 3):
            etag = self._client_put(IfMatch=self._etag or "")
            self._etag = etag
            if etag is None:
                return  # lost (expired and taken over): release must not delete the new owner's lease

    # -- both -------------------------------------------------------------------------------
    def acquire(self) -> bool:
        return self._acquire_local() if self.work.is_local else self._acquire_object()

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._beat is not None:
            self._stop.set()
            self._beat.join(timeout=5)
            self._beat = None
            if self._etag is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.work.fs.rm_file(self.path)

    def held_elsewhere(self) -> bool:
        """Whether another holder has the lease now; a probe that leaves nothing behind
        (on object storage it only reads the lease object)."""
        if not self.work.is_local:
            current = self._current()
            return current is not None and self._alive(current[0])
        if not self._acquire_local():
            return True
        self.release()
        return False


@contextlib.contextmanager
def lease(work: Location, batch_id: str, prefix: str = PREFIX) -> Iterator[bool]:
    """Hold a batch's lease for the ``with`` block; yields False (and holds nothing) when a
    running step of another process owns the batch."""
    held = Lease(work, batch_id, prefix)
    if not held.acquire():
        yield False
        return
    try:
        yield True
    finally:
        held.release()


def left_to_owner(batch_id: str) -> None:
    """Log that a step skips a batch whose lease another run holds (its owner finishes it)."""
    log.info("batch %s is being worked on by another run; left to it", batch_id)


def is_leased(work: Location, batch_id: str, prefix: str = PREFIX) -> bool:
    """Whether a running step of some process holds the batch right now."""
    return Lease(work, batch_id, prefix).held_elsewhere()
