"""The local backend: a folder on a local or mounted filesystem (SAN, NFS, local disk).

Writes land under a temporary name in the target folder and are published with a no-replace
hard link (or ``os.replace`` when replacing is asked for), so a reader never sees half a file;
renames out of landing use ``renameat2(RENAME_NOREPLACE)`` and prove the file's identity; a
:class:`FileLock` is an ``flock`` that the kernel releases when its process dies. Callers use
:mod:`pacs.store`, which picks this backend for local locations.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from pacs.errors import CorruptCopyError
from pacs.store.common import CHUNK, TMP_MARK, Written, hash_path
from pacs.store.location import Location

log = logging.getLogger(__name__)

CONCURRENCY = max(2, min(8, os.cpu_count() or 2))
"""Reads at once (:func:`pacs.store.read_concurrency`): a copy between local files in the page
cache is hashing and memory copies, so one thread per core; more only contend for the GIL
(``bench/export_rate.py``)."""


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


@contextlib.contextmanager
def _named(path: str) -> Iterator[None]:
    """Give an OSError raised on a file descriptor (a write, an fsync) the file's name, which is
    how :func:`pacs.store.tier_faults` tells a fault of the tier (ENOSPC under its root) from
    one of another file."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror, path) from exc


def _write_all(f: Any, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to an unbuffered file. A raw write may take fewer bytes than
    it is given and say so only in its return value: on a filesystem that fills up, the short
    write comes first and only the next one fails with ENOSPC."""
    view = memoryview(data).cast("B")
    with _named(f.name):
        while view:
            n = f.write(view)
            if not n:
                raise OSError(errno.EIO, "a write took no bytes")
            view = view[n:]


def _fsync(f: Any) -> None:
    with _named(f.name):
        os.fsync(f.fileno())


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
            _write_all(f, data)
            if fsync:
                _fsync(f)
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


def same_device(a: str, b: str) -> bool:
    """Whether two existing local folders live on one filesystem (so rename works)."""
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except FileNotFoundError:
        return False


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


# --- the backend interface (see pacs.store) -------------------------------------------------

def write(loc: Location, path: str, data: bytes | memoryview, sha256: str, *, fsync: bool,
          overwrite: bool = False, tag: str = "") -> bool:
    return write_local(path, data, fsync=fsync, overwrite=overwrite, tag=tag)


def put(loc: Location, path: str, data: bytes, *, fsync: bool = True) -> None:
    write_local(path, data, fsync=fsync, overwrite=True)


@contextlib.contextmanager
def writer(loc: Location, path: str) -> Iterator[Any]:
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


def copy_stream(src_fs: AbstractFileSystem, src: str, loc: Location, dst: str, *, fsync: bool,
                overwrite: bool = False, tag: str = "") -> Written:
    if not overwrite and os.path.lexists(dst):
        sha, size = hash_path(src_fs, src)
        return Written(dst, sha, size, False)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = _tmp_name(dst, tag)
    h = hashlib.sha256()
    size = 0
    try:
        with src_fs.open(src, "rb", block_size=CHUNK) as fin, open(tmp, "wb", buffering=0) as fout:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                _write_all(fout, chunk)
                size += len(chunk)
            if fsync:
                _fsync(fout)
    except BaseException:  # leave no half-written temporary file behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    created = _publish_local(tmp, dst, overwrite=overwrite)
    return Written(dst, h.hexdigest(), size, created)


def read(loc: Location, path: str, offset: int | None = None, length: int | None = None) -> bytes:
    if offset is None or length is None:
        return read_local(path)
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def read_into(loc: Location, path: str, buffer: bytearray, offset: int | None = None,
              length: int | None = None) -> bytes | memoryview:
    with open(path, "rb", buffering=0) as f:
        if offset is not None and length is not None:
            if length > len(buffer):
                f.seek(offset)
                return f.read(length)
            f.seek(offset)
            view = memoryview(buffer)[:length]
        else:
            view = memoryview(buffer)
        n = f.readinto(view)
        if offset is None and n == len(buffer):  # larger than the buffer: the rest too
            return bytes(view) + f.read()
        return view[:n]


def hash_at(loc: Location, path: str) -> str | None:
    try:
        return hash_local(path)[0]
    except FileNotFoundError:
        return None


def remove(loc: Location, path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def remove_tree(loc: Location, folder: str) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def exists(loc: Location, path: str) -> bool:
    return os.path.lexists(path)


def root_exists(loc: Location) -> bool:
    return os.path.isdir(loc.root)


def names(loc: Location, folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []


def iter_files(loc: Location, root: str) -> Iterator[tuple[str, int]]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(TMP_MARK):
                continue
            p = os.path.join(dirpath, name)
            try:
                yield p, os.lstat(p).st_size
            except FileNotFoundError:
                continue


def modified(loc: Location, path: str) -> float | None:
    try:
        return os.lstat(path).st_mtime
    except FileNotFoundError:
        return None


def is_link(loc: Location, path: str) -> bool:
    return os.path.islink(path)


def free_bytes(loc: Location) -> int | None:
    os.makedirs(loc.root, exist_ok=True)
    st = os.statvfs(loc.root)
    return st.f_bavail * st.f_frsize


def read_small(loc: Location, path: str, size: int, limit: int) -> tuple[bytes, Identity | None] | None:
    if size > limit:
        return None
    return read_local_identified(path)


def still_same(loc: Location, path: str, size: int, mtime_ns: int, etag: str | None = None) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if os.path.islink(path):
        return st.st_mtime_ns <= mtime_ns
    return st.st_size == size and st.st_mtime_ns == mtime_ns


def clean_temp(loc: Location, folders: set[str], tag: str) -> int:
    return clean_temp_files(folders, tag)


def put_many(loc: Location, puts: list[Any], *, read_back: bool, concurrency: int) -> list[str]:
    methods = []
    for p in puts:
        created = write_local(p.path, p.data, fsync=True)
        if hash_local(p.path)[0] != p.sha256:  # read back: cheap on a local tier
            raise CorruptCopyError(f"{p.path}: " + ("read-back does not match" if created
                                                    else "already exists with other bytes"))
        methods.append("readback" if created else "existing")
    return methods


def scan(loc: Location, skip: Any) -> Iterator[dict[str, Any]]:
    """Regular files and links under the root; links are reported, never followed out of it.

    Yields ``{"path", "size", "mtime_ns", "link"}`` with ``link`` None, ``"inside"`` (a link to
    a file under the root: its target's size and the later of both mtimes) or ``"unsafe"``
    (with a ``detail``); folders whose name ``skip`` accepts, and temporary files, are left out.
    """
    root = os.path.realpath(loc.root)
    stack = [loc.root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            log.warning("a folder under %s is not readable; skipped (files elsewhere continue)", loc.name)
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if skip(entry.name) or entry.name.startswith(TMP_MARK):
                continue
            found = _scanned(entry, root)
            if found == "dir":
                stack.append(entry.path)
            elif found is not None:
                yield found


def _scanned(entry: os.DirEntry[str], root: str) -> dict[str, Any] | str | None:
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    if entry.is_symlink():
        target = os.path.realpath(entry.path)
        inside = target == root or target.startswith(root + os.sep)
        if inside and os.path.isdir(target):
            return None  # its content is swept through its real path
        if inside and os.path.isfile(target):
            tst = os.stat(entry.path)
            return {"path": entry.path, "size": tst.st_size, "mtime_ns": max(st.st_mtime_ns, tst.st_mtime_ns),
                    "link": "inside"}
        detail = ("link points outside its landing root" if not inside and os.path.exists(target)
                  else "link target does not exist" if not os.path.exists(target)
                  else "link points to something that is not a regular file")
        return {"path": entry.path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "link": "unsafe",
                "detail": detail}
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return {"path": entry.path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "link": None}
    return None  # sockets, FIFOs and devices are not files a modality sends; they are left alone


class FileLock:
    """An exclusive ``flock`` on a file: process-bound (the kernel drops it when the owner dies)."""

    def __init__(self, loc: Location, path: str, owner: str, ttl: float) -> None:
        self.path, self.owner = path, owner
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        deadline = time.monotonic() + wait
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"owner": self.owner, "since": time.time()}).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def held_elsewhere(self) -> bool:
        if not self.acquire():
            return True
        self.release()
        return False
