"""The landing folders and the sweep: claim settled files into batch manifests (first step of ``pacs_ingest``).

The sweep lists every landing location, takes files unchanged for ``settle_seconds`` that no
open batch owns, and writes batch manifests to the journal (streaming: bounded memory for any
backlog). Open batches of earlier, interrupted runs are resumed first; a batch whose lease is
held belongs to a running step of another run and is left to it. Links are never followed
out of a landing root. A landing location that does not exist is warned about (the sweep finds
nothing there), and what the sweep saw — files waiting to settle, missing locations — is kept
for ``pacs summary`` (:func:`landing_state`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pacs import journal, store
from pacs.config import Config
from pacs.intake.quarantine import RESUBMIT_FOLDER
from pacs.store import Location

log = logging.getLogger(__name__)

JOURNAL_RETENTION = dt.timedelta(days=7)


def walk_landing(loc: Location, cfg: Config) -> Iterator[dict[str, Any]]:
    """Every file of one landing location (links reported, never followed out of it)."""
    return store.scan(loc, cfg.ingest.ignored)


@contextlib.contextmanager
def sweep_lock(work: Location, timeout: float = 600.0) -> Iterator[None]:
    """One sweep at a time (a DAG run and a ``pacs ingest`` must not claim the same file twice):
    the ``locks`` journal's lease on ``sweep``, waited for up to ``timeout`` seconds."""
    with journal.Journal(work, journal.LOCKS).lease("sweep", wait=timeout) as held:
        if not held:
            raise store.TierError(errno.EBUSY, f"another sweep has held the journal at {store.where(work)} for "
                                               f"{timeout:.0f}s; re-run once it has finished")
        yield


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
    missing_landing: list[str] = field(default_factory=list)  # landing locations that do not exist

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _read_json(work: Location, name: str) -> dict[str, Any]:
    """A sweep's own file in the ingest journal (``{}`` when there is none yet)."""
    data = journal.ingest(work).read_file(name)
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}


def _write_json(work: Location, name: str, obj: Any) -> None:
    journal.ingest(work).put_file(name, json.dumps(obj).encode())


def last_sweep(cfg: Config) -> dict[str, Any]:
    """The counts of the most recent sweep (waiting and future-dated files included), the landing
    locations it found missing and when it ran (``swept_at``); ``{}`` before the first sweep."""
    return _read_json(cfg.work, LAST_SWEEP)


def nothing_to_take(last: dict[str, Any]) -> str:
    """One line for a sweep that took nothing (from :func:`last_sweep`): why the run ends there."""
    parts = [f"{int(last.get('waiting', 0))} file(s) still settling"]
    if last.get("future_dated"):
        parts.append(f"{int(last['future_dated'])} with a modification time in the future")
    if last.get("missing_landing"):
        parts.append("missing landing: " + ", ".join(map(str, last["missing_landing"])))
    return "nothing to take in landing and no open batch (" + "; ".join(parts) + ")"


def missing_landing(cfg: Config) -> list[Location]:
    """The landing locations that do not exist (a folder not created or mistyped, a bucket not
    there): the sweep finds nothing in them, so ``pacs ingest`` and ``pacs summary`` warn and
    ``pacs check`` fails."""
    return [loc for loc in cfg.landing if not store.root_exists(loc)]


def missing_text(cfg: Config, loc: Location) -> str:
    """One line for a landing location that does not exist: what, where, how to fix."""
    return (f"{loc.name} at {store.where(loc)} does not exist, so nothing there is taken in: create it, "
            f"or correct 'landing' in {cfg.path}")


def landing_state(cfg: Config) -> dict[str, Any]:
    """What waits in landing, for ``pacs summary``: the last sweep's count of files waiting to
    settle (and of those with a modification time in the future), when it ran, and the landing
    locations that do not exist now (counts and locations only)."""
    last = last_sweep(cfg)
    return {"waiting": int(last.get("waiting", 0)), "future_dated": int(last.get("future_dated", 0)),
            "swept_at": last.get("swept_at"), "settle_seconds": cfg.settle_seconds,
            "missing": [store.where(loc) for loc in missing_landing(cfg)]}


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
    with sweep_lock(cfg.work):
        ids, _stats = sweep_files(cfg, run_id=run_id, now=now, limit=limit)
    return ids


def _settled_files(cfg: Config, claimed: set[str], settling: _Settling) -> Iterator[dict[str, Any]]:
    """Landing files no open batch claims that have settled, in landing order."""
    # Re-submitted files are published atomically by pacs itself: no need to wait for them.
    resubmitted = cfg.landing[0].path(RESUBMIT_FOLDER)
    for index, loc in enumerate(cfg.landing):
        for f in walk_landing(loc, cfg):
            uri = loc.uri(f["path"])
            if uri in claimed:
                continue
            ours = index == 0 and loc.is_within(f["path"], resubmitted)
            if ours or settling.settled(uri, f["size"], f["mtime_ns"]):
                yield {**f, "uri": uri, "landing": index}


def _write_manifests(cfg: Config, files: Iterator[dict[str, Any]], *, run_id: str, now: dt.datetime,
                     limit: int) -> tuple[list[str], int]:
    """Batch manifests of at most ``batch_size`` files, ``limit`` files in all (streamed); returns
    the new batch ids and the number of files they hold."""
    j = journal.ingest(cfg.work)
    ids = iter(journal.new_batch_ids(limit // cfg.ingest.batch_size + 2, now))
    written: list[str] = []
    current: list[dict[str, Any]] = []
    taken = 0
    for taken, f in enumerate(files, start=1):
        current.append({**f, "row": len(current)})
        if len(current) >= cfg.ingest.batch_size or taken >= limit:
            written.append(next(ids))
            j.write_json(written[-1], journal.MANIFEST, {"batch_id": written[-1], "run_id": run_id,
                                                         "created_at": now.isoformat(), "files": current})
            current = []
        if taken >= limit:
            break
    if current:
        written.append(next(ids))
        j.write_json(written[-1], journal.MANIFEST, {"batch_id": written[-1], "run_id": run_id,
                                                     "created_at": now.isoformat(), "files": current})
    return written, taken


def sweep_files(cfg: Config, *, run_id: str, now: dt.datetime | None, limit: int | None
                ) -> tuple[list[str], SweepStats]:
    """Claim settled files into new batches (the caller holds :func:`sweep_lock`); returns the open
    batches to resume followed by the new ones, and what the sweep saw."""
    now = now or dt.datetime.now(dt.UTC)
    j = journal.ingest(cfg.work)
    stats = SweepStats()
    for loc in missing_landing(cfg):
        stats.missing_landing.append(store.where(loc))
        log.warning("%s", missing_text(cfg, loc))
    open_ids = j.open_runs()
    # A batch whose lease is held belongs to a running step of another run: not ours to resume.
    resumed = [b for b in open_ids if not j.is_leased(b)]
    stats.resumed, stats.owned_elsewhere = len(resumed), len(open_ids) - len(resumed)
    claimed = j.claimed_sources(open_ids)
    j.prune_done(JOURNAL_RETENTION, now)
    settling = _Settling(cfg.work, cfg.settle_seconds)
    new_ids, stats.taken = _write_manifests(cfg, _settled_files(cfg, claimed, settling), run_id=run_id, now=now,
                               limit=limit or cfg.ingest.max_files_per_run)
    stats.batches, stats.waiting, stats.future_dated = len(new_ids), settling.waiting, settling.future
    if settling.settle_ns:
        _write_json(cfg.work, SEEN, settling.still)
    _write_json(cfg.work, LAST_SWEEP, {**stats.as_dict(), "swept_at": now.isoformat()})
    log.info("sweep: %d new file(s) in %d batch(es), %d open batch(es) resumed, %d left to the runs working "
             "on them, %d file(s) waiting to settle (%d with a modification time in the future)",
             stats.taken, stats.batches, stats.resumed, stats.owned_elsewhere, stats.waiting, stats.future_dated)
    if stats.future_dated:
        log.warning("%d landing file(s) carry a modification time in the future (clock skew?); they are taken "
                    "once unchanged for %ds as seen by this sweeper", stats.future_dated, cfg.settle_seconds)
    return resumed + new_ids, stats
