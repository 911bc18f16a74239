"""The error taxonomy: one root, terminal errors fail a task at once, transient ones are retried."""

from __future__ import annotations

import errno

import pytest

from pacs import dagkit, errors
from pacs.errors import (
    CatalogueBusyError,
    ConfigError,
    FixityError,
    PolicyError,
    RecallError,
    SnapshotBusyError,
    StorageError,
    TierError,
    is_terminal,
)


@pytest.mark.parametrize("exc", [ConfigError("x"), PolicyError("x"), RecallError("x"), FixityError("x"),
                                 TierError(errno.ENOSPC, "full"), TierError(errno.EROFS, "read-only"),
                                 TierError(errno.EACCES, "not writable")])
def test_what_retrying_cannot_fix_is_terminal(exc: Exception) -> None:
    assert is_terminal(exc) and not exc.transient


@pytest.mark.parametrize("exc", [CatalogueBusyError("x"), SnapshotBusyError("x"), StorageError("changed"),
                                 TierError(None, "unreachable"), TierError(errno.EBUSY, "busy"),
                                 ConnectionError("reset"), RuntimeError("bug")])
def test_what_may_pass_is_retried(exc: Exception) -> None:
    assert not is_terminal(exc)


def test_errors_keep_their_builtin_kind() -> None:
    assert isinstance(ConfigError("x"), ValueError)
    assert isinstance(TierError(errno.ENOSPC, "full"), OSError)
    assert str(TierError(errno.ENOSPC, "the online tier is full: free space")) == "the online tier is full: free space"


def test_every_public_error_is_a_pacs_error() -> None:
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, errors.PacsError), name


def test_a_task_fails_at_once_on_a_terminal_error_and_passes_a_transient_one_to_retries() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    def recall_unknown() -> None:
        raise RecallError("no catalogued study matches the recall of study 1.2.3")

    def busy() -> None:
        raise CatalogueBusyError("catalogue stayed locked")

    with pytest.raises(AirflowFailException, match=r"study 1\.2\.3"):
        dagkit.task(recall_unknown).function()
    with pytest.raises(CatalogueBusyError):
        dagkit.task(busy).function()
    assert dagkit.task(pool="x")(busy).function.__name__ == "busy"  # the task id stays the function's name
