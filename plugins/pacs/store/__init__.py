"""The store: where the archive's bytes live, behind one interface.

A :class:`Location` (a local folder or an object-store prefix) names a place; the functions
here act on a file of it, named by its path or by the URI the catalogue records (either is
taken), through one of two backends, :mod:`pacs.store.local` and
:mod:`pacs.store.objects`. This module is the only one that picks between them: the rest of
the package never asks whether a location is local.

What every write guarantees: it lands under a temporary name (local) or as one conditional
put (object storage) and is published whole, so a reader never sees half a file; without
``overwrite`` an existing file is never replaced; publishing with a sha256 (``write``) lets an
object store reject a body that does not match. :func:`put` is the one atomic writer of the
small files (journal entries, snapshot manifest, reports, alerts); :func:`writer` streams a
large one (snapshot partitions). :func:`lock` gives a process-bound exclusive lease, or refuses
where it could not be exclusive (:class:`~pacs.errors.LeaseUnsupportedError`).
Faults of a tier itself (full, read-only, unreachable) become one-line
:class:`~pacs.errors.TierError` through :func:`tier_faults`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from fsspec import AbstractFileSystem

from pacs.errors import LeaseUnsupportedError, StorageError, TierError
from pacs.store import local, objects
from pacs.store.common import CHUNK, TMP_MARK, Written, hash_bytes, hash_path, sha256_b64
from pacs.store.local import Identity, move_local, move_verified, rename_noreplace
from pacs.store.location import Location

__all__ = ["CHUNK", "TMP_MARK", "Identity", "Location", "StorageError", "TierError", "Written", "clean_temp",
           "copy_stream", "exists", "free_bytes", "hash_at", "hash_bytes", "hash_path", "holds", "is_link",
           "iter_files", "local_folder", "lock", "modified", "move_local", "move_verified", "names", "put", "put_many",
           "read", "read_concurrency", "read_into", "read_small", "register_filesystem", "remove", "remove_tree",
           "rename_noreplace", "root_exists", "same_filesystem", "scan", "sha256_b64", "still_same", "sync",
           "tier_faults", "where", "write", "writer"]


def _backend(loc: Location) -> ModuleType:
    return local if loc.is_local else objects


def local_folder(loc: Location) -> str | None:
    """The local folder of a location, or None when it is object storage."""
    return loc.root if loc.is_local else None


def where(loc: Location) -> str:
    """How to name a location to an operator: its folder, or its URL."""
    return loc.root if loc.is_local else loc.url


# --- writing ------------------------------------------------------------------------------

def write(loc: Location, path: str, data: bytes | memoryview, sha256: str, *, fsync: bool, overwrite: bool = False,
          tag: str = "") -> bool:
    """Publish ``data`` (whose sha256 is ``sha256``) at ``path``; False if a file was there and
    ``overwrite`` is not set (it is left untouched). ``tag`` marks local temporary names so that
    an interrupted writer can clean up its own leftovers (:func:`clean_temp`)."""
    path = loc.path_of_uri(path)
    return _backend(loc).write(loc, path, data, sha256, fsync=fsync, overwrite=overwrite, tag=tag)


def put(loc: Location, path: str, data: bytes, *, fsync: bool = True) -> None:
    """Write a small file atomically, replacing what was there (journal entries, manifests,
    reports, alerts): a reader sees the old bytes or the new, never a mix; with ``fsync``
    (local) the file and its name are durable before this returns."""
    path = loc.path_of_uri(path)
    _backend(loc).put(loc, path, data, fsync=fsync)


@contextlib.contextmanager
def writer(loc: Location, path: str) -> Iterator[Any]:
    """A binary file to stream into ``path``, published atomically when the block ends without
    error and discarded otherwise."""
    path = loc.path_of_uri(path)
    with _backend(loc).writer(loc, path) as f:
        yield f


def copy_stream(src_fs: AbstractFileSystem, src: str, loc: Location, dst: str, *, fsync: bool,
                overwrite: bool = False, tag: str = "") -> Written:
    """Stream ``src`` (on ``src_fs``) into ``dst``, computing its sha256 in the same pass."""
    dst = loc.path_of_uri(dst)
    return _backend(loc).copy_stream(src_fs, src, loc, dst, fsync=fsync, overwrite=overwrite, tag=tag)


def put_many(loc: Location, puts: list[Any], *, read_back: bool = False, concurrency: int = 32) -> list[str]:
    """Publish many ``(path, data, sha256)`` puts without replacing, each verified (by the
    store's checksum, or read back); returns how each was verified."""
    return _backend(loc).put_many(loc, puts, read_back=read_back, concurrency=concurrency) if puts else []


def remove(loc: Location, path: str) -> bool:
    """Delete a file if present; True if something was deleted."""
    path = loc.path_of_uri(path)
    return _backend(loc).remove(loc, path)


def remove_tree(loc: Location, folder: str) -> None:
    """Delete a folder (a prefix) and everything under it."""
    folder = loc.path_of_uri(folder)
    _backend(loc).remove_tree(loc, folder)


def clean_temp(loc: Location, folders: set[str], tag: str) -> int:
    """Remove temporary files an interrupted writer with ``tag`` left in ``folders``."""
    return _backend(loc).clean_temp(loc, folders, tag)


def sync(locations: list[Location]) -> None:
    """Flush every local filesystem holding one of ``locations`` (one call per batch replaces an
    fsync per file); object stores are durable at each put."""
    local.sync_filesystems([loc.root for loc in locations if loc.is_local])


# --- reading ------------------------------------------------------------------------------

def read(loc: Location, path: str, offset: int | None = None, length: int | None = None) -> bytes:
    """A file's bytes, or the ``length`` bytes at ``offset`` (one ranged read)."""
    path = loc.path_of_uri(path)
    return _backend(loc).read(loc, path, offset, length)


def read_into(loc: Location, path: str, buffer: bytearray, offset: int | None = None,
              length: int | None = None) -> bytes | memoryview:
    """:func:`read`, into the caller's reusable ``buffer`` where the backend can (a local file
    that fits: a view of ``buffer``, valid until its next use); else new bytes. A hot loop of
    whole-file reads (an export) saves an allocation and its page faults per file."""
    path = loc.path_of_uri(path)
    return _backend(loc).read_into(loc, path, buffer, offset, length)


def read_concurrency(loc: Location) -> int:
    """How many reads or writes at once suit the location: a local one is bound by the CPU
    (page cache, hashing), an object store by its round trips."""
    return _backend(loc).CONCURRENCY


def read_small(loc: Location, path: str, size: int, limit: int) -> tuple[bytes, Identity | None] | None:
    """Read a local file of at most ``limit`` bytes once, with its identity (None when it changed
    while read) so that a later rename can prove it moves exactly these bytes; None when the
    file is larger or not local (the caller streams it)."""
    path = loc.path_of_uri(path)
    return _backend(loc).read_small(loc, path, size, limit)


def hash_at(loc: Location, path: str) -> str | None:
    """sha256 of the file at ``path``, or None when there is none."""
    path = loc.path_of_uri(path)
    return _backend(loc).hash_at(loc, path)


def recorded_sha256(loc: Location, path: str) -> str | None:
    """The SHA-256 an object store recorded and verified when the object was put (None for a
    local folder, or when the store recorded none): what lets a reader skip hashing the bytes."""
    if loc.is_local:
        return None
    path = loc.path_of_uri(path)
    return _backend(loc).recorded_sha256(loc, path)


def holds(loc: Location, path: str, sha256: str) -> bool:
    """Whether a file at ``path`` exists and has exactly the bytes with ``sha256``."""
    return hash_at(loc, path) == sha256


def exists(loc: Location, path: str) -> bool:
    return _backend(loc).exists(loc, path)


def root_exists(loc: Location) -> bool:
    """Whether the location itself is there: its local folder, or its bucket (an object-store
    prefix with nothing under it yet is no less there: object stores have no folders)."""
    return _backend(loc).root_exists(loc)


def is_link(loc: Location, path: str) -> bool:
    """Whether ``path`` is a symbolic link (never on object storage)."""
    path = loc.path_of_uri(path)
    path = loc.path_of_uri(path)
    return _backend(loc).is_link(loc, path)


def modified(loc: Location, path: str) -> float | None:
    """Modification time (not following links), or None when the file is gone."""
    path = loc.path_of_uri(path)
    return _backend(loc).modified(loc, path)


def still_same(loc: Location, path: str, size: int, mtime_ns: int, etag: str | None = None) -> bool:
    """Whether a file is still the one seen with ``size`` and ``mtime_ns`` (a link: not newer); an
    object, the one seen with ``size`` and ``etag`` (:func:`scan` reports it)."""
    path = loc.path_of_uri(path)
    return _backend(loc).still_same(loc, path, size, mtime_ns, etag)


def names(loc: Location, folder: str) -> list[str]:
    """The names directly under ``folder``, sorted (empty when it does not exist)."""
    folder = loc.path_of_uri(folder)
    return _backend(loc).names(loc, folder)


def iter_files(loc: Location, prefix: str | None = None) -> Iterator[tuple[str, int]]:
    """Every (path, size) under the location (or one of its sub-prefixes), temp files skipped."""
    root = loc.root if prefix is None else loc.path(prefix)
    yield from _backend(loc).iter_files(loc, root)


def scan(loc: Location, skip: Any) -> Iterator[dict[str, Any]]:
    """Every file under the root as ``{"path", "size", "mtime_ns", "link"}`` (and an object's
    ``"etag"``), names ``skip`` accepts left out; links are reported (``"inside"`` /
    ``"unsafe"``), never followed out."""
    yield from _backend(loc).scan(loc, skip)


def free_bytes(loc: Location) -> int | None:
    """Free space of a local tier (None for object storage)."""
    return _backend(loc).free_bytes(loc)


def register_filesystem(con: Any, loc: Location) -> None:
    """Let a DuckDB connection read ``loc``'s files by URI (object storage goes through fsspec)."""
    if not loc.is_local:
        con.register_filesystem(loc.fs)


# --- leases -------------------------------------------------------------------------------

def lock(loc: Location, path: str, owner: str, ttl: float) -> Any:
    """An exclusive lease on ``path`` that dies with its process: an ``flock`` on a local folder,
    a lease object with a heartbeat on S3 (conditional writes; a store that ignores them is
    refused when the lease is first taken). It has ``acquire(wait=0) -> bool``, ``release()``
    and ``held_elsewhere() -> bool``.

    Raises
    ------
    LeaseUnsupportedError
        ``loc`` is object storage of a protocol without conditional writes here (a lease there
        would exclude nobody).
    """
    if loc.is_local:
        return local.FileLock(loc, path, owner, ttl)
    if loc.protocol not in objects.LEASE_PROTOCOLS:
        raise LeaseUnsupportedError(
            f"the {loc.name} location {loc.url} cannot hold exclusive leases: they need a local folder or S3 "
            f"(conditional writes), not {loc.protocol}://; move '{loc.name}' to one of those")
    return objects.LeaseObject(loc, path, owner, ttl)


# --- where renames work, and tier faults --------------------------------------------------

def same_filesystem(src: Location, dst: Location) -> bool:
    """Whether files of ``src`` can be renamed into ``dst`` (both local, one filesystem).

    Creates ``dst``'s root if needed, so that a tier not written yet can be told apart.
    """
    if not (src.is_local and dst.is_local):
        return False
    os.makedirs(dst.root, exist_ok=True)
    return local.same_device(src.root, dst.root)


_TIER_FAULTS = {
    errno.ENOSPC: ("is full", "free space or grow the tier"),
    errno.EDQUOT: ("is over its quota", "raise the quota or free space"),
    errno.EROFS: ("is read-only", "remount it read-write"),
    errno.EACCES: ("is not writable by this user", "fix its permissions"),
    errno.EPERM: ("is not writable by this user", "fix its permissions"),
    errno.ENOENT: ("is missing", "mount it, or create the folder"),
    errno.EIO: ("has an I/O error", "check the device"),
}


def _is_tier_fault(loc: Location, exc: OSError) -> bool:
    """Whether ``exc`` is a fault of the tier ``loc`` itself rather than of one file."""
    if not loc.is_local:
        return not isinstance(exc, FileNotFoundError)
    if exc.filename is None or not loc.contains(str(exc.filename)):
        return False  # about a file elsewhere (a landing file that vanished, say)
    if isinstance(exc, FileNotFoundError):
        return not os.path.isdir(loc.root)  # a missing file is the tier's fault only when its root is gone
    return exc.errno in _TIER_FAULTS


@contextlib.contextmanager
def tier_faults(loc: Location) -> Iterator[None]:
    """Turn a fault of ``loc`` itself into a one-line :class:`TierError` naming it.

    Errors about files elsewhere (a landing file that vanished, say) pass through unchanged.
    """
    try:
        yield
    except TierError:
        raise
    except OSError as exc:
        if not _is_tier_fault(loc, exc):
            raise
        what, fix = _TIER_FAULTS.get(exc.errno or 0, ("is unreachable", "check the endpoint and credentials"))
        raise TierError(exc.errno, f"the {loc.name} tier at {where(loc)} {what}: {fix} "
                                   "(nothing was lost; re-run once it is fixed)") from exc
