"""Benchmark: the capacity report over a synthetic 10-year catalogue (300,000 studies, 30,000,000 images).

The catalogue is generated straight into a DuckDB file with SQL (``include/sql/report_bench_catalogue.sql``:
``range()``, a realistic modality mix and sizes, five institutions, 8 % yearly growth with weekly
and yearly rhythm, studies older than three years offline, MG kept online five years, 2 % of the
old studies half-way through their migration, so the report must read their images) and cached
under ``--cache`` (generation takes a few minutes; the file is about 2.7 GB).

The report then runs in a child process exactly as the DAG's tasks do (extract from the live file
read-only, figures, charts, HTML, CSV, Parquet, JSON, ``latest`` copy); this script prints the
wall time, the child's CPU time and phase timings, and the peak RSS of the child and its children
(psutil, sampled every 10 ms, and the child's own high-water mark VmHWM). It prints figures; it
asserts nothing.

    .venv/bin/python bench/capacity_report.py                 # 300k studies, 30M images
    .venv/bin/python bench/capacity_report.py --studies 30000 --images 3000000   # quicker
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from pacs import catalogue  # noqa: E402
from pacs.catalogue import sql  # noqa: E402

FIRST_DAY = dt.date(2016, 1, 1)
REPORT_DATE = dt.date(2026, 1, 1)
GENERATOR_VERSION = 3

CHILD = textwrap.dedent("""
    import datetime as dt, json, resource, sys, time
    t0 = time.perf_counter()
    sys.path.insert(0, {plugins!r})
    from pacs.reports import capacity
    from pacs.config import load_config
    t1 = time.perf_counter()
    cfg = load_config({config!r})
    settings, policy = cfg.capacity, cfg.policy
    ex = capacity.extract(cfg, capacity.as_of_for(dt.date.fromisoformat({date!r})), policy=policy, settings=settings)
    t2 = time.perf_counter()
    report = capacity.build_report(cfg, ex, policy=policy, settings=settings, charts=False)
    t3 = time.perf_counter()
    report.charts = capacity.render_charts(report)
    t4 = time.perf_counter()
    written = capacity.write_report(report, cfg.reports)
    t5 = time.perf_counter()
    print(json.dumps({{
        "imports_s": t1 - t0, "extract_s": t2 - t1, "figures_s": t3 - t2, "charts_s": t4 - t3, "write_s": t5 - t4,
        "in_process_s": t5 - t0, "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        # VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's peak across exec).
        "vm_hwm_mb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024,
        "files": len(written["files"]), "output_mb": written["bytes"] / 1e6, "report": written["report"],
        "forecast": report.summary["forecast"].get("message"),
        "extract_rows": {{"image_cube": ex.image_cube.num_rows, "study_cube": ex.study_cube.num_rows,
                          "study_groups": ex.study_groups.num_rows}},
    }}))
""")


def generate(path: Path, studies: int, images: int, days: int) -> float:
    """Generate the catalogue into ``path`` (atomically); returns seconds taken."""
    import duckdb

    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(str(tmp))
    try:
        params = {"studies": studies, "images": images, "first_day": FIRST_DAY, "days": days,
                  "patients": max(studies * 2 // 5, 1), "online_years": 3}
        for stmt in sql.statements("report_bench_catalogue"):
            con.execute(stmt, sql.params_for(stmt, params))
        catalogue.ensure_schema(con)  # the tables the generator does not fill (quarantine, ...)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, path)
    return time.perf_counter() - started


def write_config(folder: Path, duckdb_path: Path) -> Path:
    cfg = {
        "landing": [str(folder / "landing")], "online": str(folder / "online"), "offline": str(folder / "offline"),
        "quarantine": str(folder / "quarantine"), "work": str(folder / "work"), "reports": str(folder / "reports"),
        "catalogue": {"duckdb": str(duckdb_path), "parquet": str(folder / "parquet")},
        "policy": {"online_retention_years": 3, "modality_overrides": {"MG": 5},
                   "watermarks": {"high": 0.85, "low": 0.75}},
        "capacity": {"online_bytes": "12 TB", "offline_bytes": "60 TB",
                     "price_per_gb_month": {"online": 0.10, "offline": 0.0125}},
    }
    path = folder / "pacs.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_child(config: Path) -> tuple[float, float, dict[str, object]]:
    """Run the report in a child process; (wall seconds, peak RSS MB of the process tree, child figures)."""
    code = CHILD.format(plugins=str(ROOT / "plugins"), config=str(config), date=REPORT_DATE.isoformat())
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.01)
    wall = time.perf_counter() - started
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"the report failed:\n{err}")
    return wall, peak / 2**20, json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=int, default=300_000)
    p.add_argument("--images", type=int, default=30_000_000)
    p.add_argument("--days", type=int, default=(REPORT_DATE - FIRST_DAY).days, help="history length (10 years)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pacs_bench")
    p.add_argument("--regenerate", action="store_true", help="generate the catalogue even if it is cached")
    p.add_argument("--runs", type=int, default=2, help="report runs (the first also warms the page cache)")
    args = p.parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    db = args.cache / f"catalogue-{args.studies}-{args.images}-{args.days}-v{GENERATOR_VERSION}.duckdb"
    if args.regenerate or not db.exists():
        print(f"generating {args.studies:,} studies / {args.images:,} images over {args.days} days into {db} ...",
              flush=True)
        print(f"  generated in {generate(db, args.studies, args.images, args.days):.1f} s "
              f"({db.stat().st_size / 1e9:.2f} GB)")
    else:
        print(f"using the cached catalogue {db} ({db.stat().st_size / 1e9:.2f} GB)")
    with tempfile.TemporaryDirectory(prefix="pacs-bench-report-") as tmp:
        config = write_config(Path(tmp), db)
        for run in range(1, args.runs + 1):
            wall, peak, child = run_child(config)
            print(f"run {run}: report in {wall:.2f} s wall (Python start and imports included), "
                  f"{child['cpu_s']:.2f} s CPU; peak RSS {peak:,.0f} MB (psutil, process tree), "
                  f"{child['vm_hwm_mb']:,.0f} MB (VmHWM)")
            print("  phases: " + ", ".join(f"{k[:-2]} {child[k]:.2f} s" for k in
                                           ("imports_s", "extract_s", "figures_s", "charts_s", "write_s")))
            print(f"  {child['files']} files, {child['output_mb']:.1f} MB; extract rows {child['extract_rows']}")
            print(f"  forecast: {child['forecast']}")
    print(f"machine: {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
          f"load average {os.getloadavg()[0]:.2f} (other processes share the CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
