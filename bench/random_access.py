"""Random access at archive scale: how long finding one study's files takes in a 30M-image catalogue.

The catalogue is built here, not with ``merge_rate.py``'s builder, because its layout decides the
answer: that builder numbers UIDs in insertion order (so DuckDB's zone maps find a study's rows
by its UID for free) and gives images random ingest times. A real archive is the other way round:
UIDs are the modalities' (random with respect to arrival), and image rows are appended in merge
order, so ``ingested_at`` grows with the row number. This builder does that: hashed UIDs, a
study's 300 images in consecutive rows, ``ingested_at`` increasing, 2 studies per patient,
``study_ingest`` filled as the merge fills it. It is cached under ``<workdir>/random-access``.

Measured, in one run, on ``--lookups`` random studies each: the lookup of one study's files —
``pacs.export.export.select``, the code ``pacs export`` runs (read-only connection opened once) —
by StudyInstanceUID, AccessionNumber and PatientID, p50 and p99 (target p99 ≤ 50 ms), after one
untimed-in-the-percentiles first lookup (reported on its own: it reads the file's metadata); next to it
the same image query without the study's ingest range (what a plain ``WHERE study_instance_uid =
?`` over ``image`` costs).

Prints a table and one JSON line; nothing is asserted.

Run: ``.venv/bin/python bench/random_access.py [--images 30000000] [--lookups 200] [--workdir /tmp/pacs-bench]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

PER_SERIES = 100
SERIES_PER_STUDY = 3
IMAGES_PER_STUDY = PER_SERIES * SERIES_PER_STUDY
IMAGES_PER_PATIENT = IMAGES_PER_STUDY * 2

MACROS = """
CREATE OR REPLACE TEMP MACRO huid(kind, n) AS
    '1.2.826.0.1.3680043.8.498.' || kind || '.' || (hash(kind, n) % 1000000000000000000)::VARCHAR;
CREATE OR REPLACE TEMP MACRO pid(p) AS 'P' || (hash(p, 7) % 1000000000)::VARCHAR || '-' || p::VARCHAR;
CREATE OR REPLACE TEMP MACRO acc(t) AS 'A' || (hash(t, 9) % 1000000000)::VARCHAR || '-' || t::VARCHAR;
CREATE OR REPLACE TEMP MACRO sdate(t) AS DATE '2016-01-01' + (t * 3650 // ({n} // 300))::INTEGER;
CREATE OR REPLACE TEMP MACRO ingested(i) AS TIMESTAMPTZ '2016-01-01 00:00:00+00' + to_seconds((i // 2000) * 300);
"""


def build(path: Path, n: int) -> dict[str, Any]:
    """The realistic catalogue (project schema), cached."""
    from pacs import catalogue

    done = path.with_suffix(".complete")
    if path.exists() and done.exists():
        return {"cached": True}
    for p in (path, done, Path(str(path) + ".wal")):
        p.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    con = catalogue.connect(path)
    for stmt in MACROS.format(n=n).strip().split(";\n"):
        if stmt.strip():
            con.execute(stmt)
    rng = f"(SELECT range AS i, range // {PER_SERIES} AS s, range // {IMAGES_PER_STUDY} AS t, " \
          f"range // {IMAGES_PER_PATIENT} AS p FROM range({n}))"
    con.execute(f"""
        INSERT INTO image (sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid, instance_number,
                           sha256, size_bytes, tier, uri, online_uri, received_at, ingested_at, batch_id, updated_at)
        SELECT huid(4, i), '1.2.840.10008.5.1.4.1.1.2', huid(3, s), huid(2, t), (i % {PER_SERIES} + 1)::INTEGER,
               md5(i::VARCHAR) || md5((i + 1)::VARCHAR), 525000, 'online',
               '/online/' || huid(4, i) || '.dcm', '/online/' || huid(4, i) || '.dcm',
               ingested(i), ingested(i), 'b' || (i // 2000)::VARCHAR, ingested(i)
        FROM {rng} ORDER BY i
    """)
    con.execute(f"""
        INSERT INTO study (study_instance_uid, patient_id, study_date, accession_number, modalities_in_study,
                           series_count, image_count, size_bytes, online_image_count, created_at, updated_at)
        SELECT huid(2, t), pid(p), sdate(t), acc(t), ['CT'], {SERIES_PER_STUDY}, count(*), sum(525000), count(*),
               min(ingested(i)), min(ingested(i))
        FROM {rng} GROUP BY t, p
    """)
    con.execute(f"""
        INSERT INTO patient (patient_id, study_count, created_at, updated_at)
        SELECT pid(p), count(DISTINCT t)::INTEGER, min(ingested(i)), min(ingested(i)) FROM {rng} GROUP BY p
    """)
    con.execute(f"INSERT INTO study_ingest SELECT DISTINCT huid(2, t), ingested(i) FROM {rng}")
    con.execute("CHECKPOINT")
    con.close()
    done.write_text("ok")
    return {"cached": False, "build_s": round(time.perf_counter() - t0, 1)}


def _pcts(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"p50_ms": round(1000 * statistics.median(xs), 1),
            "p99_ms": round(1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))], 1),
            "max_ms": round(1000 * xs[-1], 1)}


def main(argv: list[str] | None = None) -> int:
    import duckdb

    from pacs.catalogue import db
    from pacs.export import export as ex

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=30_000_000)
    p.add_argument("--lookups", type=int, default=200)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/pacs-bench"))
    args = p.parse_args(argv)
    start = common.code_version()
    path = args.workdir / "random-access" / f"catalogue-{args.images}.duckdb"
    built = build(path, args.images)
    con = duckdb.connect(str(path), read_only=True)
    db.set_memory_limit(con)
    picks = con.execute(f"SELECT study_instance_uid, accession_number, patient_id FROM study USING SAMPLE "
                        f"{args.lookups} ROWS (reservoir, 42)").fetchall()
    random.Random(1).shuffle(picks)
    results: dict[str, Any] = {}
    t0 = time.perf_counter()  # the first lookup after opening the catalogue reads its metadata cold
    ex.select_with(con, ex.Selection(studies={picks[0][0]}))
    results["first lookup after opening (cold)"] = {"p50_ms": round(1000 * (time.perf_counter() - t0), 1),
                                                    "p99_ms": None, "max_ms": None, "files_p50": IMAGES_PER_STUDY}
    for label, index in (("StudyInstanceUID", 0), ("AccessionNumber", 1), ("PatientID", 2)):
        times, files = [], []
        for row in picks:
            sel = ex.Selection(studies={row[0]} if index == 0 else set(), accessions={row[1]} if index == 1 else set(),
                               patients={row[2]} if index == 2 else set())
            t0 = time.perf_counter()
            got = ex.select_with(con, sel)
            times.append(time.perf_counter() - t0)
            files.append(got.num_rows)
        results[label] = {**_pcts(times), "files_p50": statistics.median(files)}
    plain = []
    for row in picks[: min(20, len(picks))]:
        t0 = time.perf_counter()
        con.execute("SELECT sop_instance_uid, online_uri FROM image WHERE study_instance_uid = $u", {"u": row[0]}
                    ).fetchall()
        plain.append(time.perf_counter() - t0)
    results["plain image scan by StudyInstanceUID"] = {**_pcts(plain), "files_p50": IMAGES_PER_STUDY}
    con.close()
    common.print_table(["lookup of one study's files", "p50 ms", "p99 ms", "max ms", "files"],
                       [[k, v["p50_ms"], v["p99_ms"], v["max_ms"], v["files_p50"]] for k, v in results.items()],
                       title=f"{args.images:,} images, {args.lookups} random studies each")
    common.final_json({"bench": "random_access", "images": args.images, "built": built, "lookups": results,
                       "machine": common.machine_info(), "code": common.provenance(start)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
