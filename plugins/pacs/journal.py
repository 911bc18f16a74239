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
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pacs.config import Location
from pacs.layout import checked_batch_id

PREFIX = "ingest"
MANIFEST = "manifest.json"
STAGED = "staged.parquet"
STORED = "stored.parquet"
OUTCOME = "outcome.parquet"
MERGED = "merged"
DONE = "done"


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


def _put(work: Location, p: str, data: bytes) -> None:
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
    _put(work, path(work, batch_id, name, prefix), json.dumps(obj, default=str).encode())


def read_json(work: Location, batch_id: str, name: str, prefix: str = PREFIX) -> Any:
    with work.fs.open(path(work, batch_id, name, prefix), "rb") as f:
        return json.load(f)


def write_table(work: Location, batch_id: str, name: str, table: pa.Table, prefix: str = PREFIX) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    _put(work, path(work, batch_id, name, prefix), buf.getvalue())


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
