"""The journal: the written record of every workflow's runs, that makes every step resumable.

One :class:`Journal` per workflow — :data:`INGEST` (one *run* per batch), :data:`LIFECYCLE`
(one per plan) and :data:`FIXITY` (one per audit) — under the ``work`` location:
``<work>/<workflow>/<run>/<step>``. A step's file is written atomically (:func:`pacs.store.put`)
once the step is done, so a step killed midway is simply redone, and a run resumes from its
last written step. A run's id comes from :func:`run_key` (a date and a hash of the Airflow run
id) or, for ingest batches, :func:`new_batch_ids`.

An ingest batch holds, in the order the steps write them (:class:`Step`):

- ``manifest.json`` (sweep): the landing files the batch owns, with size and mtime;
- ``staged.parquet`` (process, rename mode only): the plan, written *before* any file is
  renamed out of landing, so an interrupted batch knows where every file went;
- ``stored.parquet`` (process): one row per file with its hash, header and where it is now;
- ``outcome.parquet`` (merge, before COMMIT) and ``merged`` (after COMMIT);
- ``done`` (finalize): landing cleaned up.

A batch without ``done`` is *open*: its files are claimed (the sweep leaves them alone) and the
next run resumes it.

**Ownership.** A step works on a run only while it holds the run's lease
(:meth:`Journal.lease`), which dies with the process holding it: an ``flock`` on a local
``work`` folder, a lease object on S3 written with conditional puts and renewed by a heartbeat
(:func:`pacs.store.lock`; free :data:`LEASE_TTL_SECONDS` after its holder's last renewal). A
run whose lease is held belongs to a running step of another process: the sweep does not
resume it, and a step that finds it held skips it (its owner finishes it). Two runs at once
therefore end as one would, on one host or several. A lease never silently excludes nobody:
where it could not be exclusive (a store that ignores conditional writes, a protocol without
them) taking it raises :class:`~pacs.errors.LeaseUnsupportedError`, and a store that cannot be
reached or refuses us raises a :class:`~pacs.errors.TierError` rather than passing for "held
elsewhere". What other processes wrote is always read from the store itself, never from a
listing cached by this one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pacs import store
from pacs.dicom.layout import checked_batch_id
from pacs.store import Location

log = logging.getLogger(__name__)

INGEST = "ingest"
LIFECYCLE = "lifecycle"
FIXITY = "fixity"
LOCKS = "locks"
LEASE = "lease"
LEASE_TTL_SECONDS = 120.0  # object-storage leases: renewed every third of this while held


class Step(StrEnum):
    """The steps an ingest batch records, in order."""

    MANIFEST = "manifest.json"
    STAGED = "staged.parquet"
    STORED = "stored.parquet"
    OUTCOME = "outcome.parquet"
    MERGED = "merged"
    DONE = "done"
    ATTEMPTS = "attempts.json"


class LifecycleStep(StrEnum):
    """The steps a lifecycle plan records (plus one ``copied-NNNN.parquet`` per migrate batch)."""

    IMAGES = "images.parquet"  # plan: every image to copy, with its batch
    PLAN = "plan.parquet"      # plan: each study, the rule that selected it, its bytes

    @staticmethod
    def copied(batch_no: int) -> str:
        """migrate: what batch ``batch_no`` copied and verified."""
        return f"copied-{batch_no:04d}.parquet"


class FixityStep(StrEnum):
    """The steps a fixity audit records (plus its per-chunk and per-tier files below)."""

    PLAN = "plan.json"                        # plan: start time and chunks
    ONLINE = "online.parquet"                 # plan: the online files to verify, by chunk
    OFFLINE = "offline.parquet"               # plan: the offline objects due, by chunk
    REENTRY = "reentry-online.parquet"        # repair: what became of each online orphan

    @staticmethod
    def known(tier: str) -> str:
        """plan: every copy the catalogue knows in ``tier`` (for reconciling the listing)."""
        return f"known-{tier}.parquet"

    @staticmethod
    def result(chunk: str) -> str:
        """verify: the findings of one chunk."""
        return f"result-{chunk}.parquet"

    @staticmethod
    def reconciled(tier: str) -> str:
        """reconcile: the orphans of ``tier``'s listing."""
        return f"result-reconcile-{tier}.parquet"


MANIFEST, STAGED, STORED, OUTCOME, MERGED, DONE = (Step.MANIFEST, Step.STAGED, Step.STORED, Step.OUTCOME,
                                                    Step.MERGED, Step.DONE)


def new_batch_ids(n: int, when: dt.datetime) -> list[str]:
    """Sortable, unique batch ids: ``<UTC time>-<random>-<seq>``."""
    stamp = when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
    token = secrets.token_hex(4)
    return [f"{stamp}-{token}-{i:04d}" for i in range(n)]


def run_key(logical_date: dt.date, run_id: str) -> str:
    """The id of a lifecycle plan, recall or fixity audit: its date and a hash of the run id
    (the same Airflow run always gets the same id, so a retried task resumes its run)."""
    return f"{logical_date:%Y%m%d}-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"


def left_to_owner(batch_id: str) -> None:
    """Log that a step skips a batch whose lease another run holds (its owner finishes it)."""
    log.info("batch %s is being worked on by another run; left to it", batch_id)


@dataclass(frozen=True)
class Journal:
    """One workflow's runs under ``work``; see the module docstring."""

    work: Location
    workflow: str = INGEST

    # -- one run's steps ----------------------------------------------------------------------
    def key(self, run: str, name: str) -> str:
        """The key (under ``work``) of step ``name`` of ``run``; the run id is checked first."""
        return f"{self.workflow}/{checked_batch_id(run)}/{name}"

    def path(self, run: str, name: str) -> str:
        return self.work.path(self.key(run, name))

    def has(self, run: str, name: str) -> bool:
        return store.exists(self.work, self.path(run, name))

    def write_json(self, run: str, name: str, obj: Any) -> None:
        store.put(self.work, self.path(run, name), json.dumps(obj, default=str).encode())

    def read_json(self, run: str, name: str) -> Any:
        return json.loads(store.read(self.work, self.path(run, name)))

    def mark(self, run: str, name: str, info: dict[str, Any] | None = None) -> None:
        self.write_json(run, name, info or {})

    def write_table(self, run: str, name: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        store.put(self.work, self.path(run, name), buf.getvalue())

    def read_table(self, run: str, name: str, filters: list[tuple[str, str, Any]] | None = None,
                   columns: list[str] | None = None) -> pa.Table:
        with self.work.fs.open(self.path(run, name), "rb") as f:
            return pq.read_table(f, filters=filters, columns=columns)

    def names(self, run: str) -> list[str]:
        """The steps a run's folder holds, sorted."""
        return store.names(self.work, self.work.path(f"{self.workflow}/{checked_batch_id(run)}"))

    # -- the workflow's own files (the sweep's memory, say) -----------------------------------
    def put_file(self, name: str, data: bytes) -> None:
        store.put(self.work, self.work.path(f"{self.workflow}/{name}"), data)

    def read_file(self, name: str) -> bytes | None:
        try:
            return store.read(self.work, self.work.path(f"{self.workflow}/{name}"))
        except FileNotFoundError:
            return None

    # -- all runs -----------------------------------------------------------------------------
    def runs(self) -> list[str]:
        """Every run in the journal, oldest first."""
        return [n for n in store.names(self.work, self.work.path(self.workflow)) if not n.startswith(".")]

    def open_runs(self) -> list[str]:
        """Ingest batches not yet finalized (their files are still claimed), oldest first."""
        return [b for b in self.runs() if self.has(b, MANIFEST) and not self.has(b, DONE)]

    def manifest_files(self, run: str) -> list[dict[str, Any]]:
        return self.read_json(run, MANIFEST)["files"]

    def claimed_sources(self, runs: list[str]) -> set[str]:
        """The landing URIs the manifests of ``runs`` own."""
        return {f["uri"] for b in runs for f in self.manifest_files(b)}

    def prune_done(self, older_than: dt.timedelta, now: dt.datetime) -> int:
        """Delete finalized runs older than the retention (their outcome stays in the catalogue)."""
        removed = 0
        cutoff = (now - older_than).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
        for b in self.runs():
            if b[:15] < cutoff and self.has(b, DONE):
                store.remove_tree(self.work, self.work.path(f"{self.workflow}/{b}"))
                removed += 1
        return removed

    # -- ownership ----------------------------------------------------------------------------
    def _lock(self, run: str) -> Any:
        owner = f"{socket.gethostname()}:{os.getpid()}"
        return store.lock(self.work, self.path(run, LEASE), owner, LEASE_TTL_SECONDS)

    @contextlib.contextmanager
    def lease(self, run: str, *, wait: float = 0.0) -> Iterator[bool]:
        """Hold a run's lease for the ``with`` block; yields False (and holds nothing) when a
        running step of another process owns it (after waiting up to ``wait`` seconds).

        Raises :class:`~pacs.errors.LeaseUnsupportedError` where a lease could not be exclusive
        and :class:`~pacs.errors.TierError` when the store cannot be asked."""
        held = self._lock(run)
        with store.tier_faults(self.work):  # an unreachable or forbidden store is a fault, never "held elsewhere"
            acquired = held.acquire(wait)
        if not acquired:
            yield False
            return
        try:
            yield True
        finally:
            held.release()

    def is_leased(self, run: str) -> bool:
        """Whether a running step of some process holds the run right now (a probe that leaves
        nothing behind)."""
        with store.tier_faults(self.work):
            return self._lock(run).held_elsewhere()


def ingest(work: Location) -> Journal:
    """The journal of ``pacs_ingest`` (one run per batch)."""
    return Journal(work, INGEST)
