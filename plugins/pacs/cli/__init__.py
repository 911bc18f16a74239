"""The ``pacs`` command: the archive's jobs from a shell, without a scheduler.

Argument parsing only: each command calls the room that does the work. ``pacs [--config FILE]
[-v] COMMAND ...`` takes the shared options before the command's name or after it; each command
has its own parser in one module of this package (``parser(name)``, which sets ``run``), listed
in :data:`COMMANDS`, and is imported only when it runs, so ``pacs --help`` stays instant. How
errors reach a person (one line, exit status 2 or 1, the traceback under ``-v``) is
:mod:`pacs.cli.common`; a closed pipe (``pacs summary | head -1``) ends a command silently.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial

from pacs.cli import common  # the package's names stay module names: `pacs.cli.report` is a command

# name: (module, what it does). The module has parser(name) -> ArgumentParser with `run` set,
# or, for synth (also `python -m pacs.synth`), main(argv).
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("pacs.cli.intake", "take in the settled files of the landing locations (one intake pass)"),
    "summary": ("pacs.cli.catalogue", "what the catalogue holds, and what waits in landing"),
    "check": ("pacs.cli.catalogue", "check the catalogue's invariants and that every landing location exists"),
    "header": ("pacs.cli.intake", "a file's header fields, and what intake would do with the file"),
    "resubmit": ("pacs.cli.intake", "send quarantined files back through intake"),
    "query": ("pacs.cli.query", "run SQL over the catalogue (analysts)"),
    "lifecycle": ("pacs.cli.tiers", "move aged studies from the online tier to the offline tier"),
    "recall": ("pacs.cli.tiers", "bring studies back online, pinned until a date"),
    "fixity": ("pacs.cli.tiers", "verify the copies in both tiers and repair online ones"),
    "report": ("pacs.cli.report", "write the capacity report"),
    "patient": ("pacs.cli.admin", "correct a patient's identity: `patient merge --from OLD --into NEW --reason R`"),
    "study": ("pacs.cli.admin", "correct a study's patient: `study move --study UID --to-patient ID --reason R`"),
    "reject": ("pacs.cli.admin", "reject instances (kept, out of views, plans, figures and recall): "
                                 "`reject --study|--series|--sop UID --reason CODE`"),
    "purge": ("pacs.cli.purge", "delete rejected or expired instances from both tiers through a recorded plan: "
                                "`purge --rejected-before DATE [--retention] [--dry-run]`"),
    "backup": ("pacs.cli.backup", "back up the catalogue to the offline tier (verified generations): "
                                  "`backup [--list]`"),
    "restore": ("pacs.cli.backup", "put a backup generation in place of the catalogue: `restore [--generation N] "
                                   "[--force]`"),
    "rebuild": ("pacs.cli.backup", "rebuild the catalogue from the tiers alone (and the newest backup): "
                                   "`rebuild [--force]`"),
    "export": ("pacs.cli.export", "export a cohort's DICOM files (verified, resumable, optionally de-identified): "
                                  "`export --to DIR|s3://... --query SQL|--study UID|--accession N|--patient-id ID`"),
    "synth": ("pacs.cli.synth", "write a synthetic archive (demo, tests, benchmarks)"),
}

_EPILOG = """\
`pacs COMMAND --help` shows a command's options.

Exit status: 0 done; 1 problems found, or a fault of the archive; 2 a mistake to fix in the
command, the configuration or a location (one line on stderr; -v adds the traceback)."""


def _parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="pacs", usage="pacs [--config FILE] [-v] COMMAND [options]",
        description="The PACS archive from a shell: intake, the catalogue, the tiers and the capacity report, "
                    "without a scheduler.\n\ncommands:\n" + listing,
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help=common.CONFIG_HELP)
    p.add_argument("-v", "--verbose", action="store_true", help=common.VERBOSE_HELP)
    p.add_argument("command", metavar="COMMAND", choices=COMMANDS, help=argparse.SUPPRESS)
    p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the interpreter's last flush is silent."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _command(name: str, top: argparse.Namespace) -> tuple[Callable[[], int | None], bool]:
    """The command ``name`` with its arguments parsed, ready to run, and whether ``-v`` was given."""
    module = importlib.import_module(COMMANDS[name][0])
    if not hasattr(module, "parser"):
        return partial(module.main, top.args), top.verbose
    given = argparse.Namespace(config=top.config, verbose=top.verbose)
    args = module.parser(name).parse_args(top.args, namespace=given)
    common.setup_logging(name, args.verbose, getattr(args, "log_level", logging.WARNING))
    return partial(args.run, args), args.verbose


def _guarded(name: str, command: Callable[[], int | None], verbose: bool) -> int:
    """Run a command; an error of the archive becomes one line and exit status 2 or 1."""
    try:
        status = int(command() or 0)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped reading (`| head`): nothing to say
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        print(f"pacs {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        known = common.exit_status(exc)
        if known is None:
            raise  # not an error of the archive: a bug, with Python's traceback
        common.report(name, exc, verbose)
        return known
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``pacs [--config FILE] [-v] COMMAND ...``; returns the exit status."""
    top = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    command, verbose = _command(top.command, top)
    return _guarded(top.command, command, verbose)


if __name__ == "__main__":
    raise SystemExit(main())
