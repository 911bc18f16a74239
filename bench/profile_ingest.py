"""Where pacs ingest time goes, without Airflow: each step of ``pacs.intake`` timed in-process.

Runs the same steps as ``pacs.intake.run_ingest`` (sweep → process every batch → merge →
finalize → snapshot) on a fresh archive holding a copy of a cached benchmark set, timing each
step, once per ``--fsync`` setting side by side (default: with and without fsync) so their ratio
is measured in one run. With ``--cprofile`` the whole run is profiled with cProfile and the top
functions (by own time and by cumulative time) are printed.

Run: ``.venv/bin/python bench/profile_ingest.py [--set small|ct] [--n N] [--cprofile] [--small]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

DEFAULT_N = {"ct": 2000, "small": 10000}


def one_run(kind: str, n: int, src: Path, fsync: bool, args: argparse.Namespace) -> dict[str, Any]:
    from pacs import catalogue, intake
    from pacs.config import load_config

    base = args.workdir / "run" / f"profile-{kind}-{n}-fsync{int(fsync)}"
    common.rmtree(base)
    cfg = load_config(common.write_config(base, batch_size=args.batch_size, workers=args.workers, fsync=fsync))
    common.copy_tree(src, base / "landing")
    os.sync()
    prof = cProfile.Profile() if args.cprofile else None
    steps: dict[str, float] = {}
    t_all = time.perf_counter()
    if prof:
        prof.enable()
    t = time.perf_counter()
    ids = intake.sweep(cfg, run_id="bench")
    steps["sweep"] = time.perf_counter() - t
    t = time.perf_counter()
    for b in ids:
        intake.process_batch(cfg, b)
    steps["process"] = time.perf_counter() - t
    t = time.perf_counter()
    intake.merge_batches(cfg, ids, run_id="bench")
    steps["merge"] = time.perf_counter() - t
    t = time.perf_counter()
    intake.finalize_batches(cfg, ids)
    steps["finalize"] = time.perf_counter() - t
    t = time.perf_counter()
    catalogue.refresh(cfg)
    steps["snapshot"] = time.perf_counter() - t
    if prof:
        prof.disable()
    total = time.perf_counter() - t_all
    images = common.catalogue_images(base / "catalogue" / "pacs.duckdb")
    left = common.count_files(base / "landing")
    out: dict[str, Any] = {"fsync": fsync, "total_s": round(total, 3), "files_per_s": round(n / total, 1),
                           "steps_s": {k: round(v, 3) for k, v in steps.items()},
                           "process_files_per_s": round(n / steps["process"], 1),
                           "ok": images == n and left == 0, "catalogue_images": images, "landing_left": left}
    if prof:
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(args.top)
            out[f"profile_{key}"] = buf.getvalue()
    if not args.keep:
        common.rmtree(base)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", dest="kind", default="small", choices=sorted(DEFAULT_N))
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--small", action="store_true", help="10%% of the default size")
    ap.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fsync", default="1,0", help="fsync settings to compare, e.g. 1,0 or 1")
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    args.workdir = args.workdir.resolve()
    n = args.n or max(1, int(DEFAULT_N[args.kind] * (0.1 if args.small else 1.0)))
    src = common.ensure_set(args.kind, n, args.workdir)
    code = common.code_version()
    runs = [one_run(args.kind, n, src, bool(int(f)), args) for f in args.fsync.split(",")]
    rows = [[f"fsync={r['fsync']}", r["files_per_s"], r["total_s"], *r["steps_s"].values(), r["process_files_per_s"],
             "ok" if r["ok"] else "FAILED"] for r in runs]
    common.print_table(["run", "files/s", "total s", "sweep s", "process s", "merge s", "finalize s", "snapshot s",
                        "process files/s", "check"], rows,
                       f"pacs.intake steps in-process (no Airflow): {args.kind} set, {n:,} files, "
                       f"batch_size={args.batch_size} workers={args.workers}")
    prov = common.provenance(code)
    print(f"code: git {prov['git_head']}{' + uncommitted changes' if prov['measured_code_dirty'] else ''}, "
          f"digest {prov['code_digest']}"
          f"{'  WARNING: the code under test changed during this run' if prov['code_changed_during_run'] else ''}")
    for r in runs:
        for key in ("profile_tottime", "profile_cumulative"):
            if key in r:
                print(f"\n--- cProfile fsync={r['fsync']} by {key.split('_')[1]} ---")
                print(r.pop(key))
    common.final_json({"benchmark": "profile_ingest", "set": args.kind, "files": n, "runs": runs, "code": prov,
                       "machine": common.machine_info()})
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
