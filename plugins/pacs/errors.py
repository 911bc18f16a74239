"""Every error the archive raises: one root, two kinds.

All of them derive from :class:`PacsError`, and each is either

- **terminal** (:class:`TerminalError`): retrying cannot fix it — a configuration mistake, a
  study that is not catalogued, a tier that is full or read-only, a fixity finding. A task
  that raises one fails at once, without retries (:func:`pacs.dagkit.task_errors`), and its
  one-line message says what, where and how to fix; or
- **transient** (:class:`TransientError`): the same call may succeed in a moment — the
  catalogue held by another writer, an object store that did not answer, a file that changed
  while it was read. Airflow retries the task.

:func:`is_terminal` tells which (a :class:`TierError` decides by its cause). Errors that are
also a built-in kind keep that base too (a :class:`ConfigError` is a ``ValueError``, a
:class:`StorageError` an ``OSError``), so ``except OSError`` still catches a storage fault.

Messages never contain patient data. This module imports only the standard library: the DAG
files import it at parse time through :mod:`pacs.dagkit`.
"""

from __future__ import annotations

import errno


class PacsError(Exception):
    """The root of every error of the archive."""

    terminal: bool = True

    @property
    def transient(self) -> bool:
        return not self.terminal


class TerminalError(PacsError):
    """Retrying cannot fix it: the task fails at once."""

    terminal = True


class TransientError(PacsError):
    """The same call may succeed later: the task is retried."""

    terminal = False


def is_terminal(exc: BaseException) -> bool:
    """Whether retrying cannot fix ``exc`` (errors from outside the archive count as transient)."""
    return isinstance(exc, PacsError) and exc.terminal


# --- configuration ----------------------------------------------------------------------------

class ConfigError(TerminalError, ValueError):
    """The configuration file is missing, malformed, or names a bad value (the key is named)."""


class PolicyError(ConfigError):
    """The lifecycle policy names a bad value."""


class RunDateError(TerminalError, ValueError):
    """A run with neither a logical date nor ``run_after``."""


# --- storage ----------------------------------------------------------------------------------

class StorageError(TransientError, OSError):
    """A write or verification on a tier failed (the bytes changed, a copy is missing)."""


class CorruptCopyError(StorageError):
    """A stored copy does not hold the bytes its sha256 names."""


# errnos of a tier fault that no retry fixes: someone must free space, remount or fix permissions
_TERMINAL_TIER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                                   errno.ENOENT})


class TierError(StorageError):
    """A tier cannot take writes (full, read-only, missing, not permitted, unreachable).

    Not a fault of any one file: the step stops with one line naming the location and how to
    fix it, records nothing, and the next run redoes the work once the tier is back. Full,
    read-only, missing and not-permitted tiers are terminal; an unreachable one is transient.
    """

    @property
    def terminal(self) -> bool:  # type: ignore[override]
        return self.errno in _TERMINAL_TIER_ERRNOS

    def __str__(self) -> str:
        return str(self.strerror)


class LeaseUnsupportedError(ConfigError):
    """A lease was asked for where it cannot be exclusive: an object store that ignores
    conditional writes, or a protocol the leases do not speak. A :class:`ConfigError`, since
    only a ``work`` location on another store fixes it; never a lease that silently does nothing."""


class UnsafePathError(TerminalError, ValueError):
    """A value that is not a valid DICOM UID (or batch id) was about to become a path."""


class UsageError(TerminalError, ValueError):
    """A command or task asked for something that does not exist (an unknown reason code, say)."""


# --- catalogue --------------------------------------------------------------------------------

class CatalogueMissingError(TerminalError, FileNotFoundError):
    """The catalogue file does not exist yet (nothing was ingested)."""


class CatalogueBusyError(TransientError, RuntimeError):
    """Another process held the catalogue's lock for longer than the timeout."""


class SnapshotBusyError(TransientError, RuntimeError):
    """The Parquet snapshot kept changing under a query (a refresh was under way)."""


# --- DICOM headers (per file: they quarantine the file, they never fail a task) ---------------

class HeaderError(TerminalError):
    """A file that cannot be catalogued from its header; ``reason`` is the quarantine code."""

    reason = "unreadable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotDicomError(HeaderError):
    """The file is not DICOM at all."""

    reason = "not_dicom"


class UnreadableError(HeaderError):
    """The file is DICOM but truncated or corrupt."""

    reason = "unreadable"


class InvalidValueError(HeaderError):
    """A header element the catalogue reads has a value its column cannot take."""

    reason = "invalid_value"


# --- export ---------------------------------------------------------------------------------

class DeidentificationError(TerminalError, ValueError):
    """A file the de-identification profile cannot de-identify (burned-in annotation, not a
    DICOM instance); ``reason`` is its code in an export's ``refused.csv``.

    Terminal: the same bytes are refused again, so retrying cannot help. Per file: an export
    leaves the file out and lists it, the rest is exported. The message names no patient data.
    """

    def __init__(self, detail: str, reason: str = "not_deidentifiable") -> None:
        super().__init__(detail)
        self.detail, self.reason = detail, reason


# --- tiers, reports, queries, the demo --------------------------------------------------------

class RecallError(TerminalError, RuntimeError):
    """A recall that cannot be done as asked (no such study, no room online, no copy left)."""


class FixityError(TerminalError, RuntimeError):
    """Fixity found damaged or missing copies that it could not repair."""


class ReportError(TerminalError, RuntimeError):
    """The capacity report cannot be built from what was asked."""


class QueryError(TerminalError, RuntimeError):
    """An analyst's query that cannot run as asked."""


class DemoRefusal(TerminalError):
    """The demo will not touch a folder it did not make."""
