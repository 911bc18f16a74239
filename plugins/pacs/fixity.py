"""Fixity audits of both tiers: verify sha256, reconcile listings, repair the online tier.

``pacs_fixity`` (weekly):

1. :func:`plan` (catalogue writer) — every online copy, and a rolling share of offline objects
   (never-verified first, then the longest unverified) so that every offline object is
   re-hashed within ``policy.fixity_offline_weeks`` weeks; lists go to the journal in chunks.
2. :func:`verify_chunk` (parallel) — hash each copy: ``ok``, ``missing`` or ``corrupt``.
   A packed series tar is read once and each member checked at its offset.
3. :func:`reconcile` (parallel, per tier) — list the tier and compare with the catalogue's
   paths: a file nobody catalogued is an ``orphan`` (files newer than the run, or owned by an
   unfinished ingest or migration, are left out: they are not judged yet).
4. :func:`record_and_repair` (catalogue writer) — a missing or corrupt online copy is restored
   from a verified offline copy (and a per-file offline object from a verified online copy);
   findings go to ``fixity_finding``; any missing or corrupt copy (repaired or not) fails the
   run with a message naming the counts, so the Airflow UI and the alert callback show it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from pacs import catalogue, journal, sql, storage, transfer
from pacs.config import Config, Location, load_config
from pacs.policy import load_policy

log = logging.getLogger(__name__)

PREFIX = "fixity"
ONLINE_CHUNK = 20_000
OFFLINE_CHUNK = 2_000
RESULT_SCHEMA = pa.schema([
    ("tier", pa.string()), ("uri", pa.string()), ("sop_instance_uid", pa.string()), ("status", pa.string()),
    ("expected_sha256", pa.string()), ("actual_sha256", pa.string()), ("detail", pa.string()),
    ("repaired", pa.bool_()), ("repair", pa.string()),
])


class FixityError(RuntimeError):
    """Missing or corrupt copies that could not be repaired."""


def _key(fixity_id: str, name: str) -> str:
    return f"{PREFIX}/{fixity_id}/{name}"


def _read(cfg: Config, fixity_id: str, name: str, filters: list[tuple[str, str, Any]] | None = None) -> pa.Table:
    return journal.read_table(cfg.work, fixity_id, name, prefix=PREFIX, filters=filters)


def _exists(cfg: Config, fixity_id: str, name: str) -> bool:
    return journal.has(cfg.work, fixity_id, name, prefix=PREFIX)


def plan(cfg: Config, *, logical_date: dt.date, run_id: str = "manual", now: dt.datetime | None = None
         ) -> dict[str, Any]:
    """Choose what this run verifies and write the lists to the journal (catalogue writer)."""
    now = now or dt.datetime.now(dt.UTC)
    policy = load_policy(cfg)
    fixity_id = f"{logical_date:%Y%m%d}-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"
    with catalogue.opened(cfg.duckdb) as con:
        total_offline = con.execute(
            "SELECT count(DISTINCT offline_uri) FROM image WHERE offline_uri IS NOT NULL").fetchall()[0][0]
        share = math.ceil(total_offline / policy.fixity_offline_weeks) if total_offline else 0
        n_online = catalogue.write_query(con, cfg.work, _key(fixity_id, "online.parquet"),
                                         sql.load("fixity_online"), {"chunk": ONLINE_CHUNK})
        n_offline = catalogue.write_query(con, cfg.work, _key(fixity_id, "offline.parquet"),
                                          sql.load("fixity_offline"), {"chunk": OFFLINE_CHUNK, "share": share})
        for tier in ("online", "offline"):
            catalogue.write_query(con, cfg.work, _key(fixity_id, f"known-{tier}.parquet"),
                                  sql.load("fixity_known"), {"tier": tier})
        con.execute(
            "INSERT INTO fixity_run (fixity_id, run_id, logical_date, online_checked, offline_checked, offline_total, "
            "findings, unresolved, started_at) VALUES ($f, $r, $d, 0, 0, $t, 0, 0, $now) "
            "ON CONFLICT (fixity_id) DO NOTHING",
            {"f": fixity_id, "r": run_id, "d": logical_date, "t": total_offline, "now": now})
    chunks = [f"online-{i}" for i in range(math.ceil(n_online / ONLINE_CHUNK))]
    off = _read(cfg, fixity_id, "offline.parquet")
    chunks += [f"offline-{i}" for i in sorted(set(off.column("chunk_no").to_pylist()))]
    journal.write_json(cfg.work, fixity_id, "plan.json", {"started_at": now.isoformat(), "chunks": chunks},
                       prefix=PREFIX)
    info = {"fixity_id": fixity_id, "online_files": n_online, "offline_objects_due": share,
            "offline_objects_total": total_offline, "offline_rows": n_offline, "chunks": chunks}
    log.info("fixity plan %s: %d online file(s), %d of %d offline object(s) due", fixity_id, n_online, share,
             total_offline)
    return info


def _result(tier: str, row: dict[str, Any], status: str, actual: str | None, detail: str) -> dict[str, Any]:
    return {"tier": tier, "uri": row["uri"], "sop_instance_uid": row["sop_instance_uid"], "status": status,
            "expected_sha256": row["sha256"], "actual_sha256": actual, "detail": detail, "repaired": False,
            "repair": None}


def verify_chunk(cfg: Config, fixity_id: str, chunk: str) -> dict[str, Any]:
    """Hash one chunk of copies; results to the journal (no catalogue access)."""
    tier, _, number = chunk.partition("-")
    name = f"result-{chunk}.parquet"
    if _exists(cfg, fixity_id, name):
        t = _read(cfg, fixity_id, name)
        return {"chunk": chunk, "checked": t.num_rows, "resumed": True}
    rows = _read(cfg, fixity_id, f"{tier}.parquet", filters=[("chunk_no", "=", int(number))]).to_pylist()
    loc = cfg.online if tier == "online" else cfg.offline
    out: list[dict[str, Any]] = []
    if tier == "online":
        for r in rows:
            got = storage.hash_at(loc, loc.path_of_uri(r["uri"]))
            if got is None:
                out.append(_result(tier, r, "missing", None, "the catalogued online file does not exist"))
            elif got != r["sha256"]:
                out.append(_result(tier, r, "corrupt", got, "the online file's sha256 differs from the catalogue"))
            else:
                out.append(_result(tier, r, "ok", got, ""))
    else:
        by_object: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_object.setdefault(r["uri"], []).append(r)
        for uri, members in by_object.items():
            out.extend(_verify_object(loc, uri, members))
    journal.write_table(cfg.work, fixity_id, name, pa.Table.from_pylist(out, schema=RESULT_SCHEMA), prefix=PREFIX)
    bad = sum(1 for r in out if r["status"] != "ok")
    log.info("fixity %s %s: %d checked, %d problem(s)", fixity_id, chunk, len(out), bad)
    return {"chunk": chunk, "checked": len(out), "problems": bad}


def _verify_object(loc: Location, uri: str, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    path = loc.path_of_uri(uri)
    try:
        data = storage.read_local(path) if loc.is_local else loc.fs.cat_file(path)
    except FileNotFoundError:
        return [_result("offline", m, "missing", None, "the catalogued offline object does not exist")
                for m in members]
    out = []
    for m in members:
        if m["offline_offset"] is None:
            part = data
        else:
            part = data[m["offline_offset"]:m["offline_offset"] + m["offline_length"]]
        got = hashlib.sha256(part).hexdigest()
        if got == m["sha256"]:
            out.append(_result("offline", m, "ok", got, ""))
        else:
            where = "" if m["offline_offset"] is None else f" (member at byte {m['offline_offset']})"
            out.append(_result("offline", m, "corrupt", got, f"the offline copy's sha256 differs{where}"))
    return out


def _unjudged(cfg: Config, tier: str) -> set[str]:
    """Paths owned by work in flight (open ingest batches, unfinished migrations)."""
    skip: set[str] = set()
    if tier == "online":
        for b in journal.open_batches(cfg.work):
            if journal.has(cfg.work, b, journal.STORED):
                t = journal.read_table(cfg.work, b, journal.STORED).column("dst_uri").to_pylist()
                skip.update(u for u in t if u)
    return skip


def reconcile(cfg: Config, fixity_id: str, tier: str) -> dict[str, Any]:
    """List a tier and report files the catalogue does not know (orphans)."""
    name = f"result-reconcile-{tier}.parquet"
    if _exists(cfg, fixity_id, name):
        return {"tier": tier, "orphans": _read(cfg, fixity_id, name).num_rows, "resumed": True}
    started = dt.datetime.fromisoformat(journal.read_json(cfg.work, fixity_id, "plan.json", prefix=PREFIX)
                                        ["started_at"])
    loc = cfg.online if tier == "online" else cfg.offline
    listing = []
    cutoff = started.timestamp()
    for path, _size in storage.iter_files(loc):
        try:
            mtime = os.lstat(path).st_mtime if loc.is_local else loc.fs.info(path)["LastModified"].timestamp()
        except (FileNotFoundError, KeyError, AttributeError):
            continue
        if mtime < cutoff:
            listing.append(loc.uri(path))
    skip = _unjudged(cfg, tier)
    con = duckdb.connect()
    try:
        con.register("listing", pa.table({"uri": pa.array(listing, pa.string())}))
        con.register("known", _read(cfg, fixity_id, f"known-{tier}.parquet"))
        orphans = [u for (u,) in con.execute(
            "SELECT l.uri FROM listing l ANTI JOIN known k USING (uri) ORDER BY 1").fetchall() if u not in skip]
    finally:
        con.close()
    rows = [{"tier": tier, "uri": u, "sop_instance_uid": None, "status": "orphan", "expected_sha256": None,
             "actual_sha256": None, "detail": f"a file in the {tier} tier that the catalogue does not know",
             "repaired": False, "repair": None} for u in orphans]
    journal.write_table(cfg.work, fixity_id, name, pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), prefix=PREFIX)
    log.info("fixity %s reconcile %s: %d file(s) listed, %d orphan(s)", fixity_id, tier, len(listing), len(orphans))
    return {"tier": tier, "listed": len(listing), "orphans": len(orphans)}


def _results(cfg: Config, fixity_id: str) -> list[dict[str, Any]]:
    plan_info = journal.read_json(cfg.work, fixity_id, "plan.json", prefix=PREFIX)
    names = [f"result-{c}.parquet" for c in plan_info["chunks"]]
    names += [f"result-reconcile-{t}.parquet" for t in ("online", "offline")]
    rows: list[dict[str, Any]] = []
    for n in names:
        if _exists(cfg, fixity_id, n):
            rows.extend(_read(cfg, fixity_id, n).to_pylist())
    return rows


def _repair(cfg: Config, con: Any, r: dict[str, Any], verified_ok: dict[tuple[str, str], bool]) -> str | None:
    """Restore one bad copy from the other tier's verified copy; returns what was done."""
    rows = con.execute(
        "SELECT i.sha256, i.online_uri, i.offline_uri, i.offline_offset, i.offline_length, s.study_date, "
        "i.study_instance_uid, i.series_instance_uid FROM image i JOIN study s USING (study_instance_uid) "
        "WHERE i.sop_instance_uid = $s", {"s": r["sop_instance_uid"]}).fetchall()
    if not rows:
        return None
    sha, online_uri, offline_uri, offset, length, *_ = rows[0]
    if r["tier"] == "online" and online_uri == r["uri"] and offline_uri:
        try:
            data = transfer.read_verified(cfg.offline, offline_uri, sha, offset, length)
        except (transfer.CorruptCopyError, FileNotFoundError):
            return None
        storage.write(cfg.online, cfg.online.path_of_uri(online_uri), data, sha, fsync=True, overwrite=True)
        if storage.hash_at(cfg.online, cfg.online.path_of_uri(online_uri)) != sha:
            return None
        return "restored from the verified offline copy"
    if r["tier"] == "offline" and offline_uri == r["uri"] and offset is None and online_uri \
            and verified_ok.get(("online", online_uri)):
        data = transfer.read_verified(cfg.online, online_uri, sha)
        path = cfg.offline.path_of_uri(offline_uri)
        if cfg.offline.is_local:
            storage.write_local(path, data, fsync=True, overwrite=True)
        else:
            storage.write_object(cfg.offline, path, data, sha, overwrite=True)
        try:
            transfer.read_verified(cfg.offline, offline_uri, sha)
        except transfer.CorruptCopyError:
            return None
        return "restored from the verified online copy"
    return None


def record_and_repair(cfg: Config, fixity_id: str, *, now: dt.datetime | None = None,
                      fail_on_findings: bool = True) -> dict[str, Any]:
    """Repair what can be repaired, record findings, and fail visibly on what cannot."""
    now = now or dt.datetime.now(dt.UTC)
    results = _results(cfg, fixity_id)
    verified_ok = {(r["tier"], r["uri"]): r["status"] == "ok" for r in results}
    with catalogue.opened(cfg.duckdb) as con:
        for r in results:
            if r["status"] in ("missing", "corrupt"):
                done = _repair(cfg, con, r, verified_ok)
                if done:
                    r["repaired"], r["repair"] = True, done
        con.register("fixity_results", pa.Table.from_pylist(results, schema=RESULT_SCHEMA))
        with catalogue.transaction(con):
            catalogue.run(con, "fixity_record", {"fixity_id": fixity_id, "now": now})
            counts = con.execute(
                "SELECT kind, count(*) FILTER (WHERE repaired_at IS NULL), count(*) FILTER (WHERE repaired_at IS NOT "
                "NULL) FROM fixity_finding WHERE fixity_id = $f GROUP BY kind", {"f": fixity_id}).fetchall()
            online_checked = sum(1 for r in results if r["tier"] == "online" and r["status"] != "orphan")
            offline_objects = len({r["uri"] for r in results if r["tier"] == "offline" and r["status"] != "orphan"})
            unresolved = sum(n for kind, n, _ in counts if kind in ("missing", "corrupt"))
            findings = sum(n + m for _, n, m in counts)
            con.execute(
                "UPDATE fixity_run SET online_checked = $on, offline_checked = $off, findings = $fi, "
                "unresolved = $un, finished_at = $now WHERE fixity_id = $f",
                {"on": online_checked, "off": offline_objects, "fi": findings, "un": unresolved, "now": now,
                 "f": fixity_id})
    by_kind = {kind: {"unresolved": int(n), "repaired": int(m)} for kind, n, m in counts}
    summary = {"fixity_id": fixity_id, "online_checked": online_checked, "offline_objects_checked": offline_objects,
               "findings": by_kind, "unresolved": unresolved}
    log.info("fixity %s: %s", fixity_id, summary)
    damaged = sum(v["unresolved"] + v["repaired"] for k, v in by_kind.items() if k in ("missing", "corrupt"))
    if fail_on_findings and damaged:
        raise FixityError(
            f"fixity {fixity_id}: {damaged} missing or corrupt copy(ies) found — {damaged - unresolved} restored "
            f"from a verified copy in the other tier, {unresolved} NOT repairable ({json.dumps(by_kind)}); "
            "see the fixity_finding table")
    return summary


def run_fixity(cfg: Config, *, logical_date: dt.date, run_id: str = "manual",
               fail_on_findings: bool = True) -> dict[str, Any]:
    """The whole audit in this process (CLI, tests); the DAG runs the same steps as tasks."""
    p = plan(cfg, logical_date=logical_date, run_id=run_id)
    for chunk in p["chunks"]:
        verify_chunk(cfg, p["fixity_id"], chunk)
    for tier in ("online", "offline"):
        reconcile(cfg, p["fixity_id"], tier)
    return record_and_repair(cfg, p["fixity_id"], fail_on_findings=fail_on_findings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pacs fixity", description="verify both tiers and repair online copies")
    parser.add_argument("--config")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    day = args.date or dt.datetime.now(dt.UTC).date()
    try:
        out = run_fixity(cfg, logical_date=day, run_id=f"cli-{dt.datetime.now(dt.UTC).isoformat()}")
    except FixityError as exc:
        print(str(exc))
        return 1
    print(json.dumps(out, indent=1, default=str))
    return 0

