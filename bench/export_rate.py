"""Cohort export against a plain parallel copy of the same objects, from each tier, in one run.

A 500-image CT study (``bench/common.py``'s cached set of 0.5 MB slices, one study) is ingested
into three archives whose offline tier is moto's S3 server on 127.0.0.1 (started here): (a) left
online; (b) moved offline per file; (c) moved offline packed in series tars (the lifecycle at a
date when every study is past retention). For each, ``pacs export`` of the study
(``pacs.export.export.export`` with its default threads, every file verified against its
sha256, flushed to disk before its manifest part marks it done) is timed:

- **first byte**: the selection from the catalogue and the first verified read (what an export
  does before it writes its first file);
- **last file**: the whole export, manifest included.

The peer, in the same run, copies the same objects with no catalogue and no verification: ``cp
-r`` of the study's online folder; s3fs ``get`` of the study's objects (per file, or the series
tars whole) with s3fs's own concurrency. Neither flushes what it wrote; **peer+sync** adds one
``sync`` after the peer (what the export's durability costs it). Export and peer alternate
``--repeat`` times, each after a ``sync`` (so that neither pays for the other's or the set-up's
dirty pages); the medians are shown. Ratio = peer seconds / export seconds (target ≥ 1).

Prints a table and one JSON line; nothing is asserted.

Run: ``.venv/bin/python bench/export_rate.py [--files 500] [--repeat 3] [--workdir /tmp/pacs-bench]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import common
import yaml

BUCKET = "pacs-bench-offline"


def _archive(base: Path, offline: str, packing: bool) -> Any:
    from pacs.config import load_config

    common.rmtree(base)
    path = common.write_config(base, workers=2, fsync=False)
    raw = yaml.safe_load(path.read_text())
    raw["offline"] = offline
    raw["policy"] = {"online_retention_years": 1, "packing": packing}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def _setup(workdir: Path, src: Path, name: str, tier: str, packing: bool) -> tuple[Any, str]:
    from pacs.intake import run_ingest
    from pacs.tiers.lifecycle import run_lifecycle

    cfg = _archive(workdir / f"export-{name}", f"s3://{BUCKET}/{name}", packing)
    common.copy_tree(src, Path(cfg.landing[0].root))
    run_ingest(cfg)
    if tier == "offline":
        run_lifecycle(cfg, logical_date=dt.date.today() + dt.timedelta(days=3650))
    con = __import__("duckdb").connect(str(cfg.duckdb), read_only=True)
    uid = con.execute("SELECT study_instance_uid FROM study ORDER BY image_count DESC LIMIT 1").fetchall()[0][0]
    con.close()
    return cfg, uid


def _export(cfg: Any, uid: str, out: Path) -> dict[str, Any]:
    from pacs.export import export as ex

    common.rmtree(out)
    os.sync()
    t0 = time.perf_counter()
    rows = ex.select(cfg, ex.Selection(studies={uid})).to_pylist()
    ex.read_verified(cfg, rows[0], {"corrupt_copies": 0}, threading.Lock())
    first = time.perf_counter() - t0
    common.rmtree(out)
    os.sync()
    t0 = time.perf_counter()
    got = ex.export(cfg, str(out), ex.Selection(studies={uid}))
    return {"first_byte_s": first, "last_file_s": time.perf_counter() - t0, "files": got["files"],
            "bytes": got["bytes"], "workers": got["workers"],
            "tiers": {k: v for k, v in got.items() if k.startswith("from_") and v}}


def _peer(cfg: Any, uid: str, tier: str, out: Path) -> tuple[float, float]:
    """The peer's seconds, and with one ``sync`` after it."""
    common.rmtree(out)
    out.mkdir(parents=True)
    os.sync()
    t0 = time.perf_counter()
    _peer_copy(cfg, uid, tier, out)
    copied = time.perf_counter() - t0
    os.sync()
    return copied, time.perf_counter() - t0


def _peer_copy(cfg: Any, uid: str, tier: str, out: Path) -> None:
    if tier == "online":
        con = __import__("duckdb").connect(str(cfg.duckdb), read_only=True)
        folder = Path(con.execute("SELECT online_uri FROM image WHERE study_instance_uid = $u LIMIT 1",
                                  {"u": uid}).fetchall()[0][0]).parent.parent
        con.close()
        subprocess.run(["cp", "-r", str(folder), str(out)], check=True)
        return
    con = __import__("duckdb").connect(str(cfg.duckdb), read_only=True)
    uris = sorted({r[0] for r in con.execute("SELECT offline_uri FROM image WHERE study_instance_uid = $u",
                                             {"u": uid}).fetchall()})
    con.close()
    cfg.offline.fs.get([u.removeprefix("s3://") for u in uris], str(out) + "/")


def _measure(cfg: Any, uid: str, tier: str, workdir: Path, name: str, repeat: int) -> dict[str, Any]:
    """Export and peer alternately, ``repeat`` times; the medians, and every run's seconds."""
    exports, peers = [], []
    for _ in range(repeat):
        exports.append(_export(cfg, uid, workdir / f"export-out-{name}"))
        peers.append(_peer(cfg, uid, tier, workdir / f"peer-out-{name}"))
    got = dict(exports[-1])
    for k in ("first_byte_s", "last_file_s"):
        got[k] = statistics.median(e[k] for e in exports)
    got["peer_s"] = statistics.median(p[0] for p in peers)
    got["peer_sync_s"] = statistics.median(p[1] for p in peers)
    got["runs"] = {"export_s": [round(e["last_file_s"], 3) for e in exports],
                   "peer_s": [round(p[0], 3) for p in peers]}
    got["ratio"] = common.ratio(got["peer_s"], got["last_file_s"])
    got["ratio_with_sync"] = common.ratio(got["peer_sync_s"], got["last_file_s"])
    return got


def main(argv: list[str] | None = None) -> int:
    from helpers import MotoServer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/pacs-bench"))
    args = p.parse_args(argv)
    start = common.code_version()
    server = MotoServer()
    server.start()
    try:
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": server.endpoint,
                           "AWS_ENDPOINT_URL": server.endpoint})
        import s3fs

        s3fs.S3FileSystem(endpoint_url=server.endpoint).mkdir(BUCKET)
        from pacs import synth

        src = args.workdir / "sets" / f"ct-one-study-{args.files}"
        if not src.exists():
            synth.generate_ct_slices(src, args.files, per_series=args.files)
        results: dict[str, Any] = {}
        for name, tier, packing in (("online", "online", False), ("offline", "offline", False),
                                    ("offline-packed", "offline", True)):
            cfg, uid = _setup(args.workdir, src, name, tier, packing)
            results[name] = _measure(cfg, uid, tier, args.workdir, name, args.repeat)
    finally:
        server.stop()
    common.print_table(
        [f"study of {args.files} images from", "threads", "first byte s", "last file s", "MB/s", "peer s",
         "peer/export", "peer+sync s", "(peer+sync)/export"],
        [[k, v["workers"], common.fmt(v["first_byte_s"], 3), common.fmt(v["last_file_s"], 2),
          common.fmt(v["bytes"] / 1e6 / v["last_file_s"]), common.fmt(v["peer_s"], 2), common.fmt(v["ratio"], 2),
          common.fmt(v["peer_sync_s"], 2), common.fmt(v["ratio_with_sync"], 2)]
         for k, v in results.items()],
        title=f"pacs export (verified, durable) vs plain parallel copy (cp -r / s3fs get), same objects, same run, "
              f"medians of {args.repeat}")
    common.final_json({"bench": "export_rate", "files": args.files, "repeat": args.repeat, "results": results,
                       "machine": common.machine_info(), "code": common.provenance(start)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
