"""Catalogue merge cost against catalogue size: one intake-sized merge into 0, 10M and 30M images.

An intake run merges a few thousand staged files; its cost should follow the batch, not the
catalogue. For each catalogue size (``--sizes``, default 0, 10,000,000 and 30,000,000 images)
the catalogue of ``bench/merge_rate.py`` (``build_catalogue``: SQL ``range()``, series of 100,
3 series per study, 2 studies per patient, exact aggregates) is built once and cached under
``--workdir``; it is then opened once with ``pacs.catalogue.connect`` (which upgrades it in place
to the current schema: the one-time cost is printed) and cached again as the *prepared* file
(keyed by a digest of ``include/sql/schema*.sql``). Each round copies the prepared file and
times, on the copy, what an intake run does to the catalogue:

- **open**: ``pacs.catalogue.connect`` (memory limit, ``ensure_schema``);
- **merge**: ``pacs.catalogue.merge.decide`` + ``apply`` of ``--staged-rows`` (default 2,000) new
  staged rows (``merge_rate.build_staged``: 95% new patients/studies/series, 5% new series in
  existing studies), per statement, through ``merge_rate.TimedConnection``;
- **commit** and **close** (DuckDB checkpoints the WAL when the connection closes).

The sizes are interleaved in every round (the machine is noisy); the median round per size is
reported, and the ratio of each size's total to the empty catalogue's. With ``--resend N``
(default 100), each round also times, on the non-empty catalogues, a merge in which N of the
staged rows are identical resends of one catalogued series (the duplicate path). The prepared
file's ``ingested_at`` follows row order, as in a catalogue the merge wrote (the builder's is the
received time, in random row order). After the first round of each size, ``pacs check``'s
invariant queries run on the copy (not timed). Prints figures, never asserts timings; the last
line is JSON.
Run: ``.venv/bin/python bench/merge_scale.py [--small]`` (``--small``: 0 and 1,000,000 images).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import duckdb
import merge_rate
import pyarrow as pa

SCHEMA_GLOB = "schema*.sql"


def _schema_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((common.ROOT / "include" / "sql").glob(SCHEMA_GLOB)):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _copy(src: Path, dst: Path) -> Path:
    for p in (dst, Path(str(dst) + ".wal")):
        p.unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    # flush the copy now: else the first fsync of the catalogue (at close) writes the whole file
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return dst


def prepared(work: Path, n_images: int) -> tuple[Path, dict[str, Any]]:
    """The cached catalogue of ``n_images`` images, upgraded to the current schema and checkpointed."""
    from pacs import catalogue

    base = work / f"catalogue-{n_images}.duckdb"
    t = time.perf_counter()
    built = merge_rate.build_catalogue(base, n_images)
    built["s"] = round(time.perf_counter() - t, 1)
    path = work / f"scale-{n_images}-{_schema_digest()}.duckdb"
    marker = path.with_suffix(".complete")
    if path.exists() and marker.exists():
        return path, {"build": built, "upgrade": "cached"}
    for old in work.glob(f"scale-{n_images}-*"):
        old.unlink()
    _copy(base, path)
    # The builder's ingested_at is the received time, in random row order; in a catalogue the
    # merge wrote, it is the merge's time, in row order (2,000 images every 3 hours here).
    raw = duckdb.connect(str(path))
    catalogue.set_memory_limit(raw, "4GB")
    raw.execute("UPDATE image SET ingested_at = TIMESTAMPTZ '2021-01-01 00:00:00+00' "
                "+ to_seconds((rowid // 2000) * 10800)")
    raw.execute("CHECKPOINT")
    raw.close()
    t = time.perf_counter()
    con = catalogue.connect(path)
    upgrade_s = time.perf_counter() - t
    con.execute("CHECKPOINT")
    con.close()
    total_s = time.perf_counter() - t
    marker.write_text("ok")
    return path, {"build": built, "upgrade_open_s": round(upgrade_s, 2), "upgrade_with_checkpoint_s":
                  round(total_s, 2), "file_mb": round(path.stat().st_size / 2**20)}


def resent_rows(src: Path, n: int) -> pa.Table:
    """``n`` staged rows that are identical resends of catalogued images (series in the middle)."""
    from pacs.intake import STAGED_SCHEMA

    con = duckdb.connect(str(src), read_only=True)
    table = con.sql(f"""
        SELECT 'resend-000000' AS batch_id, (row_number() OVER (ORDER BY i.sop_instance_uid) - 1)::INTEGER AS row_no,
               '/landing/resend/' || i.sop_instance_uid || '.dcm' AS source_uri,
               '/landing/resend/' || i.sop_instance_uid || '.dcm' AS source_path, 0 AS landing,
               i.size_bytes AS source_size, 0::BIGINT AS source_mtime_ns,
               TIMESTAMPTZ '2025-07-01 07:00:00+00' AS received_at, 'ok' AS status, NULL AS reason, NULL AS detail,
               i.sha256, i.size_bytes, i.online_uri AS dst_uri, true AS move, true AS in_place,
               NULL AS quarantine_uri, NULL AS sidecar_uri, NULL::BIGINT AS source_dev, NULL::BIGINT AS source_ino,
               NULL::BIGINT AS read_mtime_ns, p.patient_id, p.issuer_of_patient_id, p.patient_name,
               p.patient_birth_date, p.patient_sex, st.patient_age, st.study_instance_uid, st.study_date,
               st.study_time, st.accession_number, st.study_id, st.study_description, st.referring_physician_name,
               st.institution_name, se.series_instance_uid, se.modality, se.series_number, se.series_description,
               se.series_date, se.body_part_examined, se.manufacturer, se.manufacturer_model_name,
               se.station_name, i.sop_instance_uid, i.sop_class_uid, i.instance_number, i.content_date, i.rows,
               i.columns, i.number_of_frames, i.bits_allocated, i.transfer_syntax_uid,
               NULL::VARCHAR AS rejection_note, NULL::VARCHAR AS acquisition, NULL::VARCHAR AS dose_report
        FROM image i JOIN series se USING (series_instance_uid)
        JOIN study st ON st.study_instance_uid = i.study_instance_uid JOIN patient p USING (patient_id)
        WHERE i.series_instance_uid IN (SELECT series_instance_uid FROM series ORDER BY series_instance_uid
                                        LIMIT 1 OFFSET (SELECT count(*) // 2 FROM series))
        LIMIT {int(n)}
    """).to_arrow_table()
    con.close()
    return table.select(STAGED_SCHEMA.names).cast(STAGED_SCHEMA)


def _touched_ok(con: Any, staged: pa.Table) -> list[str]:
    """Exact aggregates of the touched studies, series and patients (cheap: by key)."""
    con.register("bench_staged", staged)
    wrong = con.execute("""
        WITH t AS (SELECT DISTINCT study_instance_uid FROM bench_staged)
        SELECT count(*) FILTER (WHERE st.image_count <> a.n OR st.size_bytes <> a.b OR st.series_count <> a.se
                                OR st.online_image_count <> a.onl)
        FROM study st JOIN (
            SELECT i.study_instance_uid, count(*) AS n, sum(size_bytes) AS b,
                   count(DISTINCT series_instance_uid) AS se, count(*) FILTER (WHERE online_uri IS NOT NULL) AS onl
            FROM image i SEMI JOIN t USING (study_instance_uid) GROUP BY 1) a USING (study_instance_uid)
    """).fetchall()[0][0]
    con.unregister("bench_staged")
    return [f"{wrong} touched studies with wrong aggregates"] if wrong else []


def run_once(src: Path, work: Path, staged: pa.Table, *, check: bool, resent: int = 0) -> dict[str, Any]:
    """Open a fresh copy, merge, commit, close: the catalogue's part of one intake run."""
    from pacs import catalogue
    from pacs.catalogue import sql

    db = _copy(src, work / "scale-run.duckdb")
    t0 = time.perf_counter()
    con = catalogue.connect(db)
    t_open = time.perf_counter() - t0
    before = con.execute("SELECT count(*) FROM image").fetchall()[0][0]
    timed = merge_rate.TimedConnection(con)
    t1 = time.perf_counter()
    timed.execute("BEGIN TRANSACTION")
    decided = catalogue.merge.decide(timed, staged)
    _outcomes, result = catalogue.merge.apply(timed, decided, run_id="bench", now=merge_rate.NOW,
                                                  sop_token="bench")
    t2 = time.perf_counter()
    con.execute("COMMIT")
    t3 = time.perf_counter()
    con.close()
    t4 = time.perf_counter()
    problems: list[str] = []
    con = catalogue.connect(db)
    after = con.execute("SELECT count(*) FROM image").fetchall()[0][0]
    new = staged.num_rows - resent
    if (result.total("catalogued"), result.total("duplicates"), after - before) != (new, resent, new):
        problems.append(f"catalogued {result.total('catalogued')}, duplicates {result.total('duplicates')}, "
                        f"image rows +{after - before}")
    problems += _touched_ok(con, staged)
    if check:
        for name, query in sql.named_queries("checks").items():
            n = con.execute(query).fetchall()[0][0]
            if n:
                problems.append(f"{name}: {n}")
    con.close()
    db.unlink(missing_ok=True)
    Path(str(db) + ".wal").unlink(missing_ok=True)
    breakdown: dict[str, float] = {}
    for label, secs in timed.timings:
        breakdown[label] = breakdown.get(label, 0.0) + secs
    return {"open_s": round(t_open, 3), "merge_s": round(t2 - t1, 3), "commit_s": round(t3 - t2, 3),
            "close_s": round(t4 - t3, 3), "total_s": round(t4 - t0, 3), "ok": not problems, "problems": problems,
            "breakdown_s": {k: round(v, 4) for k, v in breakdown.items()}}


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ranked = sorted(rounds, key=lambda r: r["total_s"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    chosen["rounds_total_s"] = [r["total_s"] for r in rounds]
    chosen["ok"] = all(r["ok"] for r in rounds)
    chosen["problems"] = [p for r in rounds for p in r["problems"]]
    return chosen


def _report(sizes: list[int], results: dict[int, dict[str, Any]], n_new: int, note: str = "") -> None:
    base = results[sizes[0]]["total_s"]
    rows = [[f"{n:,}", *(f"{r[k]:.3f}" for k in ("open_s", "merge_s", "commit_s", "close_s", "total_s")),
             common.ratio(r["total_s"], base), " / ".join(str(x) for x in r["rounds_total_s"]),
             "ok" if r["ok"] else "FAILED: " + "; ".join(r["problems"])] for n, r in results.items()]
    common.print_table(["catalogue images", "open s", "merge s", "commit s", "close s", "total s",
                        f"x {sizes[0]:,}", "total each round", "check"], rows,
                       f"{n_new:,} staged rows{note}, median round per catalogue size")
    labels = list(dict.fromkeys(k for r in results.values() for k in r["breakdown_s"]))
    rows = [[label, *(results[n]["breakdown_s"].get(label, 0.0) for n in sizes)] for label in labels]
    rows = [[r[0], *(f"{x:.3f}" for x in r[1:])] for r in rows if max(r[1:]) >= 0.002]
    common.print_table(["statement", *(f"{n:,}" for n in sizes)], rows, f"merge time by statement (s){note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="catalogues of 0 and 1,000,000 images")
    ap.add_argument("--sizes", default=None, help="catalogue sizes, comma-separated (default 0,10M,30M)")
    ap.add_argument("--staged-rows", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the median round per size is reported")
    ap.add_argument("--resend", type=int, default=100,
                    help="also time a merge in which this many of the staged rows are identical resends (0: no)")
    ap.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    args = ap.parse_args(argv)
    sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
             else [0, 1_000_000] if args.small else [0, 10_000_000, 30_000_000])
    work = args.workdir.resolve() / "merge"
    work.mkdir(parents=True, exist_ok=True)
    info, code = common.machine_info(), common.code_version()
    files: dict[int, Path] = {}
    prep: dict[int, dict[str, Any]] = {}
    staged: dict[int, pa.Table] = {}
    for n in sizes:
        files[n], prep[n] = prepared(work, n)
        staged[n] = merge_rate.build_staged(args.staged_rows, n)
        print(f"catalogue {n:,}: {prep[n]}", file=sys.stderr, flush=True)
    resend: dict[int, pa.Table] = {}
    for n in sizes:
        if args.resend and n:
            resend[n] = pa.concat_tables([staged[n].slice(0, args.staged_rows - args.resend),
                                          resent_rows(files[n], args.resend)])
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    runs_resend: dict[int, list[dict[str, Any]]] = {n: [] for n in resend}
    for round_no in range(args.repeat):
        for n in sizes:
            print(f"[scale] round {round_no + 1}/{args.repeat}: {n:,} images ...", file=sys.stderr, flush=True)
            runs[n].append(run_once(files[n], work, staged[n], check=round_no == 0))
            if n in resend:
                runs_resend[n].append(run_once(files[n], work, resend[n], check=False, resent=args.resend))
    results = {n: _median(r) for n, r in runs.items()}
    results_resend = {n: _median(r) for n, r in runs_resend.items()}
    print(f"\nMerge of {args.staged_rows:,} new rows by catalogue size (DuckDB {info['duckdb']}, {info['cpus']} CPUs, "
          f"load at start {info['load_avg_at_start']})")
    _report(sizes, results, args.staged_rows)
    if results_resend:
        _report(sizes[:1] + list(results_resend), {sizes[0]: results[sizes[0]], **results_resend}, args.staged_rows,
                f" ({args.resend} of them identical resends of catalogued images; {sizes[0]:,}: all new)")
    prov = common.provenance(code)
    print(f"code: git {prov['git_head']}{' + uncommitted changes' if prov['measured_code_dirty'] else ''}, "
          f"digest {prov['code_digest']}"
          f"{'  WARNING: the code under test changed during this run' if prov['code_changed_during_run'] else ''}")
    print()
    common.final_json({"benchmark": "merge_scale", "code": prov, "staged_rows": args.staged_rows, "machine": info,
                       "prepared": {str(n): p for n, p in prep.items()},
                       "results": {str(n): r for n, r in results.items()},
                       "results_resend": {str(n): r for n, r in results_resend.items()}, "resend": args.resend})
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
