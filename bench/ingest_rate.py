"""End-to-end ingest rate of ``pacs_ingest`` against Orthanc 1.10 and pydicom, side by side.

For each of two sets — (a) 2,000 CT slices of 512x512 16-bit (~0.5 MB each) and (b) 10,000
small MR files (~12 KB) — in one run of this script:

- **pacs, cold** — ``airflow dags test pacs_ingest`` as a subprocess on a fresh archive
  (landing, online, quarantine, work and catalogue under one folder on one filesystem,
  ``settle_seconds: 0``) and a fresh, migrated AIRFLOW_HOME. Files/s over the DAG run's own
  recorded duration (``dag_run.start_date/end_date`` in the metadata DB) and over the whole
  command (interpreter start, DAG parsing, serialisation included).
- **pacs, warm harness** — ``bench/dag_test_warm.py``: one Python process that builds Airflow's
  in-process execution API app first (``airflow dags test`` builds it lazily inside the run, on
  the first task) and then calls ``dag.test()``; files/s over the returned DagRun's duration.
- **Orthanc 1.10** — ``/usr/sbin/Orthanc`` with a fresh SQLite index and storage folder; every
  file's bytes POSTed to ``/instances`` by 2 concurrent keep-alive clients; files/s from the
  first POST to the last response; every response must be 200 and ``/statistics`` must count N.
- **Orthanc 1.10 on PostgreSQL** — the same, with Debian's ``orthanc-postgresql`` index plugin
  on a throw-away PostgreSQL 15 cluster the script starts (Orthanc's recommended production
  set-up; storage stays on the filesystem).
- **the machine's limit** — read + sha256 + header parse (``pacs.dicom.read_header_bytes``) of
  every file on all cores, storing nothing: what no ingest can beat here.
- **pydicom** — ``pydicom.dcmread(path, stop_before_pixels=True)`` over the same files, one
  process, page cache warm.

Every pacs run is verified: the DAG run succeeded, landing holds no file and the catalogue
holds exactly N images (read-only ``SELECT count(*) FROM image``); otherwise it is reported
as failed. Peak RSS is sampled every 50 ms over each process tree.

Run: ``.venv/bin/python bench/ingest_rate.py [--small | --sustained]`` (``--small``: 10% of the
sizes; ``--sustained``: 20,000 CT slices and 100,000 small files, where fixed costs are small).
The sets are generated once and cached under ``--workdir`` (default /tmp/pacs-bench).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

SETS = {"ct": 2000, "small": 10000}
SUSTAINED = {"ct": 20000, "small": 100000}  # sets large enough that fixed costs are small
LABELS = {"ct": "(a) CT 512x512x16 (~0.5 MB)", "small": "(b) small MR (~12 KB)"}


def run_pacs(kind: str, n: int, src: Path, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One ingest of the set through the DAG; ``mode`` is ``cold`` or ``warm``."""
    base = args.workdir / "run" / f"{kind}-{n}-pacs-{mode}"
    common.rmtree(base)
    cfg = common.write_config(base, batch_size=args.batch_size, workers=args.workers, fsync=args.fsync)
    common.copy_tree(src, base / "landing")
    env = common.prepare_airflow_home(base / "airflow", cfg)
    os.sync()  # the copy's dirty pages are written back before timing, not during it
    if mode == "cold":
        cmd = [common.bin_path("airflow"), "dags", "test", "pacs_ingest"]
    else:
        cmd = [sys.executable, str(Path(__file__).with_name("dag_test_warm.py"))]
    res = common.run_sampled(cmd, env=env, log_path=base / f"dag-test-{mode}.log", timeout=args.timeout)
    times = common.dag_run_times(base / "airflow")
    harness: dict[str, Any] = {}
    if mode == "warm":
        for line in reversed(res.stdout_tail.splitlines()):
            if line.startswith('{"state"'):
                harness = json.loads(line)
                break
    left = common.count_files(base / "landing")
    images = common.catalogue_images(base / "catalogue" / "pacs.duckdb")
    quarantined = common.count_files(base / "quarantine")
    problems = []
    if res.returncode:
        problems.append(f"exit code {res.returncode}")
    if times["state"] != "success":
        problems.append(f"dag_run state {times['state']}")
    if left:
        problems.append(f"{left} file(s) left in landing")
    if images != n:
        problems.append(f"catalogue holds {images} images, expected {n}")
    duration = harness.get("dag_run_duration_s") if mode == "warm" else times["duration_s"]
    out = {
        "mode": mode, "ok": not problems, "problems": problems,
        "command_wall_s": round(res.wall_s, 3), "dag_run_duration_s": duration,
        "db_dag_run_duration_s": times["duration_s"],
        "files_per_s_dag": round(n / duration, 1) if duration else None,
        "files_per_s_command": round(n / res.wall_s, 1),
        "peak_rss": res.rss.as_dict(), "peak_rss_during": common.running_at(times, res.rss.max_process_at),
        "tasks": times["tasks"], "harness": harness,
        "catalogue_images": images, "landing_left": left, "quarantine_files": quarantined,
        "log": str(base / f"dag-test-{mode}.log"),
    }
    if problems:
        out["log_tail"] = res.stdout_tail[-1500:]
    if not args.keep and not problems:
        common.rmtree(base)
    return out


def run_orthanc(kind: str, n: int, files: list[Path], args: argparse.Namespace, *, index: str = "sqlite"
                ) -> dict[str, Any]:
    """Orthanc 1.10 on its default SQLite index, or (``index="postgresql"``) on PostgreSQL 15."""
    if index == "postgresql":
        with common.Postgres(args.workdir / "run" / f"{kind}-{n}-postgres") as pg:
            return _post_to_orthanc(kind, n, files, args, pg)
    return _post_to_orthanc(kind, n, files, args, None)


def _post_to_orthanc(kind: str, n: int, files: list[Path], args: argparse.Namespace,
                     pg: common.Postgres | None) -> dict[str, Any]:
    base = args.workdir / "run" / f"{kind}-{n}-orthanc{'-pg' if pg else ''}"
    for p in files:  # warm the page cache: the clients' reads are not what is measured
        p.read_bytes()
    orthanc = common.Orthanc(base, postgres=pg)
    orthanc.start()
    try:
        os.sync()
        assert orthanc.proc is not None
        with common.RssSampler(orthanc.proc.pid) as sampler:
            posted = common.post_all(orthanc.port, files, clients=args.clients)
        stats = orthanc.get("/statistics")
    finally:
        orthanc.stop()
    problems = []
    if posted["errors"]:
        problems.append(f"client errors: {posted['errors'][:3]}")
    if set(posted["statuses"]) != {200}:
        problems.append(f"HTTP statuses {posted['statuses']}")
    if int(stats.get("CountInstances", -1)) != n:
        problems.append(f"CountInstances {stats.get('CountInstances')}, expected {n}")
    out = {
        "ok": not problems, "problems": problems, "elapsed_s": round(posted["elapsed_s"], 3),
        "files_per_s": round(n / posted["elapsed_s"], 1), "statuses": posted["statuses"],
        "reconnects": posted.get("reconnects", 0),
        "count_instances": stats.get("CountInstances"), "peak_rss": sampler.peak.as_dict(),
        "clients": args.clients, "index": "postgresql" if pg else "sqlite",
    }
    if not args.keep:
        common.rmtree(base)
    return out


def _limit_one(path: str) -> int:
    import hashlib

    from pacs.dicom import read_header_bytes

    data = Path(path).read_bytes()
    hashlib.sha256(data).hexdigest()
    try:
        read_header_bytes(data)
    except Exception:  # noqa: BLE001 - the limit counts the work, whatever the file holds
        return 0
    return 1


def run_limit(files: list[Path]) -> dict[str, Any]:
    """The machine's limit: read + sha256 + header parse of every file, on all cores, no storing."""
    import concurrent.futures as cf

    for p in files:  # warm the page cache, as for the other variants
        p.read_bytes()
    n = os.cpu_count() or 1
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(max_workers=n) as pool:
        parsed = sum(pool.map(_limit_one, [str(p) for p in files], chunksize=64))
    elapsed = time.perf_counter() - t0
    return {"elapsed_s": round(elapsed, 3), "files_per_s": round(len(files) / elapsed, 1), "cores": n,
            "parsed": parsed}


def run_pydicom(files: list[Path]) -> dict[str, Any]:
    import pydicom

    for p in files:  # warm the page cache
        p.read_bytes()
    t0 = time.perf_counter()
    for p in files:
        pydicom.dcmread(p, stop_before_pixels=True)
    elapsed = time.perf_counter() - t0
    return {"elapsed_s": round(elapsed, 3), "files_per_s": round(len(files) / elapsed, 1)}


def bench_set(kind: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    src = common.ensure_set(kind, n, args.workdir)
    files = common.list_files(src)
    assert len(files) == n, f"{src} holds {len(files)} files, expected {n}"
    size = sum(p.stat().st_size for p in files)
    result: dict[str, Any] = {"set": kind, "files": n, "bytes": size, "mean_file_bytes": size // n}
    for variant in args.order:
        print(f"[{kind}] {variant} ...", file=sys.stderr, flush=True)
        if variant in ("cold", "warm"):
            result[f"pacs_{variant}"] = run_pacs(kind, n, src, variant, args)
        elif variant == "orthanc":
            result["orthanc"] = run_orthanc(kind, n, files, args)
        elif variant == "orthanc_pg":
            result["orthanc_pg"] = run_orthanc(kind, n, files, args, index="postgresql")
        elif variant == "limit":
            result["limit"] = run_limit(files)
        elif variant == "pydicom":
            result["pydicom"] = run_pydicom(files)
    peers = [result[k]["files_per_s"] for k in ("orthanc", "orthanc_pg") if result.get(k, {}).get("ok")]
    orth = max(peers) if peers else None  # the faster Orthanc
    cold, warm = result.get("pacs_cold", {}), result.get("pacs_warm", {})
    limit = result.get("limit", {}).get("files_per_s")

    def good(r: dict[str, Any], key: str) -> float | None:
        return r.get(key) if r.get("ok") else None

    result["ratios"] = {
        "pacs_cold_dag_vs_orthanc": common.ratio(good(cold, "files_per_s_dag"), orth),
        "pacs_warm_dag_vs_orthanc": common.ratio(good(warm, "files_per_s_dag"), orth),
        "pacs_cold_command_vs_orthanc": common.ratio(good(cold, "files_per_s_command"), orth),
        "pacs_warm_command_vs_orthanc": common.ratio(good(warm, "files_per_s_command"), orth),
        "pydicom_vs_orthanc": common.ratio(result.get("pydicom", {}).get("files_per_s"), orth),
        "pacs_cold_dag_vs_limit": common.ratio(good(cold, "files_per_s_dag"), limit),
        "pacs_warm_dag_vs_limit": common.ratio(good(warm, "files_per_s_dag"), limit),
        "orthanc_pg_vs_sqlite": common.ratio(result.get("orthanc_pg", {}).get("files_per_s"),
                                             result.get("orthanc", {}).get("files_per_s")),
    }
    return result


def print_set(r: dict[str, Any]) -> None:
    good_peers = [r[k] for k in ("orthanc", "orthanc_pg") if r.get(k, {}).get("ok")]
    orth = max(good_peers, key=lambda o: o["files_per_s"], default={})  # "x Orthanc": the faster one
    rows: list[list[Any]] = []
    for key, label in (("pacs_cold", "pacs, `airflow dags test` (cold)"),
                       ("pacs_warm", "pacs, dag.test() warmed API")):
        p = r.get(key)
        if not p:
            continue
        status = "ok" if p["ok"] else "FAILED: " + "; ".join(p["problems"])
        rows.append([f"{label}: DAG run recorded", p["files_per_s_dag"], p["dag_run_duration_s"],
                     common.ratio(p["files_per_s_dag"], orth.get("files_per_s")),
                     p["peak_rss"]["peak_process_rss_mb"], p["peak_rss"]["peak_tree_rss_mb"], status])
        rows.append([f"{label}: whole command", p["files_per_s_command"], p["command_wall_s"],
                     common.ratio(p["files_per_s_command"], orth.get("files_per_s")), None, None, ""])
    for key, label in (("orthanc", "Orthanc 1.10, SQLite index, POST /instances"),
                       ("orthanc_pg", "Orthanc 1.10, PostgreSQL 15 index, POST /instances")):
        o = r.get(key)
        if o:
            rows.append([f"{label} x{o['clients']}", o["files_per_s"], o["elapsed_s"],
                         common.ratio(o["files_per_s"], orth.get("files_per_s")),
                         o["peak_rss"]["peak_process_rss_mb"], o["peak_rss"]["peak_tree_rss_mb"],
                         "ok" if o["ok"] else "FAILED: " + "; ".join(o["problems"])])
    if r.get("limit"):
        p = r["limit"]
        rows.append([f"machine limit: read + sha256 + header, {p['cores']} cores", p["files_per_s"], p["elapsed_s"],
                     common.ratio(p["files_per_s"], orth.get("files_per_s")), None, None, ""])
    if r.get("pydicom"):
        p = r["pydicom"]
        rows.append(["pydicom dcmread(stop_before_pixels)", p["files_per_s"], p["elapsed_s"],
                     common.ratio(p["files_per_s"], orth.get("files_per_s")), None, None, ""])
    title = (f"{LABELS.get(r['set'], r['set'])}: {r['files']:,} files, {r['bytes'] / 1e6:,.0f} MB "
             f"(mean {r['mean_file_bytes']:,} B)")
    common.print_table(["variant", "files/s", "seconds", "x Orthanc", "peak proc MB", "peak tree MB", "check"],
                       rows, title)
    for key in ("pacs_cold", "pacs_warm"):
        p = r.get(key)
        if not p or not p.get("tasks"):
            continue
        trows = [[tid, t["n"], t["first_start_s"], t["last_end_s"], t["busy_s"],
                  ", ".join(f"{s}={c}" for s, c in t["states"].items())]
                 for tid, t in sorted(p["tasks"].items(), key=lambda kv: kv[1]["first_start_s"] or 0)]
        extra = ""
        if p.get("harness"):
            h = p["harness"]
            extra = f" (harness: import+parse {h.get('import_and_parse_s')}s, API warm-up {h.get('warm_api_s')}s)"
        common.print_table(["task", "n", "start s", "end s", "busy s", "states"], trows,
                           f"  {key} task spans, relative to the DAG run start{extra}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="10%% of the sizes (a quick check)")
    ap.add_argument("--sustained", action="store_true",
                    help="the sustained sets: 20,000 CT slices (~10 GB) and 100,000 small files")
    ap.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    ap.add_argument("--sets", default="ct,small", help="comma-separated: ct, small")
    ap.add_argument("--batch-size", type=int, default=2000, help="ingest.batch_size (default: the default, 2000)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=True,
                    help="ingest.fsync of the archive configuration (default: true, the default)")
    ap.add_argument("--clients", type=int, default=2, help="concurrent Orthanc clients")
    ap.add_argument("--only", default="cold,warm,orthanc,orthanc_pg,limit,pydicom",
                    help="variants to run, in this order (cold, warm, orthanc, orthanc_pg, limit, pydicom)")
    ap.add_argument("--keep", action="store_true", help="keep the archives, Airflow homes and Orthanc storage")
    ap.add_argument("--timeout", type=float, default=3600.0)
    args = ap.parse_args(argv)
    args.order = [v.strip() for v in args.only.split(",") if v.strip()]
    args.workdir = args.workdir.resolve()
    scale = 0.1 if args.small else 1.0
    info = common.machine_info()
    code = common.code_version()
    results = []
    for kind in [s.strip() for s in args.sets.split(",") if s.strip()]:
        n = max(1, int((SUSTAINED if args.sustained else SETS)[kind] * scale))
        results.append(bench_set(kind, n, args))
    print(f"\npacs_ingest end to end vs Orthanc 1.10 (SQLite and PostgreSQL 15 indexes, {args.clients} clients), "
          "the machine's limit (read + sha256 + header parse on all cores) and pydicom; "
          f"batch_size={args.batch_size} workers={args.workers} fsync={args.fsync}; "
          f"{info['cpus']} CPUs, load at start {info['load_avg_at_start']}")
    for r in results:
        print_set(r)
    prov = common.provenance(code)
    print(f"code: git {prov['git_head']}{' + uncommitted changes' if prov['measured_code_dirty'] else ''}, "
          f"digest {prov['code_digest']}"
          f"{'  WARNING: the code under test changed during this run' if prov['code_changed_during_run'] else ''}")
    print()
    common.final_json({"benchmark": "ingest_rate", "small": args.small, "machine": info, "code": prov,
                       "settings": {"batch_size": args.batch_size, "workers": args.workers, "fsync": args.fsync,
                                    "clients": args.clients},
                       "sets": results})
    failed = [r["set"] for r in results for k in ("pacs_cold", "pacs_warm", "orthanc", "orthanc_pg")
              if k in r and not r[k]["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
