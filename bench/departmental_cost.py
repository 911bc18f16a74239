"""What the departmental tables cost the intake: header parse and merge, with and without them.

The acquisition parameters and dose reports are read from the dataset the header reader has
already parsed (``pacs.dicom.acquisition``, ``pacs.dicom.dose_sr``) and inserted by the merge in
its transaction (``include/sql/merge_departmental.sql``). Measured side by side in one run,
interleaved rounds, median reported:

1. **header parse**, images and dose SRs apart, of a synthetic hospital (every modality,
   realistic acquisition values, one CT dose SR per CT study;
   ``pacs.synth.generate_archive(dose_reports=True)``), files already in memory:
   ``pacs.dicom.read_header_bytes`` as intake runs it; the same with the departmental extraction
   switched off (the two functions replaced in the reader's module for the timing);
   and the peer, raw pydicom ``dcmread(stop_before_pixels=True)`` of the same bytes;
2. **merge** of ``--staged-rows`` new CT rows (``bench/merge_rate.py``'s staged table, each row
   carrying its acquisition JSON) into an empty catalogue: with the acquisition column, and the
   same table with it set to NULL (no departmental rows).

Prints a table and one JSON line; nothing is asserted.
Run: ``.venv/bin/python bench/departmental_cost.py [--patients 60] [--staged-rows 100000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import pyarrow as pa


def _archive(workdir: Path, patients: int) -> list[bytes]:
    from pacs import synth

    root = workdir / "sets" / f"departmental-{patients}"
    marker = root.with_name(root.name + ".complete")
    if not marker.exists():
        common.rmtree(root)
        synth.generate_archive(root, seed=2026, patients=patients, start=dt.date(2024, 1, 1),
                               end=dt.date(2025, 12, 31), count_scale=0.1, size_scale=0.05, dose_reports=True)
        marker.write_text("ok")
    return [p.read_bytes() for p in common.list_files(root)]


def _parse_pacs(files: list[bytes]) -> float:
    from pacs.dicom import read_header_bytes

    t0 = time.perf_counter()
    for data in files:
        read_header_bytes(data)
    return time.perf_counter() - t0


def _parse_without_departmental(files: list[bytes]) -> float:
    from pacs.dicom import header

    saved = header.acquisition_values, header.DOSE_SR_SOP_CLASSES
    header.acquisition_values, header.DOSE_SR_SOP_CLASSES = (lambda *a, **k: None), {}
    try:
        return _parse_pacs(files)
    finally:
        header.acquisition_values, header.DOSE_SR_SOP_CLASSES = saved


def _parse_pydicom(files: list[bytes]) -> float:
    import pydicom

    t0 = time.perf_counter()
    for data in files:
        pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    return time.perf_counter() - t0


def _merge(work: Path, staged: pa.Table) -> float:
    import merge_rate

    from pacs import catalogue

    path = work / "departmental-merge.duckdb"
    for p in (path, Path(str(path) + ".wal")):
        p.unlink(missing_ok=True)
    con = catalogue.connect(path)
    try:
        t0 = time.perf_counter()
        merge_rate.catalogue_merge(con, staged)
        return time.perf_counter() - t0
    finally:
        con.close()
        for p in (path, Path(str(path) + ".wal")):
            p.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--staged-rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    args = ap.parse_args(argv)
    start = common.code_version()
    import merge_rate

    from pacs.dicom import read_header_bytes
    from pacs.dicom.dose_sr import DOSE_SR_SOP_CLASSES

    every = _archive(args.workdir, args.patients)
    kinds = [read_header_bytes(f).get("sop_class_uid") in DOSE_SR_SOP_CLASSES for f in every]
    sets = {"images": [f for f, sr in zip(every, kinds, strict=True) if not sr],
            "dose SRs": [f for f, sr in zip(every, kinds, strict=True) if sr]}
    with_acq = merge_rate.build_staged(args.staged_rows, 0)
    without = with_acq.set_column(with_acq.schema.get_field_index("acquisition"), "acquisition",
                                  pa.nulls(with_acq.num_rows, pa.string()))
    work = args.workdir / "departmental"
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[float]] = {}
    steps = {f"{what} {name}": (fn, files) for name, files in sets.items()
             for what, fn in (("parse", _parse_pacs), ("parse_off", _parse_without_departmental),
                              ("pydicom", _parse_pydicom))}
    _parse_pacs(every[:50])  # warm imports
    for _ in range(args.rounds):
        for key, (fn, files) in steps.items():
            runs.setdefault(key, []).append(fn(files))
        runs.setdefault("merge", []).append(_merge(work, with_acq))
        runs.setdefault("merge_off", []).append(_merge(work, without))
    med = {k: statistics.median(v) for k, v in runs.items()}
    m = with_acq.num_rows
    rows = []
    for name, files in sets.items():
        n = len(files)
        rows += [(f"header parse of {name}, with departmental", n, med[f"parse {name}"]),
                 (f"header parse of {name}, departmental off", n, med[f"parse_off {name}"]),
                 (f"raw pydicom dcmread(stop_before_pixels) of {name}", n, med[f"pydicom {name}"])]
    rows += [("merge, with acquisition rows", m, med["merge"]), ("merge, no departmental rows", m, med["merge_off"])]
    common.print_table(["what", "items", "seconds", "items/s", "µs/item"],
                       [(w, f"{k:,}", f"{s:.3f}", f"{k / s:,.0f}", f"{s / k * 1e6:,.0f}") for w, k, s in rows],
                       title=f"departmental cost, median of {args.rounds} interleaved rounds")
    for name in sets:
        print(f"{name}: departmental extraction {med[f'parse {name}'] / med[f'parse_off {name}'] - 1:+.1%} of the "
              f"header parse; pacs parse vs raw pydicom {med[f'pydicom {name}'] / med[f'parse {name}']:.2f}x")
    print(f"merge: acquisition rows {med['merge'] / med['merge_off'] - 1:+.1%}")
    common.final_json({"files": {k: len(v) for k, v in sets.items()}, "staged_rows": m, "rounds": runs, "median_s": med,
                       "machine": common.machine_info(), **common.provenance(start)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
