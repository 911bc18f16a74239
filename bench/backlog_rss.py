"""Peak memory while ``pacs_ingest`` takes a 100,000-file backlog in one DAG run.

A cached set of 100,000 small MR files (``pacs.synth.generate_small_files``, ~12 KB each) is
copied into the landing folder of a fresh archive (``batch_size`` 2000 → 50 mapped ``process``
tasks; ``ingest.max_files_per_run`` is 200,000 and Airflow's ``max_map_length`` 1024, so one run
takes the whole backlog) and ingested by ``airflow dags test pacs_ingest`` in a fresh, migrated
AIRFLOW_HOME. The RSS of the command's whole process tree is sampled every 50 ms; the script
prints the peak RSS of any single process (and which task was running then), the peak of each
kind of process (by command line), the peak of the tree, the DAG run's recorded duration, the
command's wall time and files/s, and verifies that the catalogue holds 100,000 images and
landing is empty. Target (issue 9): peak RSS of any process under 500 MB.

With ``--executor local`` the run is made by Airflow's scheduler with the LocalExecutor and its
api-server instead (``bench/scheduler_run.py``): each task instance is a process of its own, as
deployed, so the figure is that of the largest task process (or of an Airflow component).

Run: ``.venv/bin/python bench/backlog_rss.py [--small] [--executor local]`` (``--small``: 10,000 files).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

TARGET_MB = 500


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="10,000 files instead of 100,000")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    ap.add_argument("--batch-size", type=int, default=2000, help="ingest.batch_size (default: the default, 2000)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--timeout", type=float, default=4 * 3600.0)
    ap.add_argument("--executor", choices=("dags-test", "local"), default="dags-test",
                    help="dags-test: `airflow dags test`, every task in one process; local: Airflow's scheduler "
                         "with the LocalExecutor and its api-server (bench/scheduler_run.py), each task a "
                         "process of its own, as deployed")
    args = ap.parse_args(argv)
    n = args.n or (10_000 if args.small else 100_000)
    workdir = args.workdir.resolve()
    src = common.ensure_set("small", n, workdir)
    base = workdir / "run" / f"backlog-{n}"
    common.rmtree(base)
    cfg = common.write_config(base, batch_size=args.batch_size, workers=args.workers, fsync=args.fsync)
    nbytes = common.copy_tree(src, base / "landing")
    env = common.prepare_airflow_home(base / "airflow", cfg)
    os.sync()
    info = common.machine_info()
    code = common.code_version()
    if args.executor == "local":
        how = "Airflow's scheduler (LocalExecutor, parallelism 2) and api-server"
        cmd = [sys.executable, str(Path(__file__).with_name("scheduler_run.py")), "--parallelism", "2",
               "--timeout", str(args.timeout)]
    else:
        how = "`airflow dags test pacs_ingest`"
        cmd = [common.bin_path("airflow"), "dags", "test", "pacs_ingest"]
    print(f"[backlog] {how} on {n:,} files ...", file=sys.stderr, flush=True)
    res = common.run_sampled(cmd, env=env, log_path=base / "dag-test.log", timeout=args.timeout, by_name=True)
    times = common.dag_run_times(base / "airflow")
    images = common.catalogue_images(base / "catalogue" / "pacs.duckdb")
    left = common.count_files(base / "landing")
    problems = []
    if res.returncode:
        problems.append(f"exit code {res.returncode}")
    if times["state"] != "success":
        problems.append(f"dag_run state {times['state']}")
    if images != n:
        problems.append(f"catalogue holds {images} images, expected {n}")
    if left:
        problems.append(f"{left} file(s) left in landing")
    peak = res.rss.as_dict()
    duration = times["duration_s"]
    out: dict[str, Any] = {
        "benchmark": "backlog_rss", "files": n, "bytes": nbytes, "ok": not problems, "problems": problems,
        "peak_process_rss_mb": peak["peak_process_rss_mb"], "peak_tree_rss_mb": peak["peak_tree_rss_mb"],
        "peak_process": peak["peak_process"], "max_processes": peak["max_processes"], "samples": peak["samples"],
        "peak_process_during": common.running_at(times, res.rss.max_process_at),
        "peak_tree_during": common.running_at(times, res.rss.max_tree_at),
        "under_target": peak["peak_process_rss_mb"] < TARGET_MB,
        "dag_run_duration_s": duration, "command_wall_s": round(res.wall_s, 3),
        "files_per_s_dag": round(n / duration, 1) if duration else None,
        "files_per_s_command": round(n / res.wall_s, 1),
        "catalogue_images": images, "landing_left": left, "tasks": times["tasks"],
        "settings": {"batch_size": args.batch_size, "workers": args.workers, "fsync": args.fsync,
                     "executor": args.executor},
        "peak_by_command_mb": peak["peak_by_command_mb"],
        "machine": info, "log": str(base / "dag-test.log"),
    }
    if problems:
        out["log_tail"] = res.stdout_tail[-1500:]
    print(f"\nBacklog of {n:,} files ({nbytes / 1e6:,.0f} MB) through {how}, "
          f"batch_size={args.batch_size} workers={args.workers} fsync={args.fsync}; "
          f"{info['cpus']} CPUs, load at start {info['load_avg_at_start']}")
    common.print_table(["measure", "value"], [
        ["peak RSS of one process (MB)", peak["peak_process_rss_mb"]],
        ["  ... while running", out["peak_process_during"]],
        ["peak RSS of the process tree (MB)", peak["peak_tree_rss_mb"]],
        ["processes in the tree (max)", peak["max_processes"]],
        [f"under {TARGET_MB} MB", out["under_target"]],
        ["DAG run recorded duration (s)", duration],
        ["whole command (s)", out["command_wall_s"]],
        ["files/s (DAG run)", out["files_per_s_dag"]],
        ["files/s (whole command)", out["files_per_s_command"]],
        ["catalogue images", images],
        ["check", "ok" if not problems else "FAILED: " + "; ".join(problems)],
    ])
    common.print_table(["command line (first 3 words)", "peak RSS MB"],
                       [[k, v] for k, v in list(peak["peak_by_command_mb"].items())[:12]],
                       "peak RSS of each kind of process")
    by_task = common.rss_by_task(times, res.extra.get("timeline", []))
    out["rss_by_task"] = by_task
    trows = [[tid, t["n"], t["first_start_s"], t["last_end_s"], t["busy_s"],
              by_task.get(tid, {}).get("root_at_start_mb"), by_task.get(tid, {}).get("root_peak_mb"),
              by_task.get(tid, {}).get("tree_peak_mb"), ", ".join(f"{s}={c}" for s, c in t["states"].items())]
             for tid, t in sorted(times["tasks"].items(), key=lambda kv: kv[1]["first_start_s"] or 0)]
    common.print_table(["task", "n", "start s", "end s", "busy s", "main RSS at start MB", "main RSS peak MB",
                        "tree peak MB", "states"], trows,
                       "task spans (relative to the DAG run start) and RSS while they ran")
    prov = common.provenance(code)
    print(f"code: git {prov['git_head']}{' + uncommitted changes' if prov['measured_code_dirty'] else ''}, "
          f"digest {prov['code_digest']}"
          f"{'  WARNING: the code under test changed during this run' if prov['code_changed_during_run'] else ''}")
    out["code"] = prov
    print()
    common.final_json(out)
    if not args.keep and not problems:
        common.rmtree(base)
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
