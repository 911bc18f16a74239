"""Deletion that cannot lose the wrong thing: rejected and expired instances, from both tiers.

``pacs purge`` and the ``pacs_purge`` DAG run the lifecycle's discipline:

1. :func:`plan` (catalogue writer) — the instances to delete, each with why (``rejected:<code>``:
   rejected before ``--rejected-before``; ``retention:<modality>:<years>y``: the policy's
   ``delete_after_years`` rule for its series' modality, by study date) and its copies, recorded
   in ``purge_plan`` / ``purge_run``. Instances of held studies or patients (the policy's
   ``hold``), of studies pinned online (recall) or migrating are refused and counted, never
   planned. ``dry_run`` stops here; with the policy's ``approve_plan`` the DAG waits for a person.
2. :func:`execute` (catalogue writer, which holds the catalogue for the whole purge: the lease
   dies with the process) — checks every planned instance again at the moment it acts (still
   catalogued, still rejected or planned as expired, not held, pinned or migrating now; the others
   are marked ``refused``), then deletes its copies: the online file, the offline object, and
   for a packed series the tar is **rewritten without the deleted members** (the new tar is
   written, every kept member's bytes are checked against its sha256 in it, the kept images are
   switched to it in the catalogue, and only then the old tar is deleted). Every deleted copy is
   checked to be gone; then one transaction writes an audit row per copy (``deletion``), removes
   the image rows (and series and studies left empty), recomputes the aggregates and marks the
   plan done; the snapshot is refreshed (deleted rows leave it through ``snapshot_removed``).

Killed at any point and re-run, the same end state: deleting a copy that is gone is a no-op, a
tar already rewritten has no kept member left pointing at the old one (which is then only
deleted), the audit rows are written only in the commit, and a committed plan is not run again.
Messages and results carry counts and plan ids only (no PHI).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from typing import Any

import pyarrow as pa

from pacs import catalogue, journal, store
from pacs.config import Config
from pacs.dicom.layout import series_pack_key
from pacs.errors import UsageError
from pacs.store import transfer

log = logging.getLogger(__name__)

KILL_AFTER_ENV = "PACS_TEST_PURGE_KILL_AFTER"
"""Tests only: SIGKILL the process after this many copies were deleted (crash-safety tests)."""


def _register(con: Any, cfg: Config, logical_date: dt.date, retention: bool) -> list[dict[str, Any]]:
    policy = cfg.policy
    rules = policy.delete_after_years if retention else {}
    cutoffs = [{"modality": m, "cutoff": policy.online_cutoff(logical_date, years), "label": f"{years:g}"}
               for m, years in sorted(rules.items())]
    con.register("retention_cutoffs", pa.Table.from_pylist(cutoffs, schema=pa.schema(
        [("modality", pa.string()), ("cutoff", pa.date32()), ("label", pa.string())])))
    con.register("hold_patients", pa.table({"patient_id": pa.array(sorted(policy.hold_patients), pa.string())}))
    con.register("hold_studies", pa.table({"study_instance_uid": pa.array(sorted(policy.hold_studies),
                                                                          pa.string())}))
    return cutoffs


def _run_row(con: Any, plan_id: str) -> dict[str, Any] | None:
    cur = con.execute("SELECT * FROM purge_run WHERE plan_id = $p", {"p": plan_id})
    rows = cur.fetchall()
    return dict(zip([d[0] for d in cur.description], rows[0], strict=True)) if rows else None


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("plan_id", "dry_run", "state", "instances", "bytes", "refused_held", "refused_pinned", "refused_busy",
            "instances_deleted", "copies_deleted", "bytes_freed", "refused_at_purge")
    out = {k: run.get(k) for k in keys}
    out["logical_date"] = str(run["logical_date"])
    return out


def plan(cfg: Config, *, rejected_before: dt.date | None = None, retention: bool = False,
         logical_date: dt.date | None = None, run_id: str = "manual", dry_run: bool = False,
         now: dt.datetime | None = None) -> dict[str, Any]:
    """Record what a purge deletes at ``logical_date`` (catalogue writer); see the module doc.

    Raises :class:`UsageError` when no criterion is given, or ``retention`` without a rule.
    """
    if rejected_before is None and not retention:
        raise UsageError("say what to delete: --rejected-before DATE (instances rejected before that day) "
                         "and/or --retention (the policy's delete_after_years)")
    if retention and not cfg.policy.delete_after_years:
        raise UsageError("--retention: the policy has no delete_after_years rule (e.g. delete_after_years: "
                         "{US: 10}); nothing can expire")
    now = now or dt.datetime.now(dt.UTC)
    logical_date = logical_date or now.date()
    plan_id = "purge-" + journal.run_key(logical_date, run_id) + ("-dry" if dry_run else "")
    before = (dt.datetime.combine(rejected_before, dt.time(), tzinfo=dt.UTC) if rejected_before else None)
    with catalogue.opened(cfg.duckdb) as con:
        done = _run_row(con, plan_id)
        if done:
            return _summary(done)
        cutoffs = _register(con, cfg, logical_date, retention)
        with catalogue.transaction(con):
            catalogue.run(con, "purge_candidates", {"rejected_before": before, "logical_date": logical_date})
            held, pinned, busy = con.execute(
                "SELECT count(*) FILTER (WHERE held), count(*) FILTER (WHERE pinned AND NOT held), "
                "count(*) FILTER (WHERE busy AND NOT held AND NOT pinned) FROM purge_eligible").fetchall()[0]
            con.execute(
                "INSERT INTO purge_plan SELECT $p, sop_instance_uid, series_instance_uid, study_instance_uid, why, "
                "size_bytes, online_uri, offline_uri, packed, 'planned' FROM purge_eligible "
                "WHERE NOT held AND NOT pinned AND NOT busy", {"p": plan_id})
            n, nbytes = con.execute("SELECT count(*), coalesce(sum(size_bytes), 0) FROM purge_plan "
                                    "WHERE plan_id = $p", {"p": plan_id}).fetchall()[0]
            criteria = {"rejected_before": rejected_before.isoformat() if rejected_before else None,
                        "retention": [{"modality": c["modality"], "years": c["label"],
                                       "studies_before": c["cutoff"].isoformat()} for c in cutoffs]}
            con.execute(
                "INSERT INTO purge_run (plan_id, run_id, logical_date, dry_run, criteria, instances, bytes, "
                "refused_held, refused_pinned, refused_busy, state, planned_at) VALUES ($p, $r, $d, $dry, $c, $n, "
                "$b, $h, $pi, $bu, $s, $now)",
                {"p": plan_id, "r": run_id, "d": logical_date, "dry": dry_run, "c": json.dumps(criteria), "n": n,
                 "b": nbytes, "h": held, "pi": pinned, "bu": busy, "s": "dry_run" if dry_run else "planned",
                 "now": now})
        out = _summary(_run_row(con, plan_id) or {})
        out["by_why"] = {w: {"instances": int(c), "bytes": int(b)} for w, c, b in con.execute(
            "SELECT why, count(*), sum(size_bytes) FROM purge_plan WHERE plan_id = $p GROUP BY 1 ORDER BY 1",
            {"p": plan_id}).fetchall()}
    log.info("purge plan %s: %d instance(s), %.1f MB; refused: %d held, %d pinned, %d migrating%s", plan_id, n,
             nbytes / 1e6, held, pinned, busy, " (dry run: nothing is deleted)" if dry_run else "")
    return out


def reject_plan(cfg: Config, plan_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Record that the plan's approver rejected it: nothing of it is deleted."""
    with catalogue.opened(cfg.duckdb) as con, catalogue.transaction(con):
        con.execute("UPDATE purge_plan SET state = 'rejected' WHERE plan_id = $p AND state = 'planned'",
                    {"p": plan_id})
        con.execute("UPDATE purge_run SET state = 'rejected', finished_at = $now WHERE plan_id = $p "
                    "AND state = 'planned'", {"p": plan_id, "now": now or dt.datetime.now(dt.UTC)})
        run = _run_row(con, plan_id)
    if run is None:
        raise UsageError(f"no purge plan {plan_id!r}")
    log.info("purge plan %s rejected: nothing is deleted", plan_id)
    return _summary(run)


_ACTIONABLE = """
SELECT p.sop_instance_uid, p.study_instance_uid, i.series_instance_uid, i.online_uri, i.offline_uri,
       i.offline_offset, i.size_bytes,
       (p.why NOT LIKE 'rejected:%' OR EXISTS (SELECT 1 FROM rejection r WHERE r.sop_instance_uid = p.sop_instance_uid))
       AND NOT (st.study_instance_uid IN (SELECT study_instance_uid FROM hold_studies)
                OR st.patient_id IN (SELECT patient_id FROM hold_patients))
       AND NOT coalesce(st.pinned_until >= $today, false)
       AND st.tier_state <> 'migrating' AS still
FROM purge_plan p
JOIN image i USING (sop_instance_uid)
JOIN study st ON st.study_instance_uid = i.study_instance_uid
WHERE p.plan_id = $plan_id AND p.state = 'planned'
"""


class _Deleter:
    """Deletes copies, checks each is gone, and (tests only) dies after a set number of them."""

    def __init__(self) -> None:
        self.deleted = 0
        raw = os.environ.get(KILL_AFTER_ENV)
        self.kill_after = int(raw) if raw else None

    def remove(self, loc: Any, uri: str) -> None:
        store.remove(loc, uri)
        if store.exists(loc, loc.path_of_uri(uri)):
            raise OSError(f"{store.where(loc)}: a deleted copy is still there ({uri}); check the tier's "
                          "permissions, then run the purge again")
        self.deleted += 1
        if self.kill_after is not None and self.deleted >= self.kill_after:
            os.kill(os.getpid(), 9)


def _rewrite_tar(cfg: Config, con: Any, tar_uri: str, victims: set[str], deleter: _Deleter,
                 now: dt.datetime) -> None:
    """Rewrite a series tar without ``victims``: new tar written and verified, kept images switched
    to it (committed), then the old tar deleted. Re-run after a crash: finishes what is left."""
    kept = con.execute(
        "SELECT i.sop_instance_uid, i.sha256, i.offline_offset, i.offline_length, i.study_instance_uid, "
        "i.series_instance_uid, st.study_date FROM image i JOIN study st USING (study_instance_uid) "
        "WHERE i.offline_uri = $u ORDER BY i.sop_instance_uid", {"u": tar_uri}).fetchall()
    kept = [k for k in kept if k[0] not in victims]
    if kept:
        datas = [transfer.read_verified(cfg.offline, tar_uri, sha, offset, length)
                 for _sop, sha, offset, length, *_ in kept]
        packed = transfer.pack(zip((k[0] for k in kept), datas, strict=True))
        pack_id = hashlib.sha256("\n".join(k[0] for k in kept).encode()).hexdigest()[:16]
        _sop, _sha, _o, _l, study, series, study_date = kept[0]
        path = cfg.offline.path(series_pack_key(study_date, study, series, pack_id))
        transfer.put_objects(cfg.offline, [transfer.Put(path, packed.data, packed.sha256)],
                             verify=cfg.policy.verify)
        new_uri = cfg.offline.uri(path)
        for (sop, sha, *_rest), _data in zip(kept, datas, strict=True):  # every kept member, in the new tar
            offset, length = packed.members[sop]
            transfer.read_verified(cfg.offline, new_uri, sha, offset, length)
        switched = pa.table({"sop_instance_uid": [k[0] for k in kept],
                             "offline_offset": [packed.members[k[0]][0] for k in kept],
                             "offline_length": [packed.members[k[0]][1] for k in kept]})
        con.register("purge_switched", switched)
        with catalogue.transaction(con):
            con.execute("UPDATE image SET offline_uri = $u, offline_offset = s.offline_offset, "
                        "offline_length = s.offline_length, offline_verified_at = $now, updated_at = now() "
                        "FROM purge_switched s WHERE image.sop_instance_uid = s.sop_instance_uid",
                        {"u": new_uri, "now": now})
        con.unregister("purge_switched")
    deleter.remove(cfg.offline, tar_uri)


def execute(cfg: Config, plan_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Delete what the plan names and is still eligible, verify, commit (catalogue writer)."""
    now = now or dt.datetime.now(dt.UTC)
    with catalogue.opened(cfg.duckdb) as con:
        run = _run_row(con, plan_id)
        if run is None:
            raise UsageError(f"no purge plan {plan_id!r}; make one with `pacs purge` (see --help)")
        if run["state"] != "planned":
            if run["state"] == "done":
                catalogue.refresh_snapshot(con, cfg.parquet)  # a crash after the commit: catch up
            return _summary(run)
        _register(con, cfg, run["logical_date"], False)
        rows = con.execute(_ACTIONABLE, {"plan_id": plan_id, "today": now.date()}).fetchall()
        todo = [r for r in rows if r[-1]]
        refused = [r[0] for r in rows if not r[-1]]
        victims = {r[0] for r in todo}
        deleter = _Deleter()
        tars: set[str] = set()
        for _sop, _study, _series, online_uri, offline_uri, offset, _size, _still in todo:
            if online_uri:
                deleter.remove(cfg.online, online_uri)
            if offline_uri and offset is None:
                deleter.remove(cfg.offline, offline_uri)
            elif offline_uri:
                tars.add(offline_uri)
        for tar in sorted(tars):
            _rewrite_tar(cfg, con, tar, victims, deleter, now)
        con.register("purge_deleted", pa.table({"sop_instance_uid": pa.array(sorted(victims), pa.string())}))
        params = {"plan_id": plan_id, "now": now, "run_id": run["run_id"], "logical_date": now.date()}
        with catalogue.transaction(con):
            catalogue.run_all(con, ("purge_commit", "aggregates", "lifecycle_study_state"), params)
            if refused:
                con.register("purge_refused", pa.table({"sop_instance_uid": pa.array(refused, pa.string())}))
                con.execute("UPDATE purge_plan SET state = 'refused' WHERE plan_id = $p AND sop_instance_uid IN "
                            "(SELECT sop_instance_uid FROM purge_refused)", {"p": plan_id})
            # planned instances no longer catalogued (deleted by an earlier attempt of this plan are
            # 'deleted' already; any other was removed by something else): nothing left to do
            con.execute("UPDATE purge_plan SET state = 'refused' WHERE plan_id = $p AND state = 'planned'",
                        {"p": plan_id})
            con.execute(
                "UPDATE purge_run SET state = 'done', finished_at = $now, "
                "instances_deleted = (SELECT count(*) FROM purge_plan WHERE plan_id = $p AND state = 'deleted'), "
                "copies_deleted = (SELECT count(*) FROM deletion WHERE plan_id = $p), "
                "bytes_freed = (SELECT coalesce(sum(size_bytes), 0) FROM deletion WHERE plan_id = $p), "
                "refused_at_purge = (SELECT count(*) FROM purge_plan WHERE plan_id = $p AND state = 'refused') "
                "WHERE plan_id = $p", {"p": plan_id, "now": now})
        snapshot = catalogue.refresh_snapshot(con, cfg.parquet)
        out = _summary(_run_row(con, plan_id) or {})
    out["snapshot_files_written"] = snapshot["written"]
    log.info("purge %s: %s instance(s) deleted (%s copies, %.1f MB freed), %s refused at the purge", plan_id,
             out["instances_deleted"], out["copies_deleted"], (out["bytes_freed"] or 0) / 1e6,
             out["refused_at_purge"])
    return out


def purge(cfg: Config, *, rejected_before: dt.date | None = None, retention: bool = False,
          logical_date: dt.date | None = None, run_id: str = "manual", dry_run: bool = False,
          now: dt.datetime | None = None) -> dict[str, Any]:
    """Plan, then (unless ``dry_run``) execute, in this process (the CLI; the DAG runs the steps).

    A plan of an earlier ``pacs purge`` that was killed before its commit (state ``planned``, run
    id ``cli-…``: the command plans and executes in one process, so nothing else waits on it) is
    finished first, so a killed purge re-run ends as one run would: every plan done, one audit row
    per deleted copy. Plans of the DAG (which may await approval) are left to their runs.
    """
    resumed = [] if dry_run else [execute(cfg, plan_id, now=now)["plan_id"] for plan_id in _interrupted(cfg)]
    p = plan(cfg, rejected_before=rejected_before, retention=retention, logical_date=logical_date, run_id=run_id,
             dry_run=dry_run, now=now)
    if dry_run or p["state"] not in ("planned", "done"):
        return p
    out = {**execute(cfg, p["plan_id"], now=now), "by_why": p.get("by_why", {})}
    if resumed:
        out["resumed_plans"] = resumed
    return out


def _interrupted(cfg: Config) -> list[str]:
    """Plans of ``pacs purge`` runs killed between their plan and their commit, oldest first."""
    with catalogue.opened(cfg.duckdb) as con:
        rows = con.execute("SELECT plan_id FROM purge_run WHERE state = 'planned' AND NOT dry_run "
                           "AND run_id LIKE 'cli-%' ORDER BY planned_at, plan_id").fetchall()
    for (plan_id,) in rows:
        log.warning("purge plan %s was interrupted before its commit: finishing it first", plan_id)
    return [r[0] for r in rows]
