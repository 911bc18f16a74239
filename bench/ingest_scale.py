"""One intake run at catalogue scale: 2,000 files into catalogues of 0, 10,000,000 and 30,000,000 images.

For each catalogue size a fresh archive gets a copy of a cached catalogue, then (untimed, reported
as "initial snapshot") ``pacs.catalogue.snapshot.refresh(cfg)`` writes the snapshot of what is
already catalogued. The 2,000 files are copied into landing and the steps the ``pacs_ingest`` DAG
runs are timed in-process, as ``bench/profile_ingest.py`` does: sweep → process every batch →
merge → finalize → snapshot refresh. Reported per size: seconds per step and in all, the ratio
of the total to the empty catalogue's, and the bytes the run wrote to the snapshot location (the
sizes of the files there that are new or changed, from a {path: (size, mtime)} listing taken
before and after the run), with the number of snapshot files. Target: at 10M and 30M images the
run costs ≤ 1.5× the empty case.

Then, over the largest size's snapshot (after its run), the analysts' query latency, median of
``--repeat`` (5): a day-volume query over ``study`` and a by-day query over ``image``, each through
``pacs.catalogue.snapshot.with_snapshot(cfg.parquet, work)`` and through plain DuckDB over the
files (``read_parquet('<snapshot>/<table>/**/*.parquet', hive_partitioning=true)``). Target: the
day-volume query answers in ≤ 1 s.

Data, cached under ``--workdir``:

- the catalogues come from ``bench/merge_rate.py``'s ``build_catalogue`` (its cache,
  ``<workdir>/merge/catalogue-<N>.duckdb``, shared with ``merge_rate.py``). Its study dates span
  2021–2025 (5 ``study_year`` partitions); this script keeps a derived copy
  (``<workdir>/ingest_scale/catalogue-<N>-10y.duckdb``, made once) in which each study is moved
  to a date drawn from its UID over 2016-01-01..2026-11-30 (11 partitions), every other date of
  the study shifted by the same number of days (series date, content dates, received/ingested/
  updated times, first/last received) and the patients' first/last study dates recomputed;
- the files are ``pacs.synth.generate_small_files`` (~12 KB MR images, series of 25) rewritten
  with pydicom: new studies dated 1–7 days before the set was generated (mtime that day), and
  5% of the files (whole series) moved into studies the catalogue already holds (3 recent ones
  and one of 2019, taken from the smallest non-empty catalogue, so present in every larger one:
  the builder numbers studies the same way at every size), under those studies' own patients.

Run: ``.venv/bin/python bench/ingest_scale.py [--sizes 0,10000000,30000000] [--files 2000]
[--small]`` (``--small``: sizes 0 and 1,000,000, 500 files). The first full run builds the
catalogues (30M: about 10 minutes, plus the derived copy).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import duckdb
import merge_rate
import psutil

STEPS = ("sweep", "process", "merge", "finalize", "snapshot")
EXISTING_SHARE = 0.05
PER_SERIES = 25
SPREAD_START = dt.date(2016, 1, 1)
SPREAD_END = dt.date(2026, 11, 30)
SPREAD_DAYS = (SPREAD_END - SPREAD_START).days + 1
BUILD_MEMORY = "6GB"  # for building the cached catalogues only; the measured run keeps pacs' own limit
TARGET_RATIO = 1.5
TARGET_QUERY_S = 1.0

QUERIES = {
    "study day volume (2025-)": (
        "study",
        "SELECT study_date, count(*), sum(size_bytes) FROM {study} WHERE study_date >= DATE '2025-01-01' "
        "GROUP BY 1 ORDER BY 1"),
    "image by received day (last 30)": (
        "image",
        "SELECT i.received_at::DATE AS day, count(*), sum(i.size_bytes) FROM {image} i GROUP BY 1 "
        "ORDER BY 1 DESC LIMIT 30"),
}


def log(msg: str) -> None:
    print(f"[ingest_scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# catalogues
# ---------------------------------------------------------------------------------------------

def _held_by_another(path: Path) -> bool:
    """Whether another process holds DuckDB's write lock on ``path`` (e.g. it is building it)."""
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as exc:
        return "lock" in str(exc).lower()
    except duckdb.Error:
        return False
    return False


def base_catalogue(workdir: Path, n: int) -> Path:
    """``merge_rate``'s cached catalogue of ``n`` images (built here if absent, awaited if another
    process is building it: building it again would throw that process' work away)."""
    path = workdir / "merge" / f"catalogue-{n}.duckdb"
    complete = path.with_suffix(".complete")
    waited = 0.0
    while not complete.exists() and path.exists() and _held_by_another(path):
        if waited % 60 == 0:
            log(f"{path.name} is being built by another process; waiting ({waited / 60:.0f} min so far)")
        time.sleep(10)
        waited += 10
    if not complete.exists():
        log(f"building {path.name} ({n:,} images; 30M takes ~10 min) ...")
    t = time.perf_counter()
    previous = os.environ.get("PACS_DUCKDB_MEMORY_LIMIT")
    os.environ["PACS_DUCKDB_MEMORY_LIMIT"] = BUILD_MEMORY
    try:
        built = merge_rate.build_catalogue(path, n)
    finally:
        if previous is None:
            os.environ.pop("PACS_DUCKDB_MEMORY_LIMIT", None)
        else:
            os.environ["PACS_DUCKDB_MEMORY_LIMIT"] = previous
    if not built.get("cached"):
        log(f"built {path.name} in {time.perf_counter() - t:.0f}s: {built.get('counts')}")
    return path


SPREAD_SQL = f"""
CREATE OR REPLACE TEMP TABLE spread AS
SELECT study_instance_uid,
       (DATE '{SPREAD_START}' + (hash(study_instance_uid) % {SPREAD_DAYS})::INTEGER) AS new_date,
       ((DATE '{SPREAD_START}' + (hash(study_instance_uid) % {SPREAD_DAYS})::INTEGER)
        - coalesce(study_date, DATE '{SPREAD_START}'))::INTEGER AS delta
FROM study;
UPDATE study SET study_date = s.new_date,
       first_received_at = first_received_at + to_days(s.delta),
       last_received_at = last_received_at + to_days(s.delta)
FROM spread s WHERE s.study_instance_uid = study.study_instance_uid;
UPDATE series SET series_date = series_date + s.delta,
       first_received_at = first_received_at + to_days(s.delta),
       last_received_at = last_received_at + to_days(s.delta)
FROM spread s WHERE s.study_instance_uid = series.study_instance_uid;
UPDATE image SET content_date = content_date + s.delta,
       received_at = received_at + to_days(s.delta),
       ingested_at = ingested_at + to_days(s.delta),
       updated_at = updated_at + to_days(s.delta)
FROM spread s WHERE s.study_instance_uid = image.study_instance_uid;
UPDATE patient SET first_study_date = a.first_date, last_study_date = a.last_date
FROM (SELECT patient_id, min(study_date) AS first_date, max(study_date) AS last_date FROM study GROUP BY 1) a
WHERE a.patient_id = patient.patient_id
"""


def ten_year_catalogue(workdir: Path, n: int) -> tuple[Path, dict[str, Any]]:
    """The derived copy of ``n`` images whose studies span 2016–2026 (made once, cached)."""
    out = workdir / "ingest_scale" / f"catalogue-{n}-10y.duckdb"
    marker = out.with_suffix(".complete")
    if out.exists() and marker.exists():
        return out, {"cached": True, **json.loads(marker.read_text())}
    base = base_catalogue(workdir, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    for p in (out, marker, tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    log(f"deriving {out.name}: copy of {base.name}, study dates spread over {SPREAD_START}..{SPREAD_END} ...")
    t0 = time.perf_counter()
    shutil.copyfile(base, tmp)
    con = duckdb.connect(str(tmp))
    try:
        con.execute(f"SET memory_limit = '{BUILD_MEMORY}'")
        before = con.execute("SELECT count(DISTINCT year(study_date)) FROM study").fetchall()[0][0]
        con.execute("BEGIN TRANSACTION")
        for stmt in (s.strip() for s in SPREAD_SQL.split(";\n")):
            if stmt:
                con.execute(stmt)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
        years = con.execute("SELECT year(study_date), count(*) FROM study GROUP BY 1 ORDER BY 1").fetchall()
        bad = con.execute("""SELECT count(*) FROM image i JOIN study s USING (study_instance_uid)
                             WHERE i.content_date <> s.study_date""").fetchall()[0][0]
        images = con.execute("SELECT count(*) FROM image").fetchall()[0][0]
    finally:
        con.close()
    if bad:
        raise RuntimeError(f"date spread left {bad} images whose content date differs from their study's")
    tmp.rename(out)
    info = {"images": images, "study_years_before": before, "study_years": {str(y): c for y, c in years},
            "derive_s": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps(info))
    log(f"derived {out.name} in {info['derive_s']}s: {len(years)} study years ({before} before)")
    return out, {"cached": False, **info}


# ---------------------------------------------------------------------------------------------
# the files
# ---------------------------------------------------------------------------------------------

def existing_studies(catalogue: Path | None) -> list[dict[str, Any]]:
    """Three recent studies and one of 2019 of ``catalogue``, with their patients."""
    if catalogue is None:
        return []
    con = duckdb.connect(str(catalogue), read_only=True)
    try:
        q = """SELECT s.study_instance_uid, s.study_date, p.patient_id, p.issuer_of_patient_id, p.patient_name,
                      p.patient_birth_date, p.patient_sex
               FROM study s JOIN patient p USING (patient_id) WHERE {where}
               ORDER BY s.study_date DESC, s.study_instance_uid LIMIT {n}"""
        rows = con.execute(q.format(where=f"s.study_date >= DATE '{SPREAD_END}' - 90", n=3)).fetchall()
        rows += con.execute(q.format(where="year(s.study_date) = 2019", n=1)).fetchall()
        cols = [d[0] for d in con.description]
    finally:
        con.close()
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _da(value: dt.date) -> str:
    return value.strftime("%Y%m%d")


def _rewrite(ds: Any, target: dict[str, Any] | None, day: dt.date, late_day: dt.date) -> dt.datetime:
    """Date a file's new study ``day`` or, with ``target``, make it a new series of that catalogued
    study under its patient, acquired ``late_day``; returns the file's arrival time (its mtime)."""
    if target is None:
        for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            if kw in ds:
                setattr(ds, kw, _da(day))
        return dt.datetime.combine(day, dt.time(12), dt.UTC)
    ds.StudyInstanceUID = target["study_instance_uid"]
    ds.StudyDate = _da(target["study_date"])
    for kw in ("SeriesDate", "AcquisitionDate", "ContentDate"):
        if kw in ds:
            setattr(ds, kw, _da(late_day))
    ds.PatientID = target["patient_id"]
    ds.IssuerOfPatientID = target["issuer_of_patient_id"] or ""
    ds.PatientName = target["patient_name"] or ""
    ds.PatientBirthDate = _da(target["patient_birth_date"]) if target["patient_birth_date"] else ""
    ds.PatientSex = target["patient_sex"] or ""
    return dt.datetime.combine(late_day, dt.time(14), dt.UTC)


def ensure_files(workdir: Path, n: int, into: tuple[int, Path] | None) -> tuple[Path, dict[str, Any]]:
    """The cached landing set: ``n`` small files, 5% of them new series of existing studies."""
    import pydicom

    from pacs import synth

    label = f"files-{n}-into-{into[0]}" if into else f"files-{n}-new"
    root = workdir / "ingest_scale" / label
    marker = root.with_name(root.name + ".complete")
    if root.is_dir() and marker.exists():
        return root, json.loads(marker.read_text())
    common.rmtree(root)
    raw = root.with_name(root.name + ".raw")
    common.rmtree(raw)
    t0 = time.perf_counter()
    result = synth.generate_small_files(raw, n, seed=11, per_series=PER_SERIES)
    files = sorted(result.files, key=lambda f: (f.study_instance_uid, f.series_instance_uid, f.path))
    # Series in the generator's order; whole series from the end go to existing studies.
    series_order = list(dict.fromkeys(f.series_instance_uid for f in result.files))
    per_series: dict[str, int] = {}
    for f in files:
        per_series[f.series_instance_uid] = per_series.get(f.series_instance_uid, 0) + 1
    targets = existing_studies(into[1]) if into else []
    moved: dict[str, dict[str, Any]] = {}
    if targets:
        want, got = round(n * EXISTING_SHARE), 0
        for k, uid in enumerate(reversed(series_order)):
            if got >= want:
                break
            moved[uid] = targets[k % len(targets)]
            got += per_series[uid]
    today = dt.date.today()
    study_day: dict[str, dt.date] = {}
    for f in result.files:
        if f.study_instance_uid not in study_day:
            study_day[f.study_instance_uid] = today - dt.timedelta(days=1 + len(study_day) % 7)
    late_day = today - dt.timedelta(days=1)
    counts = {"files": 0, "new_study_files": 0, "existing_study_files": 0, "bytes": 0}
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f.path)
        target = moved.get(f.series_instance_uid)
        received = _rewrite(ds, target, study_day[f.study_instance_uid], late_day) + dt.timedelta(seconds=i % 3600)
        counts["new_study_files" if target is None else "existing_study_files"] += 1
        rel = Path(f.path).relative_to(raw)
        dst = root / rel.parts[0] / _da(received.date()) / rel.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dst)
        os.utime(dst, (received.timestamp(), received.timestamp()))
        counts["files"] += 1
        counts["bytes"] += dst.stat().st_size
    common.rmtree(raw)
    info = {**counts, "series": len(series_order), "per_series": PER_SERIES,
            "new_studies": len({f.study_instance_uid for f in files if f.series_instance_uid not in moved}),
            "existing_studies": sorted({t["study_instance_uid"] for t in moved.values()}),
            "existing_study_dates": sorted({str(t["study_date"]) for t in moved.values()}),
            "existing_from_catalogue_images": into[0] if into else None,
            "new_study_dates": [str(min(study_day.values())), str(max(study_day.values()))],
            "generated_on": str(today), "build_s": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps(info))
    log(f"generated {label}: {counts['files']} files ({counts['existing_study_files']} into "
        f"{len(info['existing_studies'])} existing studies), {counts['bytes'] / 1e6:.1f} MB in {info['build_s']}s")
    return root, info


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------

def listing(root: Path) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for path in common.list_files(root) if root.exists() else []:
        st = path.stat()
        out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def written(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, Any]:
    changed = [p for p, v in after.items() if before.get(p) != v]
    return {"bytes": sum(after[p][0] for p in changed), "files_written": len(changed),
            "files_removed": len(set(before) - set(after)), "files": len(after),
            "total_bytes": sum(v[0] for v in after.values()),
            "written_paths": dict(sorted(((p, after[p][0]) for p in changed), key=lambda kv: -kv[1])[:40])}


def _write_bytes() -> int | None:
    try:
        return int(psutil.Process().io_counters().write_bytes)
    except (AttributeError, psutil.Error):
        return None


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(str(path) + ".wal")) if p.exists())


def warm_up(files: Path, args: argparse.Namespace, n: int = 50) -> float:
    """An untimed run of ``n`` of the files into a throw-away archive, so that the first measured
    size (the empty catalogue) does not pay the process' first imports and caches alone."""
    from pacs import intake
    from pacs.catalogue import snapshot
    from pacs.config import load_config

    base = args.workdir / "ingest_scale" / "run" / "warm-up"
    common.rmtree(base)
    cfg = load_config(common.write_config(base, batch_size=args.batch_size, workers=args.workers,
                                          fsync=not args.no_fsync))
    for path in common.list_files(files)[:n]:
        target = base / "landing" / path.relative_to(files)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    t = time.perf_counter()
    snapshot.refresh(cfg)
    ids = intake.sweep(cfg, run_id="warm-up")
    for b in ids:
        intake.process_batch(cfg, b)
    intake.merge_batches(cfg, ids, run_id="warm-up")
    intake.finalize_batches(cfg, ids)
    snapshot.refresh(cfg)
    snapshot.with_snapshot(cfg.parquet, lambda con: con.execute("SELECT count(*) FROM image").fetchall())
    elapsed = time.perf_counter() - t
    common.rmtree(base)
    return round(elapsed, 2)


def _archive(base: Path, args: argparse.Namespace) -> Any:
    from pacs.config import load_config

    return load_config(common.write_config(base, batch_size=args.batch_size, workers=args.workers,
                                           fsync=not args.no_fsync))


def prepare(n: int, catalogue_src: Path | None, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """A fresh archive holding a copy of the catalogue and its initial snapshot (timed apart)."""
    from pacs.catalogue import snapshot

    base = args.workdir / "ingest_scale" / "run" / (f"size-{n}" if args.rounds == 1 else f"size-{n}-pristine")
    common.rmtree(base)
    cfg = _archive(base, args)
    db = base / "catalogue" / "pacs.duckdb"
    out: dict[str, Any] = {"catalogue_images": n}
    t = time.perf_counter()
    if catalogue_src is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(catalogue_src, db)
    out["copy_catalogue_s"] = round(time.perf_counter() - t, 1)
    log(f"size {n:,}: initial snapshot refresh (not part of the timed run) ...")
    t = time.perf_counter()
    out["initial_snapshot_info"] = snapshot.refresh(cfg)
    out["initial_snapshot_s"] = round(time.perf_counter() - t, 3)
    snap = listing(base / "catalogue" / "parquet")
    out["initial_snapshot_files"] = len(snap)
    out["initial_snapshot_bytes"] = sum(v[0] for v in snap.values())
    log(f"size {n:,}: initial snapshot {out['initial_snapshot_s']:.1f}s ({len(snap)} files, "
        f"{out['initial_snapshot_bytes'] / 1e6:.0f} MB)")
    # the merge's SOP-instance index (pacs.catalogue.sop_index), built once like the snapshot
    from pacs import catalogue
    from pacs.catalogue import sop_index

    t = time.perf_counter()
    with catalogue.opened(db) as con:
        index = sop_index.open_index(con, db)
    out["initial_sop_index_s"] = round(time.perf_counter() - t, 3)
    out["initial_sop_index_rows"] = index.rows if index is not None else None
    out["initial_sop_index_bytes"] = sum(p.stat().st_size for p in sop_index.index_dir(db).iterdir())
    log(f"size {n:,}: SOP-instance index built in {out['initial_sop_index_s']:.1f}s "
        f"({out['initial_sop_index_bytes'] / 1e6:.0f} MB)")
    return base, out


@contextlib.contextmanager
def _statement_times(into: dict[str, float], *, enabled: bool) -> Iterator[None]:
    """With ``enabled``, the seconds of each statement that ``pacs.catalogue.db.run`` executes
    (keyed ``<sql file>#<n> <its start>``), added into ``into``; the step's other time is Python,
    opening and closing the catalogue (DuckDB checkpoints at close) and direct ``execute`` calls."""
    if not enabled:
        yield
        return
    from pacs.catalogue import db, sql

    original = db.run

    def run(con: Any, name: str, params: dict[str, Any] | None = None) -> None:
        for i, stmt in enumerate(sql.statements(name)):
            t = time.perf_counter()
            con.execute(stmt, sql.params_for(stmt, params or {}))
            key = f"{name}#{i} {' '.join(stmt.split())[:60]}"
            into[key] = into.get(key, 0.0) + time.perf_counter() - t

    db.run = run
    try:
        yield
    finally:
        db.run = original


def measure(n: int, prepared: Path, files: Path, n_files: int, args: argparse.Namespace
            ) -> tuple[dict[str, Any], Any, Path]:
    """One timed run of the files into the prepared archive (into a copy of it with ``--rounds``)."""
    from pacs import intake
    from pacs.catalogue import snapshot

    if args.rounds == 1:
        base, cfg = prepared, _archive(prepared, args)
    else:
        base = prepared.with_name(f"size-{n}-round")
        common.rmtree(base)
        cfg = _archive(base, args)
        shutil.copytree(prepared / "catalogue", base / "catalogue", copy_function=shutil.copy2)
    db = base / "catalogue" / "pacs.duckdb"
    snap_root = base / "catalogue" / "parquet"
    before = listing(snap_root)
    common.copy_tree(files, base / "landing")
    os.sync()
    db_before = _file_bytes(db)
    log(f"size {n:,}: timing the run of {n_files:,} files ...")
    steps: dict[str, float] = {}
    wbytes: dict[str, int | None] = {}

    sql_times: dict[str, dict[str, float]] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        w0, t0 = _write_bytes(), time.perf_counter()
        with _statement_times(sql_times.setdefault(name, {}), enabled=args.sql_times):
            value = fn()
        steps[name] = time.perf_counter() - t0
        w1 = _write_bytes()
        wbytes[name] = w1 - w0 if w0 is not None and w1 is not None else None
        return value

    t_all = time.perf_counter()
    ids = step("sweep", lambda: intake.sweep(cfg, run_id="bench"))
    step("process", lambda: [intake.process_batch(cfg, b) for b in ids])
    summary = step("merge", lambda: intake.merge_batches(cfg, ids, run_id="bench"))
    step("finalize", lambda: intake.finalize_batches(cfg, ids))
    info = step("snapshot", lambda: snapshot.refresh(cfg))
    total = time.perf_counter() - t_all
    after = listing(snap_root)
    images = common.catalogue_images(db)
    left = common.count_files(base / "landing")
    problems = []
    if images != n + n_files:
        problems.append(f"catalogue holds {images} images, expected {n + n_files}")
    if left:
        problems.append(f"{left} files left in landing")
    catalogued = summary.get("catalogued") if isinstance(summary, dict) else None
    if catalogued is not None and catalogued != n_files:
        problems.append(f"merge catalogued {catalogued} of {n_files}")
    out = {
        "total_s": round(total, 3), "steps_s": {k: round(v, 3) for k, v in steps.items()},
        "files_per_s": round(n_files / total, 1), "batches": len(ids),
        "snapshot_written": written(before, after), "snapshot_info": info,
        "process_write_bytes": wbytes, "catalogue_file_growth_bytes": _file_bytes(db) - db_before,
        "merge_summary": summary, "ok": not problems, "problems": problems, "catalogue_images_after": images,
    }
    if args.sql_times:
        out["sql_s"] = {k: {"statements_s": round(sum(v.values()), 3),
                            "top": {q: round(t, 3) for q, t in sorted(v.items(), key=lambda kv: -kv[1])[:6]}}
                        for k, v in sql_times.items() if v}
        for k, v in out["sql_s"].items():
            log(f"size {n:,}: {k}: SQL statements {v['statements_s']:.2f}s of {steps[k]:.2f}s; top: "
                + "; ".join(f"{t:.3f} {q}" for q, t in list(v["top"].items())[:3]))
    sw = out["snapshot_written"]
    log(f"size {n:,}: run {total:.2f}s ({', '.join(f'{k} {v:.2f}' for k, v in steps.items())}); "
        f"snapshot wrote {sw['bytes'] / 1e6:.1f} MB in {sw['files_written']} files"
        f"{'' if out['ok'] else '  PROBLEMS: ' + '; '.join(problems)}")
    return out, cfg, base


# ---------------------------------------------------------------------------------------------
# query latency
# ---------------------------------------------------------------------------------------------

def _median_of(fn: Callable[[], list[Any]], repeat: int) -> dict[str, Any]:
    times: list[float] = []
    rows: list[Any] = []
    error = None
    for _ in range(repeat):
        t = time.perf_counter()
        try:
            rows = fn()
        except Exception as exc:  # noqa: BLE001 - reported, the other queries still run
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            break
        times.append(time.perf_counter() - t)
    return {"median_s": round(statistics.median(times), 4) if times else None,
            "each_s": [round(x, 4) for x in times], "rows": len(rows), "first_row": rows[0] if rows else None,
            "error": error}


def query_latency(cfg: Any, snap_root: Path, repeat: int) -> dict[str, Any]:
    from pacs.catalogue import snapshot

    out: dict[str, Any] = {}
    for name, (table, text) in QUERIES.items():
        q_snap = text.format(study="study", image="image")
        q_plain = text.format(**{table: f"read_parquet('{snap_root}/{table}/**/*.parquet', hive_partitioning=true)"})

        def via_snapshot(q: str = q_snap) -> list[Any]:
            return snapshot.with_snapshot(cfg.parquet, lambda con: con.execute(q).fetchall())

        def plain(q: str = q_plain) -> list[Any]:
            con = duckdb.connect()
            try:
                return con.execute(q).fetchall()
            finally:
                con.close()

        out[name] = {"with_snapshot": _median_of(via_snapshot, repeat), "plain_duckdb": _median_of(plain, repeat),
                     "sql": q_snap}
        log(f"query {name}: with_snapshot {out[name]['with_snapshot']['median_s']}s, "
            f"plain {out[name]['plain_duckdb']['median_s']}s")
    return out


# ---------------------------------------------------------------------------------------------

def print_results(runs: dict[int, dict[str, Any]], queries: dict[str, Any], files_info: dict[str, Any],
                  info: dict[str, Any], args: argparse.Namespace) -> dict[int, bool]:
    """The readable tables; returns, per non-empty size, whether the 1.5x target was met."""
    sizes, n_files, largest = list(runs), files_info["files"], max(runs)
    rows = []
    for n, r in runs.items():
        sw = r["snapshot_written"]
        rows.append([f"{n:,}", f"{r['initial_snapshot_s']:.1f}", *(f"{r['steps_s'][k]:.2f}" for k in STEPS),
                     f"{r['total_s']:.2f}", common.fmt(r["ratio_to_empty"], 2), f"{sw['bytes'] / 1e6:.2f}",
                     f"{sw['files_written']}/{sw['files']}",
                     round(sw["total_bytes"] / 1e6, 1), "ok" if r["ok"] else "FAILED: " + "; ".join(r["problems"])])
    print(f"\nOne run of {n_files:,} files ({files_info['existing_study_files']} into "
          f"{len(files_info['existing_studies'])} existing studies) into catalogues of "
          f"{', '.join(f'{n:,}' for n in sizes)} images; in-process steps, batch_size={args.batch_size} "
          f"workers={args.workers} fsync={not args.no_fsync} (DuckDB {info['duckdb']}, {info['cpus']} CPUs, "
          f"load at start {info['load_avg_at_start']})")
    common.print_table(["images", "initial snapshot s", *(f"{k} s" for k in STEPS), "total s", "x empty",
                        "snapshot MB written", "snapshot files written/all", "snapshot MB", "check"], rows)
    verdicts = {n: (r["ratio_to_empty"] is not None and r["ratio_to_empty"] <= TARGET_RATIO)
                for n, r in runs.items() if n}
    if 0 in runs and verdicts:
        print("target (a run costs <= 1.5x the empty case): "
              + ", ".join(f"{n:,}: {runs[n]['ratio_to_empty']}x {'met' if ok else 'NOT met'}"
                          for n, ok in verdicts.items()))
    if queries:
        qrows = []
        for name, q in queries.items():
            for path in ("with_snapshot", "plain_duckdb"):
                d = q[path]
                each = " / ".join(f"{x:.3f}" for x in d["each_s"])
                qrows.append([name, path, common.fmt(d["median_s"], 3), each, d["rows"], d["error"] or "ok"])
        common.print_table(["query", "path", "median s", "each s", "rows", "check"], qrows,
                           f"Query latency over the snapshot of {largest:,} (+{n_files:,}) images, "
                           f"median of {args.repeat}")
        day = queries[next(iter(QUERIES))]
        met = {p: day[p]["median_s"] is not None and day[p]["median_s"] <= TARGET_QUERY_S for p in day if p != "sql"}
        print(f"target (day-volume query <= {TARGET_QUERY_S:.0f} s): "
              + ", ".join(f"{p} {day[p]['median_s']}s {'met' if ok else 'NOT met'}" for p, ok in met.items()))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=None, help="catalogue sizes in images (default 0,10000000,30000000)")
    ap.add_argument("--files", type=int, default=None, help="files in the run (default 2000)")
    ap.add_argument("--small", action="store_true", help="sizes 0,1000000 and 500 files")
    ap.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--repeat", type=int, default=5, help="query repetitions (the median is reported)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="timed runs per size, interleaved, each on a copy of the prepared archive (median reported)")
    ap.add_argument("--keep", action="store_true", help="keep the run archives")
    ap.add_argument("--sql-times", action="store_true",
                    help="also time each catalogue SQL statement of the run (reported per step, as sql_s)")
    args = ap.parse_args(argv)
    args.workdir = args.workdir.resolve()
    sizes = [int(s) for s in (args.sizes or ("0,1000000" if args.small else "0,10000000,30000000")).split(",")]
    n_files = args.files or (500 if args.small else 2000)
    info, code = common.machine_info(), common.code_version()
    phases: dict[str, float] = {}

    t = time.perf_counter()
    catalogues: dict[int, tuple[Path, dict[str, Any]]] = {}
    for n in sorted(s for s in set(sizes) if s):
        catalogues[n] = ten_year_catalogue(args.workdir, n)
    phases["catalogues_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    smallest = min(catalogues) if catalogues else None
    files_root, files_info = ensure_files(args.workdir, n_files,
                                          (smallest, catalogues[smallest][0]) if smallest else None)
    phases["files_s"] = round(time.perf_counter() - t, 1)

    phases["warm_up_s"] = warm_up(files_root, args)
    prepared: dict[int, tuple[Path, dict[str, Any]]] = {}
    for n in sizes:
        t = time.perf_counter()
        prepared[n] = prepare(n, catalogues[n][0] if n else None, args)
        phases[f"prepare_{n}_s"] = round(time.perf_counter() - t, 1)
    rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    queries: dict[str, Any] = {}
    largest = max(sizes)
    for round_no in range(args.rounds):
        for n in sizes:  # interleaved: each round runs every size once
            t = time.perf_counter()
            result, cfg, base = measure(n, prepared[n][0], files_root, n_files, args)
            rounds[n].append(result)
            if n == largest and round_no == args.rounds - 1:
                tq = time.perf_counter()
                queries = query_latency(cfg, base / "catalogue" / "parquet", args.repeat)
                phases["queries_s"] = round(time.perf_counter() - tq, 1)
            if not args.keep:
                common.rmtree(base)
            phases[f"run_{n}_s"] = round(phases.get(f"run_{n}_s", 0) + time.perf_counter() - t, 1)
    if not args.keep:
        for base, _info in prepared.values():
            common.rmtree(base)

    # Each size is reported by its median round (for an even count, the slower middle one).
    runs: dict[int, dict[str, Any]] = {}
    for n, results in rounds.items():
        chosen = dict(sorted(results, key=lambda r: r["total_s"])[len(results) // 2])
        runs[n] = {**prepared[n][1], **chosen, "rounds_total_s": [r["total_s"] for r in results],
                   "rounds_steps_s": [r["steps_s"] for r in results],
                   "ok": all(r["ok"] for r in results), "problems": [p for r in results for p in r["problems"]]}
    empty = runs.get(0, {}).get("total_s")
    for run in runs.values():
        run["ratio_to_empty"] = common.ratio(run["total_s"], empty)
        run["step_ratio_to_empty"] = {k: common.ratio(v, runs[0]["steps_s"][k]) if 0 in runs else None
                                      for k, v in run["steps_s"].items()}

    verdicts = print_results(runs, queries, files_info, info, args)
    prov = common.provenance(code)
    print(f"code: git {prov['git_head']}{' + uncommitted changes' if prov['measured_code_dirty'] else ''}, "
          f"digest {prov['code_digest']}"
          f"{'  WARNING: the code under test changed during this run' if prov['code_changed_during_run'] else ''}")
    print(f"wall time by part (s): {phases}")
    print()
    common.final_json({"benchmark": "ingest_scale", "small": args.small, "code": prov, "machine": info,
                       "sizes": sizes, "files": n_files, "files_info": files_info,
                       "catalogues": {str(n): c[1] for n, c in catalogues.items()},
                       "runs": {str(n): r for n, r in runs.items()}, "queries": queries,
                       "targets": {"ratio": TARGET_RATIO, "query_s": TARGET_QUERY_S,
                                   "ratio_met": {str(n): ok for n, ok in verdicts.items()}},
                       "phases_s": phases})
    return 0 if all(r["ok"] for r in runs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
