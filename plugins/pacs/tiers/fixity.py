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
   an online orphan is re-entered into intake (see below); findings go to ``fixity_finding``;
   any missing or corrupt copy (repaired or not) fails the run with a message naming the
   counts, so the Airflow UI and the alert callback show it.

Orphans come home: an online file the catalogue does not know (an ingest that crashed or raced
after publishing it) is moved, with verified bytes, into the first landing location under
``resubmitted/orphans/<fixity_id>/<its online key>``, where the next ingest takes it at once and
judges it like any arrival — catalogued, counted as a duplicate, or quarantined with its reason.
The move re-checks at the moment of acting that the file is still an orphan (the writer's
catalogue does not reference it, no unfinished ingest batch owns it, it has not changed since
the listing); one that cannot be moved stays a finding with the reason. Offline orphans are
reported only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
from typing import Any

import duckdb
import pyarrow as pa

from pacs import catalogue, journal, store
from pacs.catalogue import sql
from pacs.catalogue.backup import BACKUP_PREFIX
from pacs.config import Config
from pacs.errors import FixityError
from pacs.intake.quarantine import RESUBMIT_FOLDER
from pacs.store import Location, transfer

log = logging.getLogger(__name__)

PREFIX = journal.FIXITY
ORPHAN_FOLDER = "orphans"          # under <landing[0]>/resubmitted/
REENTERED = "reentered_intake"     # fixity_finding.repair of an orphan sent back through intake
REENTRY = journal.FixityStep.REENTRY  # what the repair step did with online orphans
ONLINE_CHUNK = 20_000
OFFLINE_CHUNK = 2_000
RESULT_SCHEMA = pa.schema([
    ("tier", pa.string()), ("uri", pa.string()), ("sop_instance_uid", pa.string()), ("status", pa.string()),
    ("expected_sha256", pa.string()), ("actual_sha256", pa.string()), ("detail", pa.string()),
    ("repaired", pa.bool_()), ("repair", pa.string()),
])


def _journal(cfg: Config) -> journal.Journal:
    return journal.Journal(cfg.work, journal.FIXITY)


def _key(fixity_id: str, name: str) -> str:
    return f"{PREFIX}/{fixity_id}/{name}"


def _read(cfg: Config, fixity_id: str, name: str, filters: list[tuple[str, str, Any]] | None = None) -> pa.Table:
    return _journal(cfg).read_table(fixity_id, name, filters=filters)


def _exists(cfg: Config, fixity_id: str, name: str) -> bool:
    return _journal(cfg).has(fixity_id, name)


def plan(cfg: Config, *, logical_date: dt.date, run_id: str = "manual", now: dt.datetime | None = None
         ) -> dict[str, Any]:
    """Choose what this run verifies and write the lists to the journal (catalogue writer)."""
    now = now or dt.datetime.now(dt.UTC)
    policy = cfg.policy
    fixity_id = journal.run_key(logical_date, run_id)
    with catalogue.opened(cfg.duckdb) as con:
        total_offline = con.execute(
            "SELECT count(DISTINCT offline_uri) FROM image WHERE offline_uri IS NOT NULL").fetchall()[0][0]
        share = math.ceil(total_offline / policy.fixity_offline_weeks) if total_offline else 0
        n_online = catalogue.write_query(con, cfg.work, _key(fixity_id, journal.FixityStep.ONLINE),
                                         sql.load("fixity_online"), {"chunk": ONLINE_CHUNK})
        n_offline = catalogue.write_query(con, cfg.work, _key(fixity_id, journal.FixityStep.OFFLINE),
                                          sql.load("fixity_offline"), {"chunk": OFFLINE_CHUNK, "share": share})
        for tier in ("online", "offline"):
            catalogue.write_query(con, cfg.work, _key(fixity_id, journal.FixityStep.known(tier)),
                                  sql.load("fixity_known"), {"tier": tier})
        con.execute(
            "INSERT INTO fixity_run (fixity_id, run_id, logical_date, online_checked, offline_checked, offline_total, "
            "findings, unresolved, started_at) VALUES ($f, $r, $d, 0, 0, $t, 0, 0, $now) "
            "ON CONFLICT (fixity_id) DO NOTHING",
            {"f": fixity_id, "r": run_id, "d": logical_date, "t": total_offline, "now": now})
    chunks = [f"online-{i}" for i in range(math.ceil(n_online / ONLINE_CHUNK))]
    off = _read(cfg, fixity_id, journal.FixityStep.OFFLINE)
    chunks += [f"offline-{i}" for i in sorted(set(off.column("chunk_no").to_pylist()))]
    _journal(cfg).write_json(fixity_id, journal.FixityStep.PLAN, {"started_at": now.isoformat(), "chunks": chunks})
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
    name = journal.FixityStep.result(chunk)
    if _exists(cfg, fixity_id, name):
        t = _read(cfg, fixity_id, name)
        return {"chunk": chunk, "checked": t.num_rows, "resumed": True}
    listing = journal.FixityStep.ONLINE if tier == "online" else journal.FixityStep.OFFLINE
    rows = _read(cfg, fixity_id, listing, filters=[("chunk_no", "=", int(number))]).to_pylist()
    loc = cfg.online if tier == "online" else cfg.offline
    out: list[dict[str, Any]] = []
    if tier == "online":
        for r in rows:
            got = store.hash_at(loc, r["uri"])
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
    _journal(cfg).write_table(fixity_id, name, pa.Table.from_pylist(out, schema=RESULT_SCHEMA))
    bad = sum(1 for r in out if r["status"] != "ok")
    log.info("fixity %s %s: %d checked, %d problem(s)", fixity_id, chunk, len(out), bad)
    return {"chunk": chunk, "checked": len(out), "problems": bad}


def _verify_object(loc: Location, uri: str, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        data = store.read(loc, uri)
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
    """Paths owned by work in flight (open ingest batches, unfinished migrations).

    An open batch names its online destinations in ``staged.parquet`` (written before any file
    is renamed out of landing) and in ``stored.parquet``.
    """
    j = journal.ingest(cfg.work)
    skip: set[str] = set()
    if tier == "online":
        for b in j.open_runs():
            for name in (journal.STAGED, journal.STORED):
                if j.has(b, name):
                    t = j.read_table(b, name, columns=["dst_uri"]).column("dst_uri").to_pylist()
                    skip.update(u for u in t if u)
    return skip


def reconcile(cfg: Config, fixity_id: str, tier: str) -> dict[str, Any]:
    """List a tier and report files the catalogue does not know (orphans)."""
    j = _journal(cfg)
    name = journal.FixityStep.reconciled(tier)
    if _exists(cfg, fixity_id, name):
        return {"tier": tier, "orphans": _read(cfg, fixity_id, name).num_rows, "resumed": True}
    started = dt.datetime.fromisoformat(j.read_json(fixity_id, journal.FixityStep.PLAN)["started_at"])
    loc = cfg.online if tier == "online" else cfg.offline
    listing = []
    cutoff = started.timestamp()
    for path, _size in store.iter_files(loc):
        if loc.key(path).startswith(BACKUP_PREFIX + "/"):
            continue  # the catalogue's backups (pacs.catalogue.backup), not images
        try:
            mtime = store.modified(loc, path)
        except (KeyError, AttributeError):
            continue
        if mtime is None:
            continue
        if mtime < cutoff:
            listing.append(loc.uri(path))
    skip = _unjudged(cfg, tier)
    con = duckdb.connect()
    try:
        con.register("listing", pa.table({"uri": pa.array(listing, pa.string())}))
        con.register("known", _read(cfg, fixity_id, journal.FixityStep.known(tier)))
        orphans = [u for (u,) in con.execute(
            "SELECT l.uri FROM listing l ANTI JOIN known k USING (uri) ORDER BY 1").fetchall() if u not in skip]
    finally:
        con.close()
    detail = f"a file in the {tier} tier that the catalogue does not know"
    if tier == "offline":
        detail += ("; offline orphans are reported only, never moved or deleted by fixity: compare it with the "
                   "lifecycle journal, then re-submit or remove it by hand")
    rows = [{"tier": tier, "uri": u, "sop_instance_uid": None, "status": "orphan", "expected_sha256": None,
             "actual_sha256": None, "detail": detail, "repaired": False, "repair": None} for u in orphans]
    j.write_table(fixity_id, name, pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
    log.info("fixity %s reconcile %s: %d file(s) listed, %d orphan(s)", fixity_id, tier, len(listing), len(orphans))
    return {"tier": tier, "listed": len(listing), "orphans": len(orphans)}


def _results(cfg: Config, fixity_id: str) -> list[dict[str, Any]]:
    plan_info = _journal(cfg).read_json(fixity_id, journal.FixityStep.PLAN)
    names = [journal.FixityStep.result(c) for c in plan_info["chunks"]]
    names += [journal.FixityStep.reconciled(t) for t in ("online", "offline")]
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
        store.write(cfg.online, online_uri, data, sha, fsync=True, overwrite=True)
        if store.hash_at(cfg.online, online_uri) != sha:
            return None
        return "restored from the verified offline copy"
    if r["tier"] == "offline" and offline_uri == r["uri"] and offset is None and online_uri \
            and verified_ok.get(("online", online_uri)):
        data = transfer.read_verified(cfg.online, online_uri, sha)
        store.write(cfg.offline, offline_uri, data, sha, fsync=True, overwrite=True)
        try:
            transfer.read_verified(cfg.offline, offline_uri, sha)
        except transfer.CorruptCopyError:
            return None
        return "restored from the verified online copy"
    return None


def _reenter_one(cfg: Config, fixity_id: str, uri: str, cutoff: float) -> tuple[str, str, str | None]:
    """Move one online orphan into landing for intake, with verified bytes.

    Returns ``(outcome, detail, sha256)``: outcome ``reentered`` (the file is now in landing),
    ``left`` (it stays in the online tier; detail says why) or ``gone`` (nothing to do).
    """
    online, landing = cfg.online, cfg.landing[0]
    src = online.path_of_uri(uri)
    key = online.key(src)
    if any(cfg.ingest.ignored(part) for part in key.split("/")):
        return "left", ("left in the online tier: its name matches one of intake's ignore patterns "
                        f"{list(cfg.ingest.ignore)}, so intake would never take it; rename or remove it by hand"), None
    if online.overlaps(landing):
        return "left", "left in the online tier: the first landing location overlaps the online tier", None
    dst = landing.path(f"{RESUBMIT_FOLDER}/{ORPHAN_FOLDER}/{fixity_id}/{key}")
    dst_uri = landing.uri(dst)
    reentered = (f"re-entered intake: moved to {dst_uri}; the next ingest catalogues it, counts it as an identical "
                 "duplicate or quarantines it with its reason")
    mtime = store.modified(online, src)
    if mtime is None:
        if store.exists(landing, dst):  # an interrupted attempt of this step already moved it
            return "reentered", reentered, store.hash_at(landing, dst)
        return "gone", "no longer in the online tier", None
    if mtime >= cutoff:
        return "left", "left in the online tier: it changed after the audit's listing; the next audit judges it", None
    if store.is_link(online, src):
        return "left", "left in the online tier: a symbolic link, not a file; check it by hand", None
    moved, detail = _move_orphan(cfg, fixity_id, src, dst)
    return (moved, reentered, detail) if moved == "reentered" else (moved, detail or "", None)


def _move_orphan(cfg: Config, fixity_id: str, src: str, dst: str) -> tuple[str, str | None]:
    """Move (rename, or copy, verify and remove) an online orphan to ``dst`` in landing.

    Returns ``("reentered", sha256)``, ``("left", why)`` or ``("gone", why)``.
    """
    online, landing = cfg.online, cfg.landing[0]
    dst_uri = landing.uri(dst)
    if cfg.ingest.rename and store.same_filesystem(online, landing):
        if not store.move_local(src, dst, fsync=cfg.ingest.fsync):
            return "left", f"left in the online tier: landing already holds another file at {dst_uri}"
        return "reentered", store.hash_at(landing, dst)
    try:
        written = store.copy_stream(online.fs, src, landing, dst, fsync=cfg.ingest.fsync, tag=fixity_id)
    except FileNotFoundError:
        return "gone", "no longer in the online tier"
    except BaseException:
        store.clean_temp(landing, {os.path.dirname(dst)}, fixity_id)  # no half-written file in landing
        raise
    published = store.hash_at(landing, dst)
    source = store.hash_at(online, src)
    if not (written.sha256 == published == source):
        if written.created:
            store.remove(landing, dst)
        what = ("the copy in landing does not verify" if written.created
                else f"landing already holds another file at {dst_uri}")
        return "left", f"left in the online tier: {what}"
    store.remove(online, src)
    return "reentered", published


def _reenter_orphans(cfg: Config, con: Any, fixity_id: str, results: list[dict[str, Any]]
                     ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Send the online orphans of this run back through intake; returns the results to record.

    Each orphan is re-checked at the moment of acting: one the catalogue now references, or
    that an unfinished ingest batch owns, is no orphan (not recorded); one that vanished is not
    recorded either. What was done goes to the journal first, so a retried step records it
    without acting again.
    """
    j = _journal(cfg)
    others = [r for r in results if not (r["tier"] == "online" and r["status"] == "orphan")]
    orphans = [r for r in results if r["tier"] == "online" and r["status"] == "orphan"]
    counts = {"reentered": 0, "left": 0, "no_longer_orphans": 0}
    if _exists(cfg, fixity_id, REENTRY):
        done = _read(cfg, fixity_id, REENTRY).to_pylist()
        counts["reentered"] = sum(1 for r in done if r["repaired"])
        counts["left"] = len(done) - counts["reentered"]
        return others + done, counts
    if not orphans:
        return results, counts
    started = dt.datetime.fromisoformat(j.read_json(fixity_id, journal.FixityStep.PLAN)["started_at"])
    cutoff = started.timestamp()
    con.register("fixity_orphans", pa.table({"uri": pa.array([r["uri"] for r in orphans], pa.string())}))
    try:
        referenced = {u for (u,) in con.execute(
            "SELECT DISTINCT online_uri FROM image WHERE online_uri IN (SELECT uri FROM fixity_orphans)").fetchall()}
    finally:
        con.unregister("fixity_orphans")
    batches = journal.ingest(cfg.work).runs()
    owned = _unjudged(cfg, "online")
    done: list[dict[str, Any]] = []
    for r in orphans:
        if r["uri"] in referenced:  # catalogued since the listing (the catalogue cannot change while we write)
            counts["no_longer_orphans"] += 1
            continue
        now_batches = journal.ingest(cfg.work).runs()
        if now_batches != batches:  # an ingest batch opened meanwhile: learn what it owns
            batches, owned = now_batches, _unjudged(cfg, "online")
        if r["uri"] in owned:
            counts["no_longer_orphans"] += 1
            continue
        outcome, detail, sha = _reenter_one(cfg, fixity_id, r["uri"], cutoff)
        if outcome == "gone":
            counts["no_longer_orphans"] += 1
            continue
        row = dict(r, detail=detail, actual_sha256=sha)
        if outcome == "reentered":
            row["repaired"], row["repair"] = True, REENTERED
        counts["reentered" if outcome == "reentered" else "left"] += 1
        done.append(row)
    j.write_table(fixity_id, REENTRY, pa.Table.from_pylist(done, schema=RESULT_SCHEMA))
    return others + done, counts


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
        results, orphans = _reenter_orphans(cfg, con, fixity_id, results)
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
        catalogue.refresh_snapshot(con, cfg.parquet)  # repairs reach the analysts' snapshot
    by_kind = {kind: {"unresolved": int(n), "repaired": int(m)} for kind, n, m in counts}
    summary = {"fixity_id": fixity_id, "online_checked": online_checked, "offline_objects_checked": offline_objects,
               "findings": by_kind, "unresolved": unresolved, "orphans_reentered": orphans["reentered"],
               "orphans_left": orphans["left"], "orphans_no_longer_orphans": orphans["no_longer_orphans"]}
    log.info("fixity %s: orphans re-entered: %d, online orphans left in place (with their reason): %d; %s",
             fixity_id, orphans["reentered"], orphans["left"], summary)
    damaged = sum(v["unresolved"] + v["repaired"] for k, v in by_kind.items() if k in ("missing", "corrupt"))
    if fail_on_findings and damaged:
        raise FixityError(
            f"fixity {fixity_id}: {damaged} missing or corrupt copy(ies) found — {damaged - unresolved} restored "
            f"from a verified copy in the other tier, {unresolved} NOT repairable ({json.dumps(by_kind)}); "
            f"orphans re-entered: {orphans['reentered']}; see the fixity_finding table")
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
