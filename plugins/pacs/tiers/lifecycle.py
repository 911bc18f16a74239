"""Hierarchical storage management: plan, migrate online → offline, switch, purge (``pacs_lifecycle``).

``pacs_lifecycle`` runs, at the run's logical date:

1. :func:`plan` (catalogue writer) — the studies the policy sends offline (retention by study
   date or received date, per-modality overrides, hold list, recall pins, capacity
   watermarks), each with its bytes and the rule that selected it, in ``lifecycle_plan`` and
   in the journal (``<work>/lifecycle/<plan_id>/``). ``dry_run`` stops here.
2. :func:`migrate_batch` (parallel, no catalogue access) — copies each planned image to the
   offline tier (per file, or one tar per series when the policy packs) and verifies it
   (S3 SHA-256 checksum or read-back); results go to the journal.
3. :func:`switch_and_purge` (catalogue writer) — a study switches to its offline copies only
   when *every* planned image has a verified offline copy; only then are online copies deleted
   (never a pinned study's), and the catalogue forgets them.

With the policy's ``approve_plan``, ``pacs_lifecycle`` waits after the plan for a person's
answer; :func:`reject_plan` (catalogue writer) records a rejection, and nothing of the plan moves.

Killed anywhere and re-run, the next plan picks up what is left: copies already verified are
not redone, switched images are purged, nothing is deleted without a verified offline copy.
Recall (:mod:`pacs.tiers.recall`) brings studies back online and pins them.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import hashlib
import json
import logging
import math
from typing import Any

import pyarrow as pa

from pacs import catalogue, journal, store
from pacs.catalogue import sql
from pacs.config import Config
from pacs.dicom.layout import image_key, series_pack_key
from pacs.store import transfer
from pacs.tiers.policy import Policy

log = logging.getLogger(__name__)

PREFIX = journal.LIFECYCLE
BATCH_BYTES = 2 * 1024**3        # about this much per migrate task
MAX_BATCHES = 256                # mapped tasks per run
CHUNK_BYTES = 64 * 1024**2       # bytes in flight per put round
PACK_BYTES = 256 * 1024**2       # a series larger than this is packed in several tars


def _journal(cfg: Config) -> journal.Journal:
    return journal.Journal(cfg.work, journal.LIFECYCLE)


def _key(plan_id: str, name: str) -> str:
    return f"{PREFIX}/{plan_id}/{name}"


def _register_policy(con: Any, policy: Policy) -> None:
    con.register("overrides", pa.table({"modality": pa.array(list(policy.modality_overrides), pa.string()),
                                        "years": pa.array(list(policy.modality_overrides.values()), pa.float64())}))
    con.register("hold_patients", pa.table({"patient_id": pa.array(sorted(policy.hold_patients), pa.string())}))
    con.register("hold_studies", pa.table({"study_instance_uid": pa.array(sorted(policy.hold_studies),
                                                                          pa.string())}))


def plan(cfg: Config, *, logical_date: dt.date, run_id: str = "manual", dry_run: bool = False,
         policy: Policy | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Decide what moves offline at ``logical_date`` and record the plan (catalogue writer)."""
    policy = policy or cfg.policy
    now = now or dt.datetime.now(dt.UTC)
    plan_id = journal.run_key(logical_date, run_id) + ("-dry" if dry_run else "")
    high = low = None
    if policy.high_watermark is not None and policy.online_capacity_bytes:
        high = int(policy.high_watermark * policy.online_capacity_bytes)
        low = int((policy.low_watermark or policy.high_watermark) * policy.online_capacity_bytes)
    params = {"logical_date": logical_date, "default_years": policy.online_retention_years,
              "age_basis": policy.age_basis, "high_bytes": high, "low_bytes": low,
              "plan_id": plan_id, "now": now, "state": "dry_run" if dry_run else "planned",
              "archive_all": policy.offline_copy == "immediate"}
    with catalogue.opened(cfg.duckdb) as con:
        catalogue.set_memory_limit(con, "300MB")
        existing = con.execute("SELECT count(*) FROM lifecycle_run WHERE plan_id = $p", {"p": plan_id}).fetchall()
        _register_policy(con, policy)
        with catalogue.transaction(con):
            if not existing[0][0]:
                catalogue.run(con, "lifecycle_candidates", params)
                studies, images, nbytes = con.execute(
                    "SELECT count(*), coalesce(sum(images), 0), coalesce(sum(bytes), 0) FROM lifecycle_selected"
                ).fetchall()[0]
                batches = max(1, min(MAX_BATCHES, max(math.ceil(nbytes / BATCH_BYTES),
                                                      math.ceil(studies / policy.migrate_batch_studies))))
                batches = min(batches, max(studies, 1))
                catalogue.run(con, "lifecycle_plan_insert", {**params, "batches": batches})
                if not dry_run:
                    catalogue.run(con, "aggregates", params)
                    catalogue.run(con, "lifecycle_study_state", params)
                online_before = con.execute(
                    "SELECT coalesce(sum(size_bytes), 0) FROM image WHERE online_uri IS NOT NULL").fetchall()[0][0]
                con.execute(
                    "INSERT INTO lifecycle_run (plan_id, run_id, logical_date, dry_run, policy, studies, images, "
                    "bytes, online_bytes_before, state, planned_at) VALUES ($p, $r, $d, $dry, $pol, $s, $i, $b, "
                    "$o, 'planned', $now)",
                    {"p": plan_id, "r": run_id, "d": logical_date, "dry": dry_run,
                     "pol": json.dumps(policy.as_dict()), "s": studies, "i": images, "b": nbytes,
                     "o": online_before, "now": now})
        by_rule = {r: {"studies": int(s), "images": int(i), "bytes": int(b)} for r, s, i, b in con.execute(
            "SELECT rule, count(*), sum(images), sum(bytes) FROM lifecycle_plan WHERE plan_id = $p "
            "GROUP BY rule ORDER BY rule", {"p": plan_id}).fetchall()}
        studies, images, nbytes, nbatches = con.execute(
            "SELECT count(*), coalesce(sum(images), 0), coalesce(sum(bytes), 0), coalesce(max(batch_no) + 1, 0) "
            "FROM lifecycle_plan WHERE plan_id = $p", {"p": plan_id}).fetchall()[0]
        if not dry_run and not _journal(cfg).has(plan_id, journal.LifecycleStep.IMAGES):
            catalogue.write_query(con, cfg.work, _key(plan_id, journal.LifecycleStep.IMAGES),
                                  sql.load("lifecycle_plan_images"), {"plan_id": plan_id})
        catalogue.write_query(con, cfg.work, _key(plan_id, journal.LifecycleStep.PLAN),
                              "SELECT * FROM lifecycle_plan WHERE plan_id = $plan_id ORDER BY batch_no, age_date",
                              {"plan_id": plan_id})
    summary = {"plan_id": plan_id, "logical_date": logical_date.isoformat(), "dry_run": dry_run,
               "studies": int(studies), "images": int(images), "bytes": int(nbytes), "by_rule": by_rule,
               "batches": list(range(int(nbatches))) if not dry_run else [],
               "plan_file": cfg.work.uri(cfg.work.path(_key(plan_id, journal.LifecycleStep.PLAN)))}
    log.info("lifecycle plan %s: %d studies, %d images, %.2f GB; studies by rule %s", plan_id, studies, images,
             nbytes / 1e9, {k: v["studies"] for k, v in by_rule.items()})
    return summary


_COPIED_SCHEMA = pa.schema([
    ("sop_instance_uid", pa.string()), ("offline_uri", pa.string()), ("offline_offset", pa.int64()),
    ("offline_length", pa.int64()), ("verified_at", pa.timestamp("us", tz="UTC")), ("method", pa.string()),
])


def migrate_batch(cfg: Config, plan_id: str, batch_no: int, *, policy: Policy | None = None) -> dict[str, Any]:
    """Copy one batch of planned images offline and verify them (no catalogue access)."""
    j = _journal(cfg)
    policy = policy or cfg.policy
    done = journal.LifecycleStep.copied(batch_no)
    if j.has(plan_id, done):
        t = j.read_table(plan_id, done)
        return {"batch": batch_no, "files": t.num_rows, "resumed": True}
    rows = j.read_table(plan_id, journal.LifecycleStep.IMAGES, filters=[("batch_no", "=", batch_no)]).to_pylist()
    todo = [r for r in rows if not (r["offline_uri"] and r["offline_verified_at"])]
    out: list[dict[str, Any]] = []
    moved_bytes = 0
    if policy.packing:
        by_series: dict[str, list[dict[str, Any]]] = {}
        for r in todo:
            by_series.setdefault(r["series_instance_uid"], []).append(r)
        for members in by_series.values():
            out.extend(_pack_series(cfg, members, policy))
            moved_bytes += sum(m["size_bytes"] for m in members)
    else:
        chunk: list[dict[str, Any]] = []
        size = 0
        for r in todo:
            chunk.append(r)
            size += r["size_bytes"]
            if size >= CHUNK_BYTES:
                out.extend(_copy_files(cfg, chunk, policy))
                moved_bytes += size
                chunk, size = [], 0
        out.extend(_copy_files(cfg, chunk, policy))
        moved_bytes += size
    table = pa.Table.from_pylist(out, schema=_COPIED_SCHEMA)
    j.write_table(plan_id, done, table)
    log.info("migrate %s batch %d: %d file(s) copied and verified, %.1f MB", plan_id, batch_no, len(out),
             moved_bytes / 1e6)
    return {"batch": batch_no, "files": len(out), "bytes": moved_bytes, "already_offline": len(rows) - len(todo)}


def _read_online(cfg: Config, rows: list[dict[str, Any]]) -> list[bytes]:
    def one(r: dict[str, Any]) -> bytes:
        return transfer.read_verified(cfg.online, r["online_uri"], r["sha256"])

    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, rows))


def _copy_files(cfg: Config, rows: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    if not rows:
        return []
    datas = _read_online(cfg, rows)
    puts = []
    for r, data in zip(rows, datas, strict=True):
        key = image_key(r["study_date"], r["study_instance_uid"], r["series_instance_uid"], r["sop_instance_uid"])
        puts.append(transfer.Put(cfg.offline.path(key), data, r["sha256"]))
    methods = transfer.put_objects(cfg.offline, puts, verify=policy.verify)
    now = dt.datetime.now(dt.UTC)
    return [{"sop_instance_uid": r["sop_instance_uid"], "offline_uri": cfg.offline.uri(p.path),
             "offline_offset": None, "offline_length": None, "verified_at": now, "method": m}
            for r, p, m in zip(rows, puts, methods, strict=True)]


def _pack_series(cfg: Config, members: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    members = sorted(members, key=lambda r: r["sop_instance_uid"])
    groups: list[list[dict[str, Any]]] = [[]]
    size = 0
    for m in members:
        if groups[-1] and size + m["size_bytes"] > PACK_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(m)
        size += m["size_bytes"]
    out: list[dict[str, Any]] = []
    for group in groups:
        datas = _read_online(cfg, group)
        packed = transfer.pack(zip((m["sop_instance_uid"] for m in group), datas, strict=True))
        pack_id = hashlib.sha256("\n".join(m["sop_instance_uid"] for m in group).encode()).hexdigest()[:16]
        first = group[0]
        key = series_pack_key(first["study_date"], first["study_instance_uid"], first["series_instance_uid"], pack_id)
        (method,) = transfer.put_objects(cfg.offline, [transfer.Put(cfg.offline.path(key), packed.data,
                                                                    packed.sha256)], verify=policy.verify)
        now = dt.datetime.now(dt.UTC)
        uri = cfg.offline.uri(cfg.offline.path(key))
        for m in group:
            offset, length = packed.members[m["sop_instance_uid"]]
            out.append({"sop_instance_uid": m["sop_instance_uid"], "offline_uri": uri, "offline_offset": offset,
                        "offline_length": length, "verified_at": now, "method": f"pack-{method}"})
    return out


def _copied_table(cfg: Config, plan_id: str) -> pa.Table:
    """What every finished migrate batch of a plan copied and verified."""
    j = _journal(cfg)
    tables = [j.read_table(plan_id, n) for n in j.names(plan_id) if n.startswith("copied-") and n.endswith(".parquet")]
    return pa.concat_tables(tables) if tables else _COPIED_SCHEMA.empty_table()


def switch_and_purge(cfg: Config, plan_id: str | None, *, logical_date: dt.date,
                     now: dt.datetime | None = None) -> dict[str, Any]:
    """Switch fully copied studies to offline, then delete their online copies (catalogue writer)."""
    j = _journal(cfg)
    now = now or dt.datetime.now(dt.UTC)
    params = {"plan_id": plan_id, "now": now, "logical_date": logical_date}
    moved: dict[str, Any] = {}
    with catalogue.opened(cfg.duckdb) as con:
        if plan_id and j.has(plan_id, journal.LifecycleStep.IMAGES):
            planned = j.read_table(plan_id, journal.LifecycleStep.IMAGES,
                                   columns=["sop_instance_uid", "study_instance_uid"])
            con.register("planned_images", planned)
            con.register("copied", _copied_table(cfg, plan_id))
            with catalogue.transaction(con):
                catalogue.run_all(con, ("lifecycle_switch", "aggregates", "lifecycle_study_state"), params)
        purge = con.sql(sql.load("lifecycle_purge_list"), params={"logical_date": logical_date}).to_arrow_table()
        deleted = []
        for r in purge.to_pylist():
            store.remove(cfg.online, r["online_uri"])
            deleted.append(r)
        if deleted:
            con.register("purged", pa.Table.from_pylist(deleted).select(["sop_instance_uid", "study_instance_uid"]))
            with catalogue.transaction(con):
                catalogue.run_all(con, ("lifecycle_purge_apply", "aggregates", "lifecycle_study_state"), params)
        if plan_id:
            rows = con.execute(
                "SELECT rule, count(*), coalesce(sum(images), 0), coalesce(sum(bytes), 0) FROM lifecycle_plan "
                "WHERE plan_id = $p AND state = 'moved' GROUP BY rule ORDER BY rule", {"p": plan_id}).fetchall()
            moved = {r: {"studies": int(s), "images": int(i), "bytes": int(b)} for r, s, i, b in rows}
            left = con.execute("SELECT count(*) FROM lifecycle_plan WHERE plan_id = $p AND state = 'planned'",
                               {"p": plan_id}).fetchall()[0][0]
            con.execute(
                "UPDATE lifecycle_run SET state = $s, finished_at = $now, studies_moved = $sm, images_moved = $im, "
                "bytes_moved = $bm WHERE plan_id = $p",
                {"s": "partial" if left else "done", "now": now, "p": plan_id,
                 "sm": sum(v["studies"] for v in moved.values()), "im": sum(v["images"] for v in moved.values()),
                 "bm": sum(v["bytes"] for v in moved.values())})
        else:
            left = 0
        snapshot = catalogue.refresh_snapshot(con, cfg.parquet)  # analysts see the new tiers at once
    evicted = {k: v for k, v in moved.items() if k != "archive_copy"}
    summary = {"plan_id": plan_id,
               "studies_moved_offline": sum(v["studies"] for v in evicted.values()),
               "images_moved_offline": sum(v["images"] for v in evicted.values()),
               "bytes_moved_offline": sum(v["bytes"] for v in evicted.values()),
               "studies_archive_copied": moved.get("archive_copy", {}).get("studies", 0),
               "bytes_archive_copied": moved.get("archive_copy", {}).get("bytes", 0),
               "by_rule": moved, "online_copies_deleted": len(deleted),
               "online_bytes_freed": sum(r["size_bytes"] for r in deleted), "studies_left_migrating": int(left),
               "snapshot_files_written": snapshot["written"]}
    log.info("lifecycle switch: %s", summary)
    return summary


def reject_plan(cfg: Config, plan_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Record that the plan's approver rejected it (catalogue writer): nothing of it moves.

    Its studies leave the plan and get back the tier state their copies give them (a study the
    plan marked ``migrating`` is ``online`` again); the run is recorded as ``rejected``. Nothing
    was copied (migrate runs only after an approval), so nothing is deleted. Run twice, the
    second run finds nothing left to reject.
    """
    now = now or dt.datetime.now(dt.UTC)
    params = {"plan_id": plan_id, "now": now}
    with catalogue.opened(cfg.duckdb) as con:
        with catalogue.transaction(con):
            studies = con.execute("SELECT count(*) FROM lifecycle_plan WHERE plan_id = $p AND state = 'planned'",
                                  {"p": plan_id}).fetchall()[0][0]
            catalogue.run_all(con, ("lifecycle_reject", "lifecycle_study_state"), params)
        snapshot = catalogue.refresh_snapshot(con, cfg.parquet)
    log.info("lifecycle plan %s rejected: %d studies stay as they are", plan_id, studies)
    return {"plan_id": plan_id, "rejected": True, "studies_released": int(studies),
            "snapshot_files_written": snapshot["written"]}


def run_lifecycle(cfg: Config, *, logical_date: dt.date, run_id: str = "manual", dry_run: bool = False,
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """The whole lifecycle in this process (CLI, tests); the DAG runs the same steps as tasks."""
    policy = cfg.policy
    p = plan(cfg, logical_date=logical_date, run_id=run_id, dry_run=dry_run, policy=policy, now=now)
    if dry_run:
        return {"plan": p}
    for b in p["batches"]:
        migrate_batch(cfg, p["plan_id"], b, policy=policy)
    return {"plan": p, "switch": switch_and_purge(cfg, p["plan_id"], logical_date=logical_date, now=now)}
