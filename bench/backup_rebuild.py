"""What getting the catalogue back costs: backup and restore by two methods, and the rebuild rate
from the tiers against the ingest rate of the same files, in one run.

**Backup methods** on ``bench/merge_rate.py``'s catalogue (``--images``, default 1,000,000;
cached under ``<workdir>/merge``), each on its own fresh copy:

1. ``pacs backup`` as shipped: CHECKPOINT under the writer's lock, the file streamed to the
   offline tier (a local folder here) with its sha256, read back and compared, manifest;
   restore = download + sha256 + DuckDB opens it (``pacs.catalogue.backup.download``);
2. ``EXPORT DATABASE`` to Parquet (zstd) and ``IMPORT DATABASE`` into a new file.

**Rebuild rate**: ``--files`` CT slices (``bench/common.py``'s cached set) are ingested in-process
(``run_ingest``, ``ingest.workers`` processes), timed; then the catalogue is deleted and
``pacs rebuild`` reads the online tier with the same number of processes, timed, first with
no backup and then with the backup taken after the ingest. Files/s of each, and their ratio.

Prints tables and one JSON line; nothing is asserted.

Run: ``.venv/bin/python bench/backup_rebuild.py [--images 1000000] [--files 2000] [--workdir /tmp/pacs-bench]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import duckdb
import merge_rate


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _archive(base: Path, workers: int) -> Any:
    from pacs.config import load_config

    common.rmtree(base)
    return load_config(common.write_config(base, workers=workers, fsync=True))


def bench_methods(workdir: Path, n_images: int) -> dict[str, Any]:
    """Both backup methods, and both restores, on copies of one catalogue."""
    from pacs.catalogue import backup as backups

    src = workdir / "merge" / f"catalogue-{n_images}.duckdb"
    built = merge_rate.build_catalogue(src, n_images)
    cfg = _archive(workdir / "backup-archive", workers=2)
    cfg.duckdb.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, cfg.duckdb)
    out: dict[str, Any] = {"images": n_images, "catalogue_bytes": cfg.duckdb.stat().st_size, "built": built}

    t0 = time.perf_counter()
    taken = backups.backup(cfg)
    out["copy_backup_s"] = time.perf_counter() - t0
    out["copy_backup_bytes"] = taken["bytes"]
    gen = backups.generations(cfg)[-1]
    target = workdir / "backup-restored.duckdb"
    target.unlink(missing_ok=True)
    t0 = time.perf_counter()
    backups.download(cfg, gen, target)
    out["copy_restore_s"] = time.perf_counter() - t0

    export = workdir / "backup-export"
    common.rmtree(export)
    con = duckdb.connect(str(cfg.duckdb))
    t0 = time.perf_counter()
    con.execute(f"EXPORT DATABASE '{export}' (FORMAT parquet, COMPRESSION zstd)")
    out["export_backup_s"] = time.perf_counter() - t0
    con.close()
    out["export_backup_bytes"] = _tree_bytes(export)
    imported = workdir / "backup-imported.duckdb"
    imported.unlink(missing_ok=True)
    con = duckdb.connect(str(imported))
    t0 = time.perf_counter()
    con.execute(f"IMPORT DATABASE '{export}'")
    out["export_restore_s"] = time.perf_counter() - t0
    out["import_images"] = con.execute("SELECT count(*) FROM image").fetchone()[0]
    con.close()
    for p in (target, imported):
        p.unlink(missing_ok=True)
    common.rmtree(export)
    return out


def bench_rebuild(workdir: Path, n_files: int, workers: int) -> dict[str, Any]:
    """Ingest ``n_files`` CT slices, then rebuild the catalogue from the online tier (twice)."""
    from pacs.catalogue import backup as backups
    from pacs.catalogue import rebuild as rebuilds
    from pacs.intake import run_ingest

    src = common.ensure_set("ct", n_files, workdir)
    cfg = _archive(workdir / "rebuild-archive", workers=workers)
    nbytes = common.copy_tree(src, Path(cfg.landing[0].root))
    t0 = time.perf_counter()
    run_ingest(cfg)
    ingest_s = time.perf_counter() - t0
    images = common.catalogue_images(cfg.duckdb)
    backups.backup(cfg)
    out: dict[str, Any] = {"files": n_files, "bytes": nbytes, "images": images, "ingest_s": ingest_s,
                           "ingest_files_s": n_files / ingest_s, "workers": workers}
    for label, use_backup in (("tiers_only", False), ("with_backup", True)):
        t0 = time.perf_counter()
        got = rebuilds.rebuild(cfg, force=True, use_backup=use_backup, workers=workers)
        secs = time.perf_counter() - t0
        assert got["counts"]["image"] == images, got["counts"]
        out[f"{label}_s"] = secs
        out[f"{label}_read_s"] = got["read_seconds"]
        out[f"{label}_files_s"] = got["files"] / secs
    for p in cfg.duckdb.parent.glob("*.replaced-*"):
        p.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1_000_000, help="images in the catalogue the backup methods copy")
    p.add_argument("--files", type=int, default=2000, help="CT slices ingested, then rebuilt")
    p.add_argument("--workers", type=int, default=2, help="processes for the ingest and the rebuild")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/pacs-bench"))
    args = p.parse_args(argv)
    start = common.code_version()
    methods = bench_methods(args.workdir, args.images)
    common.print_table(
        ["method", "backup s", "backup MB", "restore s"],
        [["checkpoint + copy (pacs backup)", common.fmt(methods["copy_backup_s"], 2),
          common.fmt(methods["copy_backup_bytes"] / 1e6), common.fmt(methods["copy_restore_s"], 2)],
         ["EXPORT / IMPORT DATABASE (Parquet zstd)", common.fmt(methods["export_backup_s"], 2),
          common.fmt(methods["export_backup_bytes"] / 1e6), common.fmt(methods["export_restore_s"], 2)]],
        title=f"catalogue of {args.images:,} images ({methods['catalogue_bytes'] / 1e6:.0f} MB file)")
    rate = bench_rebuild(args.workdir, args.files, args.workers)
    common.print_table(
        ["step", "seconds", "files/s", "x ingest"],
        [["ingest (run_ingest)", common.fmt(rate["ingest_s"], 2), common.fmt(rate["ingest_files_s"]), "1.00"],
         ["rebuild, tiers only", common.fmt(rate["tiers_only_s"], 2), common.fmt(rate["tiers_only_files_s"]),
          common.fmt(common.ratio(rate["tiers_only_files_s"], rate["ingest_files_s"]), 2)],
         ["rebuild, with backup", common.fmt(rate["with_backup_s"], 2), common.fmt(rate["with_backup_files_s"]),
          common.fmt(common.ratio(rate["with_backup_files_s"], rate["ingest_files_s"]), 2)]],
        title=f"{args.files:,} CT slices ({rate['bytes'] / 1e6:.0f} MB), {args.workers} processes")
    common.final_json({"bench": "backup_rebuild", "methods": methods, "rebuild": rate,
                       "machine": common.machine_info(), "code": common.provenance(start)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
