"""What every ``pacs`` command shares: ``--config`` and ``-v``, and how an error reaches a person.

The two options are taken before the command's name or after it (``pacs --config F summary``,
``pacs summary --config F``). An error is one line on stderr, ``pacs <command>: <what, where,
how to fix>``, with the traceback above it only under ``-v``:

- exit status 2: a mistake the user can fix — a configuration that is missing or invalid, a
  study, patient or file that does not exist, a location that is missing, unreachable or full,
  an impossible request (:data:`USER_ERRORS`, and an object store that cannot be reached or
  has no credentials);
- exit status 1: a fault of the archive or a finding (a busy catalogue, a corrupt copy, fixity
  findings, any other :class:`~pacs.errors.PacsError`).

A command's own "problems found" (``pacs check``, a quarantine verdict of ``pacs header``) is
exit status 1 too. Imports nothing heavy: ``pacs --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Any

from pacs.errors import (
    CatalogueMissingError,
    ConfigError,
    DemoRefusal,
    PacsError,
    QueryError,
    RecallError,
    ReportError,
    RunDateError,
    TierError,
    UnsafePathError,
    UsageError,
)

USAGE = 2
FAULT = 1

USER_ERRORS: tuple[type[PacsError], ...] = (ConfigError, UsageError, UnsafePathError, CatalogueMissingError,
                                            RecallError, QueryError, ReportError, RunDateError, DemoRefusal,
                                            TierError)
"""Errors that name a mistake of the user's or of the setup (exit status 2)."""

CONFIG_HELP = "the archive's configuration file (default: $PACS_CONFIG, else config/pacs.yaml)"


VERBOSE_HELP = "log progress, and show the traceback of an error"


def options() -> argparse.ArgumentParser:
    """The options every command takes (a parent parser). :func:`pacs.cli.main` parses a
    command's arguments into the namespace of the options given before its name, and argparse
    sets no default over a value already there."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    return p


def command_parser(name: str, description: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A command's own parser: ``pacs <name> --help`` shows its usage and options only."""
    return argparse.ArgumentParser(prog=f"pacs {name}", description=description, parents=[options()], **kwargs)


def load(args: argparse.Namespace) -> Any:
    """The configuration ``--config`` (or ``$PACS_CONFIG``) names, validated."""
    from pacs.config import load_config

    return load_config(args.config)


def _unreachable(exc: BaseException) -> str | None:
    """One line for an object store that cannot be reached or has no credentials (the client's
    errors are not OSErrors), or None for any other error."""
    if "botocore" not in sys.modules:
        return None
    from botocore.exceptions import ConnectionError as EndpointError
    from botocore.exceptions import NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return ("the object store has no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the "
                "location a conn_id (an Airflow connection)")
    if isinstance(exc, EndpointError):
        return (f"{exc}: the object store is unreachable; check that it is running and the location's endpoint "
                "(storage_options.endpoint_url or AWS_ENDPOINT_URL_S3) in the configuration")
    return None


def exit_status(exc: BaseException) -> int | None:
    """2 for a user's mistake, 1 for a fault of the archive, None for an error this module does
    not know (a bug: Python's own traceback)."""
    if isinstance(exc, USER_ERRORS) or _unreachable(exc) is not None:
        return USAGE
    if isinstance(exc, PacsError):
        return FAULT
    return None


def one_line(exc: BaseException) -> str:
    """The error's message on one line."""
    return _unreachable(exc) or " ".join(str(exc).split()) or type(exc).__name__


def report(command: str, exc: BaseException, verbose: bool) -> None:
    """Print an error for a person: its traceback under ``-v``, then one line."""
    if verbose:
        traceback.print_exception(exc)
    print(f"pacs {command}: {one_line(exc)}", file=sys.stderr)


def warn(command: str, text: str) -> None:
    """A warning for a person, one line on stderr (stdout stays the command's output)."""
    print(f"pacs {command}: warning: {text}", file=sys.stderr)


def note(command: str, text: str) -> None:
    """A note for a person, one line on stderr."""
    print(f"pacs {command}: {text}", file=sys.stderr)


class _PlainFormatter(logging.Formatter):
    """Log records as a person reads them: ``pacs <command>: warning: <message>``."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"pacs {self.command}: {level}{record.getMessage()}"


def setup_logging(command: str, verbose: bool, level: int = logging.WARNING) -> None:
    """Log to stderr: plainly at ``level``, or everything from INFO with times and loggers under ``-v``."""
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_PlainFormatter(command))
    handler.pacs_cli = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "pacs_cli", False)]:  # an earlier in-process run's
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else level)
