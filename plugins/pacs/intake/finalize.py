"""Finalize: remove landing files whose outcome is committed, and copies the merge did not keep.

A landing file is deleted only after its batch is merged and only while it is still the file
the sweep saw (on object storage: the same size and ETag, asked of the store at that moment); a
copy of ours is deleted only while the catalogue does not refer to it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from pacs import catalogue, journal, store
from pacs.config import Config
from pacs.intake.staged import Status

log = logging.getLogger(__name__)


def _referenced(con: Any, uri: str) -> bool:
    rows = con.execute("SELECT count(*) FROM image WHERE online_uri = $u", {"u": uri}).fetchall()
    return bool(rows[0][0])


def finalize_batch(cfg: Config, batch_id: str, con: Any = None) -> dict[str, Any]:
    """Delete the landing files of a merged batch, and our own copies the merge did not keep.

    A copy is deleted only if the catalogue (``con``, the writer's connection) still does not
    refer to its path: a recall may have adopted it since the merge.
    """
    with journal.ingest(cfg.work).lease(batch_id) as held:
        if not held:
            return {"batch_id": batch_id, "state": "owned by another run"}
        return _finalize_owned(cfg, batch_id, con)


def _finalize_owned(cfg: Config, batch_id: str, con: Any) -> dict[str, Any]:
    j = journal.ingest(cfg.work)
    if j.has(batch_id, journal.DONE):
        return j.read_json(batch_id, journal.DONE)
    if not j.has(batch_id, journal.MERGED):
        return {"batch_id": batch_id, "state": "not merged"}
    outcomes = j.read_table(batch_id, journal.OUTCOME).to_pylist()
    seen = {f["row"]: f for f in j.manifest_files(batch_id)}
    removed = kept = dropped = not_permitted = 0
    for r in outcomes:
        if r["outcome"] == Status.DEFERRED:
            kept += 1
            continue
        swept = seen[r["row_no"]]
        loc = cfg.landing[swept["landing"]]
        if store.still_same(loc, r["source_path"], r["source_size"], r["source_mtime_ns"], swept.get("etag")):
            try:
                store.remove(loc, r["source_path"])
                removed += 1
            except PermissionError:  # e.g. another user's file in a sticky landing folder
                not_permitted += 1
        if r.get("delete_dst") and not (con is not None and _referenced(con, r["dst_uri"])) \
                and store.remove(cfg.online, r["dst_uri"]):
            dropped += 1
    if not_permitted:
        log.warning("batch %s: %d landing file(s) are stored and catalogued but could not be removed from landing "
                    "(not permitted): give the ingest user the right to delete in the landing folders",
                    batch_id, not_permitted)
    info = {"batch_id": batch_id, "landing_removed": removed, "left_in_landing": kept,
            "uncatalogued_copies_removed": dropped, "landing_not_removable": not_permitted}
    j.mark(batch_id, journal.DONE, info)
    return info


def finalize_batches(cfg: Config, batch_ids: list[str]) -> dict[str, int]:
    """Finalize merged batches (runs in the catalogue writer's pool: it checks the catalogue)."""
    totals: Counter[str] = Counter()
    pending = [b for b in batch_ids if not journal.ingest(cfg.work).has(b, journal.DONE)]
    if not pending:
        return {}
    with catalogue.opened(cfg.duckdb) as con:
        infos = [finalize_batch(cfg, b, con) for b in pending]
    for info in infos:
        for k in ("landing_removed", "left_in_landing", "uncatalogued_copies_removed", "landing_not_removable"):
            totals[k] += int(info.get(k, 0))
    log.info("finalize: %s", dict(totals))
    return dict(totals)
