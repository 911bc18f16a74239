"""Migration throughput online → offline against a plain parallel ``s3fs.put``, and the peak
RSS of planning a 1,000,000-image lifecycle.

Side by side in one run, against one moto S3 server on 127.0.0.1 (started here):

- **pacs**: an archive of the set is ingested (untimed), then ``pacs.tiers.lifecycle.run_lifecycle``
  at a logical date that makes every study due: plan, copy offline, verify every object
  (S3 SHA-256 checksum on each PutObject), switch the catalogue, delete the online copies —
  all timed; MB/s over the set's bytes. CT slices are copied per file; the small files with
  ``packing: true`` (one tar per series).
- **plain s3fs.put** of the same files to another prefix of the same bucket:
  ``fs.put(local_paths, remote_paths)`` (s3fs uploads them concurrently), no verification.

Then a catalogue of 1,000,000 images is planned (``pacs.tiers.lifecycle.plan``) in a subprocess;
its peak RSS (``ru_maxrss``) is printed. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from common import (
    DEFAULT_WORKDIR,
    ROOT,
    code_version,
    copy_tree,
    ensure_set,
    final_json,
    free_port,
    list_files,
    machine_info,
    print_table,
    provenance,
    ratio,
)

BUCKET = "bench-offline"


class Moto:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": self.endpoint,
                           "AWS_ENDPOINT_URL": self.endpoint})

    def fs(self) -> Any:
        from s3fs import S3FileSystem

        return S3FileSystem(endpoint_url=self.endpoint, key="bench", secret="bench", skip_instance_cache=True,
                            use_listings_cache=False)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _config(base: Path, packing: bool) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    cfg = {
        "landing": [str(base / "landing")], "online": str(base / "online"),
        "offline": f"s3://{BUCKET}/{base.name}", "quarantine": str(base / "quarantine"),
        "work": str(base / "work"), "reports": str(base / "reports"),
        "catalogue": {"duckdb": str(base / "catalogue" / "pacs.duckdb"), "parquet": str(base / "catalogue" / "p")},
        "settle_seconds": 0, "ingest": {"batch_size": 2000, "fsync": False},
        "policy": {"online_retention_years": 3, "packing": packing},
    }
    (base / "landing").mkdir(parents=True, exist_ok=True)
    path = base / "pacs.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def migrate(kind: str, n: int, workdir: Path, moto: Moto, packing: bool) -> dict[str, Any]:
    from pacs.config import load_config
    from pacs.intake import run_ingest
    from pacs.tiers.lifecycle import run_lifecycle

    src = ensure_set(kind, n, workdir)
    files = list_files(src)
    nbytes = sum(p.stat().st_size for p in files)
    base = Path(tempfile.mkdtemp(prefix=f"lifecycle-{kind}-", dir=workdir))
    try:
        cfg = load_config(_config(base, packing))
        copy_tree(src, Path(cfg.landing[0].root))
        run_ingest(cfg, snapshot=False)
        os.sync()
        t0 = time.perf_counter()
        out = run_lifecycle(cfg, logical_date=dt.date(2100, 1, 1), run_id=f"bench-{kind}")
        pacs_s = time.perf_counter() - t0
        sw = out["switch"]
        fs = moto.fs()
        objects = len(fs.find(f"{BUCKET}/{base.name}"))
        ok = sw["images_moved_offline"] == n and sw["online_copies_deleted"] == n
        # the same files, plain: concurrent puts, no checksum, no catalogue
        remote = [f"{BUCKET}/plain-{base.name}/{p.relative_to(src)}" for p in files]
        t0 = time.perf_counter()
        fs.put([str(p) for p in files], remote)
        put_s = time.perf_counter() - t0
        plain_objects = len(fs.find(f"{BUCKET}/plain-{base.name}"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"set": kind, "files": n, "mb": nbytes / 1e6, "packing": packing, "ok": ok and plain_objects == n,
            "pacs_s": pacs_s, "pacs_mb_s": nbytes / 1e6 / pacs_s, "put_s": put_s, "put_mb_s": nbytes / 1e6 / put_s,
            "ratio": ratio(put_s, pacs_s), "objects_pacs": objects, "objects_plain": plain_objects,
            }


PLAN_CHILD = """
import datetime as dt, json, sys, time
sys.path.insert(0, {plugins!r})
from pacs.config import load_config
from pacs.tiers.lifecycle import plan
t0 = time.perf_counter()
p = plan(load_config({config!r}), logical_date=dt.date(2100, 1, 1), run_id="bench-plan")
# VmHWM: this process's peak RSS (ru_maxrss would carry over the forking parent's across exec)
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({{"seconds": time.perf_counter() - t0, "images": p["images"], "studies": p["studies"],
                  "batches": len(p["batches"]), "max_rss_mb": hwm / 1024}}))
"""


def plan_rss(workdir: Path, images: int) -> dict[str, Any]:
    """Plan every image of a generated catalogue in a fresh process; its peak RSS."""
    sys.path.insert(0, str(ROOT / "bench"))
    from merge_rate import build_catalogue

    cat = workdir / "merge" / f"catalogue-{images}.duckdb"
    if not (workdir / "merge" / f"catalogue-{images}.complete").exists():
        cat.parent.mkdir(parents=True, exist_ok=True)
        build_catalogue(cat, images)
        (workdir / "merge" / f"catalogue-{images}.complete").write_text("{}")
    base = Path(tempfile.mkdtemp(prefix="lifecycle-plan-", dir=workdir))
    try:
        shutil.copy(cat, base / "pacs.duckdb")
        cfg_path = _config(base, packing=False)
        text = yaml.safe_load(cfg_path.read_text())
        text["catalogue"]["duckdb"] = str(base / "pacs.duckdb")
        cfg_path.write_text(yaml.safe_dump(text))
        code = PLAN_CHILD.format(plugins=str(ROOT / "plugins"), config=str(cfg_path))
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="10% of the sizes")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--plan-images", type=int, default=1_000_000)
    parser.add_argument("--plan-only", action="store_true", help="only the plan's peak RSS")
    args = parser.parse_args(argv)
    start = code_version()
    scale = 10 if args.small else 1
    rows: list[dict[str, Any]] = []
    if not args.plan_only:
        moto = Moto()
        try:
            moto.fs().mkdir(BUCKET)
            rows = [migrate("ct", 2000 // scale, args.workdir, moto, packing=False),
                    migrate("small", 10000 // scale, args.workdir, moto, packing=True)]
        finally:
            moto.stop()
    planned = plan_rss(args.workdir, args.plan_images // scale)
    print_table(
        ["set", "files", "MB", "packing", "pacs MB/s", "s3fs.put MB/s", "pacs ÷ put", "objects pacs/plain", "check"],
        [[r["set"], r["files"], f"{r['mb']:.0f}", r["packing"], f"{r['pacs_mb_s']:.1f}", f"{r['put_mb_s']:.1f}",
          f"{r['ratio']:.2f}", f"{r['objects_pacs']}/{r['objects_plain']}", "ok" if r["ok"] else "FAILED"]
         for r in rows],
        title="Migration online -> offline (moto S3 on 127.0.0.1): plan + copy + verify + switch + purge "
              "vs plain parallel s3fs.put")
    print_table(["images planned", "studies", "batches", "seconds", "peak RSS MB"],
                [[planned["images"], planned["studies"], planned["batches"], f"{planned['seconds']:.1f}",
                  f"{planned['max_rss_mb']:.0f}"]], title="Planning a lifecycle run (fresh process)")
    final_json({"benchmark": "lifecycle_rate", "migrate": rows, "plan": planned, "machine": machine_info(),
                "code": provenance(start), "peak_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
