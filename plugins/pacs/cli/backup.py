"""``pacs backup``, ``pacs restore`` and ``pacs rebuild``: getting the catalogue back after a loss.

Argument parsing only; the work is :mod:`pacs.catalogue.backup` (verified generations in the
offline tier, restore) and :mod:`pacs.catalogue.rebuild` (the catalogue from the tiers alone,
resumable). Each prints what it did as JSON on stdout; ``rebuild`` logs its progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from pacs.cli.common import command_parser, load, note


def _print(out: Any) -> None:
    print(json.dumps(out, indent=1, default=str))


def _backup_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(name, "Back up the catalogue to the offline tier as a new generation (a consistent copy, "
                             "verified by sha256 after upload); generations beyond backup.keep are deleted.")
    p.add_argument("--list", action="store_true", help="list the verified generations instead")
    p.set_defaults(run=_backup)
    return p


def _backup(args: argparse.Namespace) -> int:
    from pacs.catalogue import backup as backups
    from pacs.cli.admin import _run_id

    cfg = load(args)
    if args.list:
        _print([{"generation": g.number, **{k: g.manifest.get(k) for k in ("created_at", "size_bytes", "sha256",
                                                                             "counts")}}
                for g in backups.generations(cfg)])
        return 0
    out = backups.backup(cfg, run_id=_run_id())
    note("backup", f"generation {out['generation']}: {out['counts']['image']} images, {out['bytes']} bytes, "
                   f"verified ({out['uri']})")
    _print(out)
    return 0


def _restore_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(name, "Put a backup generation in place of the catalogue (checked against its sha256 and "
                             "opened first); the analysts' snapshot is rewritten from it.")
    p.add_argument("--generation", metavar="N", type=int, help="the generation (default: the newest; "
                                                                "`pacs backup --list` shows them)")
    p.add_argument("--force", action="store_true", help="replace an existing catalogue (kept beside it as "
                                                        "<file>.replaced-<time>)")
    p.set_defaults(run=_restore)
    return p


def _restore(args: argparse.Namespace) -> int:
    from pacs.catalogue.backup import restore

    out = restore(load(args), args.generation, force=args.force)
    note("restore", f"generation {out['generation']} ({out['created_at']}) restored: {out['counts']['image']} images"
                    + (f"; the replaced catalogue is {out['replaced']}" if out["replaced"] else ""))
    _print(out)
    return 0


def _rebuild_parser(name: str) -> argparse.ArgumentParser:
    p = command_parser(name, "Rebuild the catalogue from the tiers alone: online files, offline objects (inside "
                             "series tars too) and the quarantine's sidecars; what no file holds (lifecycle runs, "
                             "recall pins, corrections, fixity history, ...) comes from the newest backup. "
                             "Resumable: run it again after a kill.")
    p.add_argument("--force", action="store_true", help="replace an existing catalogue (kept beside it as "
                                                        "<file>.replaced-<time>)")
    p.add_argument("--no-backup", action="store_true", help="use no backup: the tiers only")
    p.add_argument("--restart", action="store_true", help="discard an interrupted rebuild's work and list afresh")
    p.add_argument("--workers", type=int, metavar="N", help="reader processes (default: ingest.workers)")
    p.set_defaults(run=_rebuild, log_level=logging.INFO)
    return p


def _rebuild(args: argparse.Namespace) -> int:
    from pacs.catalogue.rebuild import rebuild

    out = rebuild(load(args), force=args.force, restart=args.restart, use_backup=not args.no_backup,
                  workers=args.workers)
    if out.get("problems"):
        note("rebuild", f"{out['problems']} file(s) could not be catalogued (problem_files lists them); they are "
                        "left where they are")
    if out.get("from_backup") is None and out.get("not_rebuilt"):
        note("rebuild", "no backup was used: not rebuilt: " + "; ".join(out["not_rebuilt"]))
    _print(out)
    return 1 if out.get("problems") else 0


def parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``pacs backup``, ``pacs restore`` or ``pacs rebuild``."""
    return {"backup": _backup_parser, "restore": _restore_parser, "rebuild": _rebuild_parser}[name](name)
