"""Byte movement between locations: copy with sha256 in one pass, atomic writes, safe deletes.

Every write lands under a temporary name and is published with a no-replace link (local) or a
conditional put with a SHA-256 checksum (object storage), so a reader never sees half a file
and an existing file is never overwritten. Nothing here decides *what* to move; the ingest,
lifecycle and fixity modules do.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from pacs.errors import StorageError as StorageError  # re-exported: store.StorageError
from pacs.errors import TierError
from pacs.store.location import Location

log = logging.getLogger(__name__)

CHUNK = 4 * 1024 * 1024
TMP_MARK = ".pacs-tmp-"


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
        where = loc.root if loc.is_local else loc.url
        raise TierError(exc.errno, f"the {loc.name} tier at {where} {what}: {fix} "
                                   "(nothing was lost; re-run once it is fixed)") from exc


@dataclass(frozen=True, slots=True)
class Written:
    """Outcome of a publish: the final path, its digest and size, and whether we created it."""

    path: str
    sha256: str
    size: int
    created: bool


def sha256_b64(hex_digest: str) -> str:
    """The base64 form S3 uses for ``ChecksumSHA256``."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def hash_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_path(fs: AbstractFileSystem, path: str) -> tuple[str, int]:
    """sha256 and size of a file, streamed in chunks."""
    h = hashlib.sha256()
    size = 0
    with fs.open(path, "rb", block_size=CHUNK) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def hash_local(path: str) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def read_local(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: str, tag: str = "") -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f"{TMP_MARK}{tag}{'-' if tag else ''}{uuid.uuid4().hex[:8]}-{tail}")


def _publish_local(tmp: str, path: str, *, overwrite: bool) -> bool:
    """Move ``tmp`` to ``path``; without overwrite, an existing ``path`` is left untouched."""
    if overwrite:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        return False
    except OSError as exc:  # filesystems without hard links
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(path):
            os.unlink(tmp)
            return False
        os.rename(tmp, path)
        return True
    os.unlink(tmp)
    return True


def write_local(path: str, data: bytes | memoryview, *, fsync: bool, overwrite: bool = False,
                tag: str = "") -> bool:
    """Atomically write ``data`` to a local ``path``; return False if it already existed.

    ``tag`` marks the temporary name so that an interrupted writer can clean up its own leftovers.
    """
    if not overwrite and os.path.lexists(path):
        return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = _tmp_name(path, tag)
    try:
        with open(tmp, "wb", buffering=0) as f:
            f.write(data)
            if fsync:
                os.fsync(f.fileno())
    except BaseException:  # e.g. ENOSPC: leave nothing half-written behind
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    created = _publish_local(tmp, path, overwrite=overwrite)
    if fsync and created:
        _fsync_dir(os.path.dirname(path))
    return created


def move_local(src: str, dst: str, *, fsync: bool) -> bool:
    """Rename ``src`` to ``dst`` on one filesystem without replacing an existing ``dst``.

    Returns True when ``dst`` now holds ``src``'s file (also when a previous, interrupted call
    had already linked it), False when ``dst`` held another file and ``src`` was left alone.
    """
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        if os.path.exists(src) and os.path.samefile(src, dst):
            os.unlink(src)  # resumed after a crash between link and unlink
            return True
        return False
    os.unlink(src)
    if fsync:
        _fsync_dir(os.path.dirname(dst))
        _fsync_dir(os.path.dirname(src))
    return True


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_renameat2: Any = None


def _libc_renameat2() -> Any:
    global _renameat2
    if _renameat2 is None:
        import ctypes

        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            _renameat2 = fn
        except (OSError, AttributeError):
            _renameat2 = False
    return _renameat2


def rename_noreplace(src: str, dst: str) -> None:
    """Atomically rename ``src`` to ``dst`` unless ``dst`` exists (Linux ``renameat2``).

    Raises FileExistsError when ``dst`` exists, FileNotFoundError when ``src`` does not, and
    OSError(EINVAL/ENOSYS) where the filesystem cannot rename without replacing (callers then
    copy). Unlike link + unlink, the file moved is exactly the one ``src`` named at that instant,
    and a file that replaces ``src`` afterwards is never touched.
    """
    import ctypes

    fn = _libc_renameat2()
    if not fn:
        raise OSError(errno.ENOSYS, "renameat2 is not available", src)
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), src)  # OSError picks FileExistsError, FileNotFoundError, …


@dataclass(frozen=True, slots=True)
class Identity:
    """What identifies the exact bytes of a local file that was read: inode, size and mtime.

    Appending changes size and mtime, rewriting changes mtime, replacing (a new file renamed over
    the name) changes the inode; a rename or hard link changes none of them.
    """

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_local_identified(path: str) -> tuple[bytes, Identity | None]:
    """The bytes of a local file and its identity, or identity None when it changed while read."""
    with open(path, "rb", buffering=0) as f:
        before = os.fstat(f.fileno())
        data = f.read()
        after = os.fstat(f.fileno())
    same = (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (after.st_size, after.st_mtime_ns,
                                                                      after.st_ctime_ns)
    if not same or len(data) != after.st_size:
        return data, None
    return data, Identity.of(after)


MOVE_FALLBACK_ERRNOS = frozenset({errno.EPERM, errno.EACCES, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                                  errno.ENOTSUP, errno.EOPNOTSUPP, errno.EROFS})


def move_verified(src: str, dst: str, expected: Identity) -> str:
    """Move the landing file ``src`` to ``dst`` only if it is still the file that was read.

    Returns ``"moved"``; ``"changed"`` when ``src`` is not (or no longer) the file with
    ``expected`` identity — it is left in (or put back into) landing for a later sweep;
    ``"exists"`` when ``dst`` already exists (nothing moved); ``"gone"`` when ``src`` vanished;
    ``"copy"`` when this filesystem or the file's permissions do not allow the rename (EPERM,
    EACCES, EXDEV, no ``renameat2``): the caller copies and verifies instead, and the landing
    file is removed only after commit.
    """
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        return "gone"
    if Identity.of(st) != expected:
        return "changed"
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        rename_noreplace(src, dst)
    except FileExistsError:
        return "exists"
    except FileNotFoundError:
        return "gone"
    except OSError as exc:
        if exc.errno in MOVE_FALLBACK_ERRNOS:
            return "copy"
        raise
    if Identity.of(os.lstat(dst)) == expected:
        return "moved"
    # The name was replaced between the check and the rename: give the newcomer back.
    try:
        rename_noreplace(dst, src)
    except FileExistsError:
        rename_noreplace(dst, f"{src}.pacs-returned-{uuid.uuid4().hex[:8]}")
    return "changed"


def same_filesystem(src: Location, dst: Location) -> bool:
    """Whether files of ``src`` can be renamed into ``dst`` (both local, one filesystem).

    Creates ``dst``'s root if needed, so that a tier not written yet can be told apart.
    """
    if not (src.is_local and dst.is_local):
        return False
    os.makedirs(dst.root, exist_ok=True)
    return same_device(src.root, dst.root)


def same_device(a: str, b: str) -> bool:
    """Whether two existing local folders live on one filesystem (so rename works)."""
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except FileNotFoundError:
        return False


def write_object(loc: Location, path: str, data: bytes, sha256: str, *, overwrite: bool = False) -> bool:
    """Put ``data`` to object storage with its SHA-256 checksum; a compliant server rejects a
    body that does not match. Without overwrite, an existing object is left untouched."""
    kwargs: dict[str, str] = {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": sha256_b64(sha256)}
    if not overwrite:
        kwargs["IfNoneMatch"] = "*"
    try:
        loc.fs.pipe_file(path, data, **kwargs)
    except FileExistsError:
        return False
    return True


def write(loc: Location, path: str, data: bytes, sha256: str, *, fsync: bool, overwrite: bool = False,
          tag: str = "") -> bool:
    """Write ``data`` to ``path`` in ``loc`` atomically and without replacing (unless asked)."""
    if loc.is_local:
        return write_local(path, data, fsync=fsync, overwrite=overwrite, tag=tag)
    return write_object(loc, path, data, sha256, overwrite=overwrite)


def copy_stream(src_fs: AbstractFileSystem, src: str, loc: Location, dst: str, *, fsync: bool,
                overwrite: bool = False, tag: str = "") -> Written:
    """Stream ``src`` into ``dst`` computing sha256 in the same pass (for files too big to hold)."""
    h = hashlib.sha256()
    size = 0
    if loc.is_local:
        if not overwrite and os.path.lexists(dst):
            sha, size = hash_path(src_fs, src)
            return Written(dst, sha, size, False)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = _tmp_name(dst, tag)
        with src_fs.open(src, "rb", block_size=CHUNK) as fin, open(tmp, "wb", buffering=0) as fout:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
                size += len(chunk)
            if fsync:
                os.fsync(fout.fileno())
        created = _publish_local(tmp, dst, overwrite=overwrite)
        return Written(dst, h.hexdigest(), size, created)
    if not overwrite and loc.fs.exists(dst):
        sha, size = hash_path(src_fs, src)
        return Written(dst, sha, size, False)
    # Multipart upload publishes atomically on completion.
    with src_fs.open(src, "rb", block_size=CHUNK) as fin, loc.fs.open(dst, "wb", block_size=8 * 1024 * 1024) as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    return Written(dst, h.hexdigest(), size, True)


def hash_at(loc: Location, path: str) -> str | None:
    """sha256 of the file at ``path`` in ``loc``, or None when there is none."""
    try:
        return (hash_local(path) if loc.is_local else hash_path(loc.fs, path))[0]
    except FileNotFoundError:
        return None


def remove(loc_or_fs: Location | AbstractFileSystem, path: str) -> bool:
    """Delete a file if present; True if something was deleted."""
    if isinstance(loc_or_fs, Location) and loc_or_fs.is_local:
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False
    fs = loc_or_fs.fs if isinstance(loc_or_fs, Location) else loc_or_fs
    try:
        fs.rm_file(path)
        return True
    except FileNotFoundError:
        return False


def exists(loc: Location, path: str) -> bool:
    if loc.is_local:
        return os.path.lexists(path)
    return loc.fs.exists(path)


def iter_files(loc: Location, prefix: str | None = None) -> Iterator[tuple[str, int]]:
    """Every (path, size) under the location (or one of its sub-prefixes), temp files skipped."""
    root = loc.root if prefix is None else loc.path(prefix)
    if loc.is_local:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.startswith(TMP_MARK):
                    continue
                p = os.path.join(dirpath, name)
                try:
                    yield p, os.lstat(p).st_size
                except FileNotFoundError:
                    continue
        return
    if not loc.fs.exists(root):
        return
    for p, info in loc.fs.find(root, detail=True).items():
        if os.path.basename(p).startswith(TMP_MARK):
            continue
        yield p, int(info.get("size") or 0)


def clean_temp_files(folders: set[str], tag: str) -> int:
    """Remove the temporary files that an interrupted writer with ``tag`` left in ``folders``."""
    removed = 0
    mark = f"{TMP_MARK}{tag}-"
    for dirpath in folders:
        try:
            names = os.listdir(dirpath)
        except FileNotFoundError:
            continue
        for name in names:
            if name.startswith(mark):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def local_fs() -> AbstractFileSystem:
    """fsspec's local filesystem."""
    from fsspec import filesystem

    return filesystem("file")


def sync_filesystems(paths: list[str]) -> None:
    """Flush every filesystem holding one of ``paths`` (Linux ``syncfs``; ``sync`` elsewhere).

    One call at the end of a batch replaces an fsync per file and per folder: the batch's
    journal entry is written only after it, so a crash before it simply redoes the batch.
    """
    import ctypes

    devices: dict[int, str] = {}
    for p in paths:
        try:
            devices.setdefault(os.stat(p).st_dev, p)
        except FileNotFoundError:
            continue
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    for p in devices.values():
        fd = os.open(p, os.O_RDONLY)
        try:
            if syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)


def holds(loc: Location, path: str, sha256: str) -> bool:
    """Whether a file at ``path`` exists and has exactly the bytes with ``sha256``."""
    return hash_at(loc, path) == sha256


def put(loc: Location, path: str, data: bytes, *, fsync: bool = True) -> None:
    """Write a small file atomically, replacing what was there (journal entries, manifests, reports).

    A reader sees the old bytes or the new, never a mix; with ``fsync`` (local) the file and
    its name are durable before this returns.
    """
    if loc.is_local:
        write_local(path, data, fsync=fsync, overwrite=True)
    else:
        loc.fs.pipe_file(path, data)


@contextlib.contextmanager
def writer(loc: Location, path: str) -> Iterator[Any]:
    """A binary file to stream into ``path``, published atomically when the block ends without
    error (and discarded otherwise): a reader never sees a half-written file."""
    if loc.is_local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = _tmp_name(path)
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return
    f = loc.fs.open(path, "wb")
    try:
        yield f
    except BaseException:
        f.discard()  # abort a multipart upload; a single put was never sent
        f.closed = True
        raise
    f.close()


def register_filesystem(con: Any, loc: Location) -> None:
    """Let a DuckDB connection read ``loc``'s files by URI (object storage goes through fsspec)."""
    if not loc.is_local:
        con.register_filesystem(loc.fs)
