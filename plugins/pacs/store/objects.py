"""The object backend: an S3-compatible bucket prefix, through s3fs.

Every write is one PutObject carrying its SHA-256 checksum (the server rejects a body that does
not match) and, unless replacing is asked for, ``If-None-Match: *`` so an existing object is
never overwritten; a multipart upload publishes only on completion. A :class:`LeaseObject` is a
lease written with conditional puts, renewed by a heartbeat while held and taken over only once
expired; a store that ignores the conditions is refused (:func:`check_conditional_writes`)
rather than trusted. Listings and existence checks ask the store, not s3fs's listing cache:
other processes write the journal too. Callers use :mod:`pacs.store`, which picks this backend
for object locations.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import errno
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.asyn import sync

from pacs.errors import CorruptCopyError, LeaseUnsupportedError
from pacs.store.common import CHUNK, TMP_MARK, Written, hash_path, sha256_b64
from pacs.store.location import Location

log = logging.getLogger(__name__)

CONCURRENCY = 16
"""Requests at once (:func:`pacs.store.read_concurrency`): each waits on a round trip, so more
than the cores; s3fs runs them on its one event loop (``bench/export_rate.py``)."""


def write(loc: Location, path: str, data: bytes | memoryview, sha256: str, *, fsync: bool = False,
          overwrite: bool = False, tag: str = "") -> bool:
    """Put ``data`` with its SHA-256 checksum; without overwrite, an existing object is left untouched."""
    kwargs: dict[str, str] = {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": sha256_b64(sha256)}
    if not overwrite:
        kwargs["IfNoneMatch"] = "*"
    try:
        loc.fs.pipe_file(path, bytes(data), **kwargs)
    except FileExistsError:
        return False
    return True


def put(loc: Location, path: str, data: bytes, *, fsync: bool = True) -> None:
    loc.fs.pipe_file(path, data)  # one PutObject: atomic


@contextlib.contextmanager
def writer(loc: Location, path: str) -> Iterator[Any]:
    f = loc.fs.open(path, "wb")
    try:
        yield f
    except BaseException:
        f.discard()  # abort a multipart upload; a single put was never sent
        f.closed = True
        raise
    f.close()


def copy_stream(src_fs: AbstractFileSystem, src: str, loc: Location, dst: str, *, fsync: bool = False,
                overwrite: bool = False, tag: str = "") -> Written:
    if not overwrite and loc.fs.exists(dst):
        sha, size = hash_path(src_fs, src)
        return Written(dst, sha, size, False)
    h = hashlib.sha256()
    size = 0
    # A multipart upload publishes atomically on completion.
    with src_fs.open(src, "rb", block_size=CHUNK) as fin, loc.fs.open(dst, "wb", block_size=8 * 1024 * 1024) as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    return Written(dst, h.hexdigest(), size, True)


def read(loc: Location, path: str, offset: int | None = None, length: int | None = None) -> bytes:
    if offset is None or length is None:
        # one GET: s3fs's concurrent whole-object read first asks the object's size (a HEAD per
        # file, twice the round trips for an archive's objects of a few MB)
        return loc.fs.cat_file(path, max_concurrency=1)
    return loc.fs.cat_file(path, start=offset, end=offset + length)


def read_into(loc: Location, path: str, buffer: bytearray, offset: int | None = None,
              length: int | None = None) -> bytes:
    return read(loc, path, offset, length)


def hash_at(loc: Location, path: str) -> str | None:
    try:
        return hash_path(loc.fs, path)[0]
    except FileNotFoundError:
        return None


def remove(loc: Location, path: str) -> bool:
    # DeleteObject succeeds for a key that does not exist: ask first, so that True means deleted
    loc.fs.invalidate_cache(path)
    if not loc.fs.exists(path):
        return False
    try:
        loc.fs.rm_file(path)
        return True
    except FileNotFoundError:
        return False


def remove_tree(loc: Location, folder: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        loc.fs.rm(folder, recursive=True)


def exists(loc: Location, path: str) -> bool:
    loc.fs.invalidate_cache(path)  # another process may have written it since a listing was cached here
    return loc.fs.exists(path)


def root_exists(loc: Location) -> bool:
    """Whether the bucket is there; an unreachable endpoint raises (s3fs's ``exists`` would say
    False after its retries, as for a bucket that is not there)."""
    try:
        sync(loc.fs.loop, loc.fs._call_s3, "head_bucket", Bucket=loc.root.split("/", 1)[0])
    except FileNotFoundError:
        return False
    except PermissionError:
        return True  # there, but not ours to inspect: listing it will tell
    return True


def names(loc: Location, folder: str) -> list[str]:
    try:  # listed afresh: a cached listing would hide what other processes wrote since
        entries = loc.fs.ls(folder, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in entries)


def iter_files(loc: Location, root: str) -> Iterator[tuple[str, int]]:
    if not loc.fs.exists(root):
        return
    for p, info in loc.fs.find(root, detail=True).items():
        if p.rsplit("/", 1)[-1].startswith(TMP_MARK):
            continue
        yield p, int(info.get("size") or 0)


def recorded_sha256(loc: Location, path: str) -> str | None:
    """The whole-object SHA-256 the store recorded at the put (hex), or None (none recorded, or
    a multipart upload's composite checksum)."""
    bucket, key, _ = loc.fs.split_path(path)
    head = sync(loc.fs.loop, loc.fs._call_s3, "head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    recorded = head.get("ChecksumSHA256")
    if not recorded or "-" in recorded or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    return base64.b64decode(recorded).hex()


def _mtime_ns(info: dict[str, Any]) -> int:
    modified = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    if isinstance(modified, dt.datetime):
        return int(modified.timestamp() * 1e9)
    if modified is not None:
        return int(float(modified) * 1e9)
    return 0


def modified(loc: Location, path: str) -> float | None:
    try:
        loc.fs.invalidate_cache(path)
        return _mtime_ns(loc.fs.info(path)) / 1e9
    except FileNotFoundError:
        return None


def is_link(loc: Location, path: str) -> bool:
    return False


def free_bytes(loc: Location) -> int | None:
    return None  # object storage has no fixed size to run out of


def read_small(loc: Location, path: str, size: int, limit: int) -> None:
    return None  # objects are parsed from ranged reads and hashed while copied


def still_same(loc: Location, path: str, size: int, mtime_ns: int, etag: str | None = None) -> bool:
    """Asked of the store, not of a listing cached since: an object sent again under the same name
    has another ETag (and maybe another size); without the ETag seen, only the size can tell."""
    try:
        info = loc.fs.info(path, refresh=True)
    except FileNotFoundError:
        return False
    return int(info.get("size") or 0) == size and (etag is None or info.get("ETag") == etag)


def clean_temp(loc: Location, folders: set[str], tag: str) -> int:
    return 0  # an object is published whole or not at all: no temporary objects


async def _put_one(fs: Any, put: Any, sem: asyncio.Semaphore, read_back: bool) -> str:
    bucket, key, _ = fs.split_path(put.path)
    async with sem:
        try:
            resp = await fs._call_s3(
                "put_object", Bucket=bucket, Key=key, Body=put.data, ChecksumAlgorithm="SHA256",
                ChecksumSHA256=sha256_b64(put.sha256), IfNoneMatch="*")
            method = "checksum"
            echoed = resp.get("ChecksumSHA256")
            if echoed and echoed != sha256_b64(put.sha256):
                raise CorruptCopyError(f"s3://{put.path}: the store recorded another checksum")
        except FileExistsError:
            head = await fs._call_s3("head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
            recorded = head.get("ChecksumSHA256")
            expected = sha256_b64(put.sha256)
            if head.get("ContentLength") != len(put.data) or (recorded and recorded != expected):
                raise CorruptCopyError(f"s3://{put.path} already exists with other bytes") from None
            method = "existing"
            read_back = read_back or not recorded
        if read_back:
            body = await fs._cat_file(put.path)
            if hashlib.sha256(body).hexdigest() != put.sha256:
                raise CorruptCopyError(f"s3://{put.path}: read-back does not match")
            method = "readback"
        return method


def put_many(loc: Location, puts: list[Any], *, read_back: bool, concurrency: int) -> list[str]:
    fs = loc.fs

    async def run() -> list[str]:
        sem = asyncio.Semaphore(concurrency)
        return list(await asyncio.gather(*(_put_one(fs, p, sem, read_back) for p in puts)))

    return sync(fs.loop, run)


def scan(loc: Location, skip: Any) -> Iterator[dict[str, Any]]:
    fs = loc.fs
    if not fs.exists(loc.root):
        return
    for path, info in sorted(fs.find(loc.root, detail=True).items()):
        name = path.rsplit("/", 1)[-1]
        if info.get("type") != "file" or skip(name):
            continue
        yield {"path": path, "size": int(info.get("size") or 0), "mtime_ns": _mtime_ns(info), "link": None,
               "etag": info.get("ETag")}


# --- leases -------------------------------------------------------------------------------

LEASE_PROTOCOLS = frozenset({"s3", "s3a"})
"""The object-storage protocols a :class:`LeaseObject` can hold a lease on (S3's conditional PutObject)."""

_NOT_AN_ETAG = '"00000000000000000000000000000000"'
_PROBED: set[tuple[str, str]] = set()  # (filesystem, bucket) pairs proven to honour conditional writes


def _condition_failed(exc: BaseException) -> bool:
    """Whether an S3 error says a conditional request's condition did not hold (412: the object
    exists, or has another ETag) or that another conditional write of the key was in flight (409).

    s3fs turns only a failed ``If-None-Match`` into FileExistsError; a failed ``If-Match`` is a
    plain OSError(EINVAL), told apart here by the server's answer it carries as its cause.
    """
    if isinstance(exc, FileExistsError):
        return True
    response = getattr(exc.__cause__, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code")
    return status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict")


def _put_object(fs: Any, path: str, body: bytes, **cond: str) -> str:
    """One PutObject under ``cond``; the new object's ETag."""
    bucket, key = path.split("/", 1)
    out = sync(fs.loop, fs._call_s3, "put_object", Bucket=bucket, Key=key, Body=body, **cond)
    return str(out.get("ETag", ""))


def _refuses(fs: Any, path: str, cond: dict[str, str]) -> bool:
    """Whether the store refuses a put to ``path`` (which exists) under a condition that does not hold."""
    try:
        _put_object(fs, path, b"must not be written", **cond)
    except OSError as exc:
        if _condition_failed(exc):
            return True
        if exc.errno in (errno.ENOSYS, errno.EINVAL):  # 501 / 400: the store does not implement the header
            return False
        raise
    return False


def check_conditional_writes(loc: Location) -> None:
    """Prove, once per bucket and process, that the store refuses a write whose condition fails.

    A store that ignores ``If-None-Match`` / ``If-Match`` (older S3-compatible servers) would
    grant every taker the lease: raises :class:`~pacs.errors.LeaseUnsupportedError` instead.
    What this cannot prove is that the store applies each condition atomically under concurrent
    writers; AWS S3 and MinIO do, and the leases rest on it.
    """
    fs = loc.fs
    seen = (str(getattr(fs, "_fs_token", id(fs))), loc.root.split("/", 1)[0])
    if seen in _PROBED:
        return
    probe = loc.path(f"{TMP_MARK}lease-probe-{uuid.uuid4().hex[:12]}")
    _put_object(fs, probe, b"probe")  # a fresh key: written unconditionally, then written again under conditions
    try:
        ignored = [name for name, cond in (("If-None-Match: *", {"IfNoneMatch": "*"}),
                                           ("If-Match", {"IfMatch": _NOT_AN_ETAG}))
                   if not _refuses(fs, probe, cond)]
    finally:
        with contextlib.suppress(OSError):
            fs.rm_file(probe)
    if ignored:
        raise LeaseUnsupportedError(
            f"the {loc.name} location {loc.url} cannot hold exclusive leases: its object store wrote an object "
            f"although the write's condition ({', '.join(ignored)}) did not hold, so two runs could both own one "
            f"batch; put '{loc.name}' on a store that honours conditional writes (AWS S3, MinIO) or on a local folder")
    _PROBED.add(seen)


class LeaseObject:
    """A lease held in one object, ``{"owner", "expires"}``, on a store with conditional writes.

    Taken with ``If-None-Match: *`` (of two takers, one creates it), renewed by a heartbeat
    thread with ``If-Match`` on its own ETag every third of its time to live, taken over only
    once expired (``If-Match`` on the expired lease's ETag: again one taker wins), and removed
    on release with ``If-Match`` (never a successor's lease). A killed holder stops renewing:
    its lease is free ``ttl`` seconds after the last renewal. A holder whose renewal is refused
    (paused past its time to live and taken over) logs that it lost the lease and removes
    nothing; its step is not stopped (no fencing token), which the steps' idempotence and the
    catalogue's one-commit-per-batch absorb. Expiry is judged by the reader's clock against the
    holder's, so the hosts' clocks must agree to well within ``ttl`` (NTP does).
    """

    def __init__(self, loc: Location, path: str, owner: str, ttl: float) -> None:
        self.loc, self.path, self.owner, self.ttl = loc, path, owner, ttl
        self._etag: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires": time.time() + self.ttl}).encode()

    def _put(self, **cond: str) -> str | None:
        """Put the lease under a condition: its ETag, or None when the condition did not hold."""
        try:
            return _put_object(self.loc.fs, self.path, self._body(), **cond)
        except FileNotFoundError:  # If-Match on a lease removed meanwhile
            return None
        except OSError as exc:
            if _condition_failed(exc):
                return None
            raise

    def _current(self) -> tuple[dict[str, Any], str] | None:
        """The lease's body and ETag, from one GET; None when there is none. A body that is not a
        lease reads as long expired, so a stray object never blocks its run for ever."""
        fs = self.loc.fs
        bucket, key = self.path.split("/", 1)

        async def get() -> tuple[bytes, str]:
            resp = await fs._call_s3("get_object", Bucket=bucket, Key=key)
            try:
                return await resp["Body"].read(), str(resp.get("ETag", ""))
            finally:
                resp["Body"].close()

        try:
            data, etag = sync(fs.loop, get)
        except FileNotFoundError:
            return None
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        return (body if isinstance(body, dict) else {}), etag

    @staticmethod
    def _alive(body: dict[str, Any]) -> bool:
        try:
            return float(body.get("expires", 0)) >= time.time()
        except (TypeError, ValueError):
            return False

    def _try(self) -> str | None:
        self.loc.fs.invalidate_cache()  # the holder then lists what other processes wrote, not a stale cache
        etag = self._put(IfNoneMatch="*")
        if etag is None:
            current = self._current()
            if current is None:  # released between our put and our read: try once more
                etag = self._put(IfNoneMatch="*")
            elif not self._alive(current[0]):
                etag = self._put(IfMatch=current[1])  # take over an expired lease
        return etag

    def acquire(self, wait: float = 0.0) -> bool:
        check_conditional_writes(self.loc)
        deadline = time.monotonic() + wait
        while (etag := self._try()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(1.0, left))
        self._etag = etag
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="lease", daemon=True)
        self._beat.start()
        return True

    def _heartbeat(self) -> None:
        interval = self.ttl / 3
        while not self._stop.wait(interval):
            try:
                etag = self._put(IfMatch=self._etag or _NOT_AN_ETAG)
            except Exception as exc:  # noqa: BLE001 - a fault of the store: renew again soon, while the lease lives
                log.warning("lease %s: renewal failed (%s); trying again", self.path, type(exc).__name__)
                interval = self.ttl / 12
                continue
            if etag is None:
                self._etag = None  # release must not remove the new owner's lease
                log.warning("lease %s was lost: it expired unrenewed and another run took it over", self.path)
                return
            self._etag, interval = etag, self.ttl / 3

    def release(self) -> None:
        if self._beat is None:
            return
        self._stop.set()
        self._beat.join(timeout=30)
        self._beat = None
        etag, self._etag = self._etag, None
        if etag is None:
            return
        fs = self.loc.fs
        bucket, key = self.path.split("/", 1)
        try:
            sync(fs.loop, fs._call_s3, "delete_object", Bucket=bucket, Key=key, IfMatch=etag)
        except FileNotFoundError:
            pass
        except OSError as exc:  # not ours any more (412), or the store is unreachable: it expires unrenewed
            if not _condition_failed(exc):
                log.warning("lease %s could not be removed (%s); it expires in %.0fs", self.path,
                            type(exc).__name__, self.ttl)
        fs.invalidate_cache(self.path)

    def held_elsewhere(self) -> bool:
        """Only reads the lease object: a probe that leaves nothing behind."""
        current = self._current()
        return current is not None and self._alive(current[0])
