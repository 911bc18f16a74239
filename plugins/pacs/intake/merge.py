"""Merge: the catalogue's single writer takes processed batches in (pool ``pacs_catalogue``).

The merge owns its order: it reads the batches' stored rows from the journal, lets the
catalogue decide duplicates and catalogue-level rejects, places what the decisions require
(late rejects into quarantine, first-received files where a later copy had landed), writes
each batch's outcomes to the journal and applies everything in one transaction. A batch is
marked ``merged`` only after COMMIT; a merge killed before it is redone whole.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pacs import catalogue, journal, store
from pacs.catalogue import sop_index
from pacs.config import Config
from pacs.intake.quarantine import late_quarantine

log = logging.getLogger(__name__)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _place_winners(cfg: Config, rows: pa.Table) -> None:
    """Put first-received files where a later file of the same SOP instance had landed first."""
    for r in rows.to_pylist():
        dst = r["dst_uri"]
        if store.holds(cfg.online, dst, r["sha256"]):
            continue  # placed by an interrupted attempt
        src_loc = cfg.landing[r["landing"]]
        written = store.copy_stream(src_loc.fs, r["source_path"], cfg.online, dst, fsync=cfg.ingest.fsync,
                                    overwrite=True, tag=r["batch_id"])
        if written.sha256 != r["sha256"]:
            raise store.StorageError(f"batch {r['batch_id']} row {r['row_no']}: landing file changed")


def merge_group(cfg: Config, con: Any, staged: pa.Table, *, run_id: str, now: dt.datetime,
                index: sop_index.SopIndex | None = None) -> tuple[catalogue.MergeResult, sop_index.SopIndex | None]:
    """Merge one group of stored rows in one transaction: decide, place, apply, journal, COMMIT.

    Everything the decisions require is placed and every file's outcome is in the journal
    before COMMIT; the batches are marked ``merged`` only after it. ``index`` (the sorted index
    of image_sop) is updated after COMMIT; returns the result and the index to use next.
    """
    j = journal.ingest(cfg.work)
    ids = sorted(set(staged.column("batch_id").to_pylist()))
    token = sop_index.new_token()
    with catalogue.transaction(con):
        decided = catalogue.merge.decide(con, staged, index)
        if decided.late.num_rows:
            catalogue.merge.record_quarantined(con, late_quarantine(cfg, decided.late))
        if decided.winners.num_rows:
            _place_winners(cfg, decided.winners)
            catalogue.merge.record_winners_placed(con)
        outcomes, result = catalogue.merge.apply(con, decided, run_id=run_id, now=now, sop_token=token)
        for b in ids:
            mine = outcomes.filter(pc.equal(outcomes.column("batch_id"), b))
            j.write_table(b, journal.OUTCOME, mine)
    if index is not None:
        index = _index_added(con, index, result, now, token)
    for b in ids:
        j.mark(b, journal.MERGED, result.batches.get(b, {}))
    return result, index


def _index_added(con: Any, index: sop_index.SopIndex, result: catalogue.MergeResult, now: dt.datetime,
                 token: str) -> sop_index.SopIndex | None:
    """The committed rows into the index; a failure only costs the next merge a rebuild (the
    catalogue's token no longer matches the index)."""
    try:
        return index.added(con, result.sop_hashes if result.sop_hashes is not None else np.empty(0, np.uint64),
                           (now - _EPOCH) // dt.timedelta(microseconds=1), token)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("SOP-instance index not updated (%s): the next merge rebuilds it", exc)
        return None


class _Chunks:
    """The chunks of one merge, with the SOP-instance index they share (opened, and checked
    against the catalogue, before the first chunk; updated after each COMMIT)."""

    def __init__(self, cfg: Config, con: Any, total: catalogue.MergeResult, *, run_id: str,
                 now: dt.datetime) -> None:
        self.cfg, self.con, self.total, self.run_id, self.now = cfg, con, total, run_id, now
        self.opened = False
        self.index: sop_index.SopIndex | None = None

    def merge(self, group: list[pa.Table]) -> None:
        """Merge one chunk of batches, then hand the memory of its Arrow tables back to the system
        (pyarrow's allocator keeps freed memory for reuse: a backlog's chunks would each add theirs)."""
        if not self.opened:
            self.index, self.opened = sop_index.open_index(self.con, self.cfg.duckdb), True
        staged = pa.concat_tables(group)
        group.clear()
        result, self.index = merge_group(self.cfg, self.con, staged, run_id=self.run_id, now=self.now,
                                         index=self.index)
        self.total.add(result)
        del staged
        pa.default_memory_pool().release_unused()


def merge_batches(cfg: Config, batch_ids: list[str], *, run_id: str = "manual",
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """Merge processed batches into the catalogue (the single writer). Idempotent."""
    j = journal.ingest(cfg.work)
    now = now or dt.datetime.now(dt.UTC)
    ready = [b for b in batch_ids if j.has(b, journal.STORED)]
    not_ready = sorted(set(batch_ids) - set(ready))
    if not_ready:
        log.warning("%d batch(es) not processed yet; they stay open for the next run", len(not_ready))
    total = catalogue.MergeResult()
    with catalogue.opened(cfg.duckdb) as con:
        done = catalogue.merged_batches(con, ready)
        for b in done:  # committed by an interrupted attempt: only the marker is missing
            if not j.has(b, journal.MERGED):
                j.mark(b, journal.MERGED, catalogue.outcomes_from_catalogue(con, b))
        group: list[pa.Table] = []
        rows = 0
        chunks = _Chunks(cfg, con, total, run_id=run_id, now=now)
        with contextlib.ExitStack() as leases:
            for b in (b for b in ready if b not in done):
                if not leases.enter_context(j.lease(b)):
                    journal.left_to_owner(b)
                    continue
                if j.has(b, journal.MERGED):  # merged by another run meanwhile
                    continue
                group.append(j.read_table(b, journal.STORED))
                rows += group[-1].num_rows
                if rows >= cfg.ingest.merge_chunk_rows:
                    chunks.merge(group)
                    group, rows = [], 0
            if group:
                chunks.merge(group)
    summary = total.as_dict()
    log.info("merge: %s", summary)
    return summary
