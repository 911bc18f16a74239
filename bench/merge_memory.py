"""Memory of one catalogue merge in-process: RSS before, peak during and after ``pacs.catalogue.merge``.

The merge step of ``pacs_ingest`` merges a whole run's staged rows (``ingest.merge_chunk_rows``,
10,000, at a time) in the task process; a 100,000-file backlog is ten 10,000-row merges.
This script merges ``--rows`` synthetic staged rows (the generator of
``bench/merge_rate.py``) into a fresh catalogue holding ``--catalogue-images`` images (default:
empty, as in ``bench/backlog_rss.py``), sampling this process' RSS every 50 ms, and reports
DuckDB's own memory accounting after the merge.

Run: ``.venv/bin/python bench/merge_memory.py [--rows N] [--catalogue-images N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import merge_rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--catalogue-images", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    args = ap.parse_args(argv)
    from pacs import catalogue

    code = common.code_version()
    work = args.workdir.resolve() / "merge"
    work.mkdir(parents=True, exist_ok=True)
    db = work / "merge-memory.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    if args.catalogue_images:
        base = work / f"catalogue-{args.catalogue_images}.duckdb"
        merge_rate.build_catalogue(base, args.catalogue_images)
        shutil.copyfile(base, db)
    staged = merge_rate.build_staged(args.rows, args.catalogue_images)
    con = catalogue.connect(db)
    rss_before = common.psutil.Process().memory_info().rss
    with common.RssSampler(os.getpid()) as sampler:
        t0 = time.perf_counter()
        result = merge_rate.catalogue_merge(con, staged)
        elapsed = time.perf_counter() - t0
    rss_after = common.psutil.Process().memory_info().rss
    duck = con.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0 "
                       "ORDER BY 2 DESC").fetchall()
    limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    con.close()
    db.unlink(missing_ok=True)
    mb = 2**20
    rows = [["staged Arrow table (MB)", round(staged.nbytes / mb, 1)],
            ["RSS before merge (MB)", round(rss_before / mb, 1)],
            ["RSS peak during merge (MB)", round(sampler.peak.max_process / mb, 1)],
            ["RSS after merge (MB)", round(rss_after / mb, 1)],
            ["merge seconds", round(elapsed, 2)], ["catalogued", result.total("catalogued")],
            ["DuckDB memory_limit", limit]]
    rows += [[f"DuckDB after merge: {tag} (MB)", round(n / mb, 1)] for tag, n in duck]
    common.print_table(["measure", "value"], rows,
                       f"catalogue.merge of {args.rows:,} staged rows into {args.catalogue_images:,} images")
    prov = common.provenance(code)
    common.final_json({"benchmark": "merge_memory", "rows": args.rows, "catalogue_images": args.catalogue_images,
                       "staged_mb": round(staged.nbytes / mb, 1), "rss_before_mb": round(rss_before / mb, 1),
                       "rss_peak_mb": round(sampler.peak.max_process / mb, 1),
                       "rss_after_mb": round(rss_after / mb, 1), "merge_s": round(elapsed, 2),
                       "duckdb_memory_limit": limit, "duckdb_memory": {t: n for t, n in duck}, "code": prov})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
