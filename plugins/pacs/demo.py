"""``make demo``: a small synthetic hospital through ``pacs_ingest``, then a summary.

1. Resets the demo archive (the folders of ``$PACS_CONFIG``, by default ``var/data``).
2. Generates a few years of a small hospital into landing with :mod:`pacs.synth` (CT, MR, CR,
   DX, US, MG; growth and weekly seasonality; identical resends; every bad-input class), and
   copies in every real DICOM file that pydicom ships.
3. Runs ``airflow dags test pacs_ingest`` on the project-local ``AIRFLOW_HOME`` (SQLite),
   showing progress as tasks finish (Airflow's own log goes to ``var/demo-airflow.log``).
4. Prints what the catalogue holds and a ready-to-paste query.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pydicom.data import get_testdata_files

from pacs import synth
from pacs.cli import _print_summary, summary
from pacs.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
_END = re.compile(r"\[DAG TEST\] end task task_id=(\w+) map_index=(-?\d+)")


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _reset(cfg: Config) -> None:
    for loc in (*cfg.landing, cfg.online, cfg.offline, cfg.quarantine, cfg.work, cfg.parquet, cfg.reports):
        if loc.is_local and os.path.isdir(loc.root):
            shutil.rmtree(loc.root)
    if cfg.duckdb.exists():
        cfg.duckdb.unlink()
    for loc in cfg.landing:
        os.makedirs(loc.root, exist_ok=True)


def generate(cfg: Config, *, patients: int = 80) -> int:
    landing = Path(cfg.landing[0].root)
    _step(f"generating a small hospital ({patients} patients, 2022-2026) into {landing}")
    t0 = time.monotonic()
    outside = Path(str(landing) + "-outside")  # where the demo's hostile link points
    if outside.is_dir():
        shutil.rmtree(outside)
    result = synth.generate_archive(landing, seed=2026, patients=patients,
                                    start=dt.date(2022, 1, 1), end=dt.date(2026, 10, 31),
                                    count_scale=0.12, size_scale=0.25, bad=True, duplicates=20)
    counts = result.counts()
    good = result.summary()
    print(f"    {good['images']:,} images in {good['studies']} studies ({good['bytes'] / 1e6:,.0f} MB), "
          f"{counts.get('duplicate', 0)} identical resends, "
          f"{sum(v for k, v in counts.items() if k not in ('good', 'duplicate'))} bad files "
          f"[{time.monotonic() - t0:.1f}s]")
    real = landing / "pydicom-samples"
    n = 0
    for p in sorted(get_testdata_files()):
        if os.path.isfile(p):
            dst = real / f"{n:03d}-{os.path.basename(p)}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)
            n += 1
    print(f"    + {n} real files that pydicom ships (many vendors and transfer syntaxes)")
    return len(result.files) + n


def run_dag(total_files: int, batch_size: int) -> int:
    airflow = Path(sys.executable).with_name("airflow")
    log_path = ROOT / "var" / "demo-airflow.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    batches = -(-total_files // batch_size)
    _step(f"airflow dags test pacs_ingest  ({total_files:,} files in {batches} batches; log: {log_path})")
    t0 = time.monotonic()
    done_process = 0
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(airflow), "dags", "test", "pacs_ingest"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            m = _END.search(line)
            if not m:
                continue
            task = m.group(1)
            elapsed = time.monotonic() - t0
            if task == "process":
                done_process += 1
                bar = "#" * int(30 * done_process / max(batches, 1))
                print(f"\r    process [{bar:<30}] {done_process}/{batches} batches  {elapsed:5.1f}s",
                      end="", flush=True)
            else:
                if done_process and task == "merge":
                    print()
                print(f"    {task} done  {elapsed:5.1f}s", flush=True)
        rc = proc.wait()
    if rc != 0:
        print(f"\nairflow dags test failed (exit {rc}); see {log_path}", file=sys.stderr)
    return rc


def main() -> int:
    cfg = load_config()
    _step(f"configuration {cfg.path}")
    _reset(cfg)
    total = generate(cfg)
    rc = run_dag(total, cfg.ingest.batch_size)
    if rc != 0:
        return rc
    _step("what the catalogue holds")
    _print_summary(summary(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
