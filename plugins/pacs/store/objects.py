"""The object backend: an S3-compatible bucket prefix, through s3fs.

Every write is one PutObject carrying its SHA-256 checksum (the server rejects a body that does
not match) and, unless replacing is asked for, ``If-None-Match: *`` so an existing object is
never overwritten; a multipart upload publishes only on completion. A :class:`LeaseObject` is a
lease written with conditional puts, renewed by a heartbeat while held and taken over only once
expired. Callers use :mod:`pacs.store`, which picks this backend for object locations.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.asyn import sync

from pacs.errors import CorruptCopyError
from pacs.store.common import CHUNK, TMP_MARK, Written, hash_path, sha256_b64
from pacs.store.location import Location


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
        return loc.fs.cat_file(path)
    return loc.fs.cat_file(path, start=offset, end=offset + length)


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
    if not loc.fs.exists(folder):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in loc.fs.ls(folder, detail=False))


def iter_files(loc: Location, root: str) -> Iterator[tuple[str, int]]:
    if not loc.fs.exists(root):
        return
    for p, info in loc.fs.find(root, detail=True).items():
        if p.rsplit("/", 1)[-1].startswith(TMP_MARK):
            continue
        yield p, int(info.get("size") or 0)


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


def still_same(loc: Location, path: str, size: int, mtime_ns: int) -> bool:
    try:
        info = loc.fs.info(path)
    except FileNotFoundError:
        return False
    return int(info.get("size") or 0) == size


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
        yield {"path": path, "size": int(info.get("size") or 0), "mtime_ns": _mtime_ns(info), "link": None}


class LeaseObject:
    """A lease object: taken with ``If-None-Match: *``, renewed with ``If-Match`` every third of its
    time to live, taken over (``If-Match`` on the expired lease's ETag) only once it has expired,
    so two takers cannot both win. Not deleted on release if it was lost to a takeover."""

    def __init__(self, loc: Location, path: str, owner: str, ttl: float) -> None:
        self.loc, self.path, self.owner, self.ttl = loc, path, owner, ttl
        self._etag: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires": time.time() + self.ttl}).encode()

    def _put(self, **cond: str) -> str | None:
        """Put the lease object under a condition; its ETag, or None when the condition failed."""
        fs = self.loc.fs
        bucket, key = self.path.split("/", 1)

        async def put() -> Any:
            return await fs._call_s3("put_object", Bucket=bucket, Key=key, Body=self._body(), **cond)

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
        fs = self.loc.fs
        try:
            info = fs.info(self.path, refresh=True)
            body = json.loads(fs.cat_file(self.path))
        except (FileNotFoundError, ValueError):
            return None
        return body, str(info.get("ETag", ""))

    @staticmethod
    def _alive(body: dict[str, Any]) -> bool:
        return float(body.get("expires", 0)) >= time.time()

    def _try(self) -> str | None:
        self.loc.fs.invalidate_cache()
        etag = self._put(IfNoneMatch="*")
        if etag is None:
            current = self._current()
            if current is None:  # released between our put and our read: try once more
                etag = self._put(IfNoneMatch="*")
            elif not self._alive(current[0]):
                etag = self._put(IfMatch=current[1])  # take over an expired lease
        return etag

    def acquire(self, wait: float = 0.0) -> bool:
        deadline = time.monotonic() + wait
        while (etag := self._try()) is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)
        self._etag = etag
        self._beat = threading.Thread(target=self._heartbeat, name="lease", daemon=True)
        self._beat.start()
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            etag = self._put(IfMatch=self._etag or "")
            self._etag = etag
            if etag is None:
                return  # lost (expired and taken over): release must not delete the new owner's lease

    def release(self) -> None:
        if self._beat is None:
            return
        self._stop.set()
        self._beat.join(timeout=5)
        self._beat = None
        if self._etag is not None:
            with contextlib.suppress(FileNotFoundError):
                self.loc.fs.rm_file(self.path)

    def held_elsewhere(self) -> bool:
        """Only reads the lease object: a probe that leaves nothing behind."""
        current = self._current()
        return current is not None and self._alive(current[0])
