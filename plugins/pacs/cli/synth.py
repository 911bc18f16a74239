"""``pacs synth archive|ct|small ...``: synthetic archives from a shell (see :mod:`pacs.synth`).

Argument parsing only; the work is :mod:`pacs.synth`. Prints a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from pacs.synth import (
    DEFAULT_MODALITIES,
    SynthResult,
    generate_archive,
    generate_ct_slices,
    generate_small_files,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pacs synth", description="Write synthetic DICOM archives (deterministic per seed)."
    )
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("archive", help="a realistic hospital archive")
    a.add_argument("--out", required=True, type=Path, help="root directory to write")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--patients", type=int, default=50)
    a.add_argument("--start", type=date.fromisoformat, default=date(2021, 1, 1))
    a.add_argument("--end", type=date.fromisoformat, default=date(2025, 12, 31))
    a.add_argument("--modalities", default=",".join(DEFAULT_MODALITIES),
                   help="comma-separated (default %(default)s)")
    a.add_argument("--size-scale", type=float, default=1.0)
    a.add_argument("--count-scale", type=float, default=1.0)
    a.add_argument("--growth", type=float, default=0.08)
    a.add_argument("--bad", action="store_true", help="also write the bad set")
    a.add_argument("--duplicates", type=int, default=0, metavar="N")
    a.add_argument("--dose-reports", action="store_true",
                   help="also write a CT Radiation Dose SR per CT study (consistent events and totals)")

    c = sub.add_parser("ct", help="N CT slices (about 0.5 MB each)")
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--n", required=True, type=int)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--rows", type=int, default=512)
    c.add_argument("--columns", type=int, default=512)
    c.add_argument("--per-series", type=int, default=250)

    s = sub.add_parser("small", help="N small files (about 12 KB each)")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--n", required=True, type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--target-size", type=int, default=12_000)
    s.add_argument("--per-series", type=int, default=100)

    for sp in (a, c, s):
        sp.add_argument("--manifest", type=Path, default=None, help="write a JSON manifest here")
    return p


def _generate(args: argparse.Namespace) -> SynthResult:
    """Run the generator ``args.command`` names with the parsed options."""
    if args.command == "archive":
        return generate_archive(
            args.out, seed=args.seed, patients=args.patients, start=args.start, end=args.end,
            modalities=[m.strip() for m in args.modalities.split(",") if m.strip()],
            size_scale=args.size_scale, count_scale=args.count_scale, growth=args.growth,
            bad=args.bad, duplicates=args.duplicates, dose_reports=args.dose_reports,
        )
    if args.command == "ct":
        return generate_ct_slices(args.out, args.n, seed=args.seed, rows=args.rows,
                                  columns=args.columns, per_series=args.per_series)
    return generate_small_files(args.out, args.n, seed=args.seed, target_size=args.target_size,
                                per_series=args.per_series)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``archive``, ``ct`` or ``small``; prints a one-line JSON summary."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.monotonic()
    try:
        result = _generate(args)
    except ValueError as exc:
        print(f"pacs synth: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - t0
    if args.manifest is not None:
        result.write_manifest(args.manifest)
    files = len(result.files)
    print(json.dumps({
        "command": args.command,
        "root": str(result.root),
        "files": files,
        "counts": result.counts(),
        **result.summary(),
        "seconds": round(elapsed, 3),
        "files_per_s": round(files / elapsed, 1) if elapsed > 0 else None,
        "manifest": str(args.manifest) if args.manifest is not None else None,
    }))
    return 0
