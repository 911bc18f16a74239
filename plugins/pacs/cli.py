"""The ``pacs`` command: the package's jobs from a shell, without a scheduler.

Subcommands (``pacs <command> --help`` for each):

- ``synth``      generate a synthetic archive (see :mod:`pacs.synth`)
- ``ingest``     run one intake pass (sweep, process, merge, finalize, snapshot) in this process
- ``summary``    what the catalogue holds: counts, bytes, quarantine by reason, where things are
- ``resubmit``   send quarantined files back through intake
- ``header``     print the catalogue fields read from a file's header (names masked)
- ``check``      verify the catalogue's invariants (unique SOP instances, exact aggregates)
- ``query``      analysts' SQL over the catalogue (see :mod:`pacs.query`)
- ``report``     the capacity report (see :mod:`pacs.capacity`)
- ``lifecycle``, ``recall``, ``fixity``  tier management (see :mod:`pacs.lifecycle`)
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

# Commands implemented in their own modules, each with ``main(argv) -> int``.
DELEGATED = {
    "synth": "pacs.synth",
    "query": "pacs.query",
    "report": "pacs.capacity",
    "lifecycle": "pacs.lifecycle",
    "recall": "pacs.lifecycle",
    "fixity": "pacs.fixity",
}


def _config(path: str | None) -> Any:
    from pacs.config import load_config

    return load_config(path)


def summary(cfg: Any) -> dict[str, Any]:
    """Counts of what the catalogue holds (no patient data)."""
    from pacs import catalogue

    if not cfg.duckdb.exists():
        return {"catalogue": str(cfg.duckdb), "empty": True}
    with catalogue.opened(cfg.duckdb, read_only=True) as con:
        one = con.execute("""
            SELECT (SELECT count(*) FROM patient), (SELECT count(*) FROM study), (SELECT count(*) FROM series),
                   (SELECT count(*) FROM image), (SELECT coalesce(sum(size_bytes), 0) FROM image),
                   (SELECT coalesce(sum(duplicates), 0) FROM ingest_batch),
                   (SELECT coalesce(sum(files), 0) FROM ingest_batch)
        """).fetchall()[0]
        reasons = dict(con.sql(
            "SELECT reason, count(*) FROM quarantine WHERE status = 'quarantined' GROUP BY reason ORDER BY reason"
        ).fetchall())
        tiers = dict(con.sql("SELECT tier, count(*) FROM image GROUP BY tier ORDER BY tier").fetchall())
        modalities = dict(con.sql(
            "SELECT modality, count(*) FROM image JOIN series USING (series_instance_uid) GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall())
    keys = ("patients", "studies", "series", "images", "bytes", "duplicates", "files_received")
    out: dict[str, Any] = dict(zip(keys, (int(v) for v in one), strict=True))
    out.update(quarantined=reasons, images_by_tier=tiers, images_by_modality=modalities,
               catalogue=str(cfg.duckdb), parquet=cfg.parquet.url, online=cfg.online.url,
               quarantine_location=cfg.quarantine.url)
    return out


def _print_summary(info: dict[str, Any]) -> None:
    if info.get("empty"):
        print(f"The catalogue {info['catalogue']} is empty.")
        return
    gb = info["bytes"] / 1e9
    print("Catalogue")
    print(f"  patients {info['patients']:,}   studies {info['studies']:,}   series {info['series']:,}   "
          f"images {info['images']:,}   {gb:,.2f} GB")
    print(f"  by modality: {', '.join(f'{k} {v:,}' for k, v in info['images_by_modality'].items())}")
    print(f"  by tier: {', '.join(f'{k} {v:,}' for k, v in info['images_by_tier'].items())}")
    print(f"  identical duplicates removed from landing: {info['duplicates']:,} "
          f"(files received: {info['files_received']:,})")
    total_q = sum(info["quarantined"].values())
    print(f"Quarantined files: {total_q:,}" + (": " + ", ".join(f"{k} {v}" for k, v in info["quarantined"].items())
                                               if total_q else ""))
    print(f"  in {info['quarantine_location']}")
    print(f"DuckDB catalogue: {info['catalogue']}")
    print(f"Parquet snapshot: {info['parquet']}")
    print("Try:")
    print('  .venv/bin/pacs query "SELECT modality, count(*) AS images, round(sum(size_bytes) / 1e9, 2) AS gb '
          'FROM image JOIN series USING (series_instance_uid) GROUP BY ALL ORDER BY images DESC"')
    print("  or in any DuckDB, over the snapshot: SELECT study_year, count(*) AS studies FROM "
          f"read_parquet('{info['parquet']}/study/*/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY 1;")


def check(cfg: Any) -> list[str]:
    """Invariant checks of the catalogue; returns the problems found (empty when consistent)."""
    from pacs import catalogue, sql

    problems: list[str] = []
    with catalogue.opened(cfg.duckdb, read_only=True) as con:
        for name, query in sql.named_queries("checks").items():
            n = con.execute(query).fetchall()[0][0]
            if n:
                problems.append(f"{name}: {n}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        module = importlib.import_module(DELEGATED[argv[0]])
        rest = argv[1:] if DELEGATED[argv[0]] != "pacs.lifecycle" else argv
        return int(module.main(rest) or 0)
    parser = argparse.ArgumentParser(prog="pacs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="configuration file (default: $PACS_CONFIG or config/pacs.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in DELEGATED:
        sub.add_parser(name, help=f"see `pacs {name} --help`")
    p = sub.add_parser("ingest", help="one intake pass in this process")
    p.add_argument("--no-snapshot", action="store_true")
    p = sub.add_parser("summary", help="what the catalogue holds")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("resubmit", help="send quarantined files back through intake")
    p.add_argument("--reason", action="append", default=[], help="a reason code (repeatable)")
    p.add_argument("--id", action="append", default=[], help="a quarantine id <batch>:<row> (repeatable)")
    p = sub.add_parser("header", help="the catalogue fields of a file's header")
    p.add_argument("path")
    p.add_argument("--show-phi", action="store_true", help="do not mask names and birth dates")
    sub.add_parser("check", help="verify the catalogue's invariants")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(parser, args)
    except (OSError, ValueError, RuntimeError) as exc:
        from pacs.catalogue import CatalogueBusyError
        from pacs.config import ConfigError
        from pacs.storage import TierError

        if args.verbose or not isinstance(exc, TierError | ConfigError | CatalogueBusyError):
            raise
        print(f"pacs {args.command}: {exc}", file=sys.stderr)  # one line; -v shows the traceback
        return 1


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "ingest":
        from pacs.ingest import run_ingest

        print(json.dumps(run_ingest(_config(args.config), snapshot=not args.no_snapshot), indent=1))
        return 0
    if args.command == "summary":
        info = summary(_config(args.config))
        if args.json:
            print(json.dumps(info, indent=1))
        else:
            _print_summary(info)
        return 0
    if args.command == "resubmit":
        from pacs.quarantine import resubmit

        print(json.dumps(resubmit(_config(args.config), reasons=args.reason or None, ids=args.id or None)))
        return 0
    if args.command == "header":
        import fsspec

        from pacs.dicom import HeaderError, read_header

        fs, path = fsspec.core.url_to_fs(args.path)
        try:
            header = read_header(fs, path)
        except HeaderError as exc:
            print(f"{exc.reason}: {exc.detail}")
            return 1
        if not args.show_phi:
            for k in ("patient_name", "patient_birth_date"):
                if header.get(k):
                    header[k] = "***"
        print(json.dumps(header, indent=1, default=str))
        return 0
    if args.command == "check":
        problems = check(_config(args.config))
        for p in problems:
            print(p)
        print("catalogue consistent" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
