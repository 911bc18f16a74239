"""Bulk, verified transfers between tiers: many small objects at once, series packing, ranged reads.

Object storage writes go out concurrently on s3fs's event loop, each ``PutObject`` carrying the
SHA-256 of its body (``x-amz-checksum-sha256``): a compliant server (AWS S3, MinIO) rejects a
body that does not match, so a successful response *is* the verification (``verify:
checksum``). ``verify: readback`` reads every object back and hashes it instead (needed for
stores that ignore checksums). Existing objects are never overwritten (``If-None-Match: *``);
an existing object is accepted only if it holds the expected bytes.

Packing puts a whole series in one uncompressed tar (``tarfile`` from the standard library);
each member's data offset and length go to the catalogue so one instance is still a single
ranged read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import logging
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass

from fsspec.asyn import sync

from pacs import store
from pacs.errors import CorruptCopyError
from pacs.store.location import Location

log = logging.getLogger(__name__)

SINGLE_PUT_LIMIT = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Put:
    """One object to write: its path in the target location, bytes and their sha256."""

    path: str
    data: bytes
    sha256: str


def read_verified(loc: Location, uri: str, sha256: str, offset: int | None = None,
                  length: int | None = None) -> bytes:
    """Read a copy (or a packed member's byte range) and check it against ``sha256``."""
    path = loc.path_of_uri(uri)
    if offset is not None and length is not None:
        if loc.is_local:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(length)
        else:
            data = loc.fs.cat_file(path, start=offset, end=offset + length)
    else:
        data = store.read_local(path) if loc.is_local else loc.fs.cat_file(path)
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise CorruptCopyError(f"{uri}: sha256 {got[:12]}… does not match the catalogue's {sha256[:12]}…")
    return data


async def _put_one(fs, put: Put, sem: asyncio.Semaphore, read_back: bool) -> str:
    bucket, key, _ = fs.split_path(put.path)
    async with sem:
        try:
            resp = await fs._call_s3(
                "put_object", Bucket=bucket, Key=key, Body=put.data, ChecksumAlgorithm="SHA256",
                ChecksumSHA256=store.sha256_b64(put.sha256), IfNoneMatch="*")
            method = "checksum"
            echoed = resp.get("ChecksumSHA256")
            if echoed and echoed != store.sha256_b64(put.sha256):
                raise CorruptCopyError(f"s3://{put.path}: the store recorded another checksum")
        except FileExistsError:
            head = await fs._call_s3("head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
            recorded = head.get("ChecksumSHA256")
            expected = store.sha256_b64(put.sha256)
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


def put_objects(loc: Location, puts: list[Put], *, verify: str = "checksum", concurrency: int = 32) -> list[str]:
    """Write and verify many objects; returns the verification method used for each."""
    if not puts:
        return []
    if loc.is_local:
        methods = []
        for p in puts:
            created = store.write_local(p.path, p.data, fsync=True)
            if store.hash_local(p.path)[0] != p.sha256:  # read back: cheap on a local tier
                raise CorruptCopyError(f"{p.path}: " + ("read-back does not match" if created
                                                        else "already exists with other bytes"))
            methods.append("readback" if created else "existing")
        return methods
    fs = loc.fs
    read_back = verify == "readback"

    async def run() -> list[str]:
        sem = asyncio.Semaphore(concurrency)
        return list(await asyncio.gather(*(_put_one(fs, p, sem, read_back) for p in puts)))

    return sync(fs.loop, run)


def put_large(loc: Location, path: str, local_file: str, sha256: str) -> str:
    """Upload a big local file (multipart on object storage) and verify it by reading it back."""
    if loc.is_local:
        written = store.copy_stream(store.local_fs(), local_file, loc, path, fsync=True)
        if written.sha256 != sha256:
            raise CorruptCopyError(f"{path}: copy does not match")
        return "readback"
    if not loc.fs.exists(path):
        loc.fs.put_file(local_file, path)
    got, _ = store.hash_path(loc.fs, path)
    if got != sha256:
        raise CorruptCopyError(f"{path}: read-back does not match")
    return "readback"


@dataclass(frozen=True, slots=True)
class Packed:
    """A series tar in memory and where each member's bytes sit in it."""

    data: bytes
    sha256: str
    members: dict[str, tuple[int, int]]  # sop_instance_uid -> (offset, length)


def pack(members: Iterable[tuple[str, bytes]], mtime: dt.datetime | None = None) -> Packed:
    """An uncompressed tar of ``<SOPInstanceUID>.dcm`` members (deterministic bytes)."""
    buf = io.BytesIO()
    offsets: dict[str, tuple[int, int]] = {}
    stamp = int((mtime or dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).timestamp())
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sop, data in members:
            info = tarfile.TarInfo(name=f"{sop}.dcm")
            info.size = len(data)
            info.mtime = stamp
            info.mode = 0o444
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r") as tar:  # where each member's bytes landed
        for member in tar.getmembers():
            offsets[member.name.removesuffix(".dcm")] = (member.offset_data, member.size)
    return Packed(raw, hashlib.sha256(raw).hexdigest(), offsets)


def free_bytes(loc: Location) -> int | None:
    """Free space of a local tier (None for object storage)."""
    if not loc.is_local:
        return None
    os.makedirs(loc.root, exist_ok=True)
    st = os.statvfs(loc.root)
    return st.f_bavail * st.f_frsize
