"""The fixed overhead of an ingest run: ``airflow dags test pacs_ingest`` with nothing to ingest.

For each checkout given (default: this one; ``--compare DIR`` adds another, e.g. a worktree of
an older commit: ``git worktree add /tmp/old <commit>``), the script runs an empty archive
through ``airflow dags test pacs_ingest`` ``--rounds`` times, interleaving the checkouts so that
the machine's noise falls on both alike, and prints the median DAG-run duration (from Airflow's
own ``dag_run`` record), the median command time (process start to exit, DAG parsing included)
and each task's median busy time. Every checkout runs with this checkout's virtualenv.

With ``--executor local`` each run is made by Airflow's scheduler with the LocalExecutor and its
api-server instead (``bench/scheduler_run.py``), each task instance a process of its own, as
deployed: the DAG run's duration is then the deployed fixed cost (the "command" column is the
helper's whole wall time, api-server and scheduler start-up included, and means little). The
measured run is the one after ``--warm-runs`` (1) others made by the same scheduler and api-server:
a deployed api-server builds its execution API once, on its first request, not per run.

Run: ``.venv/bin/python bench/empty_run.py [--compare /tmp/old] [--rounds 5] [--executor local]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common


def one_run(root: Path, base: Path, executor: str = "dags-test", runs: int = 1,
            extra: tuple[str, ...] = ()) -> dict[str, Any]:
    common.rmtree(base)
    cfg = common.write_config(base)
    env = common.prepare_airflow_home(base / "airflow", cfg)
    env.update({"AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"), "PYTHONPATH": str(root / "plugins")})
    t0 = time.perf_counter()
    cmd = ([common.bin_path("airflow"), "dags", "test", "pacs_ingest"] if executor == "dags-test" else
           [sys.executable, str(Path(__file__).with_name("scheduler_run.py")), "--parallelism", "2",
            "--runs", str(runs), *extra])
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    times = common.dag_run_times(base / "airflow")
    ok = proc.returncode == 0 and times["state"] == "success"
    return {"ok": ok, "command_s": wall, "duration_s": times["duration_s"],
            "tasks": {t: v["busy_s"] for t, v in times["tasks"].items()},
            "error": None if ok else (proc.stdout + proc.stderr)[-1500:]}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if r["ok"]]
    tasks = sorted({t for r in good for t in r["tasks"]})
    return {
        "runs": len(runs), "ok": len(good),
        "median_duration_s": round(statistics.median(r["duration_s"] for r in good), 2) if good else None,
        "median_command_s": round(statistics.median(r["command_s"] for r in good), 2) if good else None,
        "tasks_median_busy_s": {t: round(statistics.median(r["tasks"].get(t, 0.0) for r in good), 2) for t in tasks},
        "errors": [r["error"] for r in runs if not r["ok"]][:1],
    }


HOW = {"dags-test": "`airflow dags test`", "local": "Airflow's scheduler (LocalExecutor) and api-server"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", type=Path, action="append", default=[], help="another checkout to measure")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    ap.add_argument("--executor", choices=("dags-test", "local"), default="dags-test",
                    help="dags-test: `airflow dags test`; local: Airflow's scheduler with the LocalExecutor")
    ap.add_argument("--warm-runs", type=int, default=1,
                    help="with --executor local: runs made before the measured one (the api-server builds its "
                         "execution API on its first request, once in its life)")
    ap.add_argument("--airflow-default", action="store_true",
                    help="with --executor local: Airflow's default [workers] min_heartbeat_interval (5 s), not "
                         "the 1 s docker-compose.yaml sets")
    args = ap.parse_args(argv)
    extra = ("--airflow-default",) if args.airflow_default else ()
    start = common.code_version()
    roots = [common.ROOT, *(p.resolve() for p in args.compare)]
    runs: dict[str, list[dict[str, Any]]] = {str(r): [] for r in roots}
    for i in range(args.rounds):
        for k, root in enumerate(roots):
            print(f"[empty] round {i + 1}/{args.rounds}: {root}", file=sys.stderr, flush=True)
            runs[str(root)].append(one_run(root, args.workdir / "run" / f"empty-{k}", args.executor,
                                                   args.warm_runs + 1, extra))
    results = {root: summarise(r) for root, r in runs.items()}
    common.print_table(
        ["checkout", "git", "ok", "DAG run (median s)", "command (median s)", "tasks (median busy s)"],
        [[root, _head(Path(root)), f"{res['ok']}/{res['runs']}", res["median_duration_s"], res["median_command_s"],
          ", ".join(f"{t} {s}" for t, s in res["tasks_median_busy_s"].items())] for root, res in results.items()],
        title=f"An empty pacs_ingest run under {HOW[args.executor]}, {args.rounds} rounds interleaved")
    common.final_json({"benchmark": "empty_run", "executor": args.executor,
                       "min_heartbeat_interval": "Airflow's default" if extra else "1 s (docker-compose.yaml)",
                       "results": results,
                       "machine": common.machine_info(),
                       **common.provenance(start)})
    return 0 if all(r["ok"] == r["runs"] for r in results.values()) else 1


def _head(root: Path) -> str:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "?"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    raise SystemExit(main())
