"""Run one step of a task in a fresh interpreter, so that the step's memory ends with it.

Airflow runs a task in a process forked from its worker (the LocalExecutor's worker is forked
from the scheduler), so the task's resident memory starts with Airflow's own (about 200 MB with
the package's imports) before the step allocates anything. The catalogue merge of a backlog adds
DuckDB's working set to that (about 250 MB at 100,000 files), which DuckDB's allocator keeps
until the process ends. :func:`run` runs such a step in ``python -m pacs.isolate`` instead: the
child imports only what the step needs, and everything it held is returned to the system when
it exits (``bench/backlog_rss.py`` measures both).

What the child is given and gives back:

- the step, named ``"module:function"``, and its keyword arguments, pickled over its stdin;
- the task's environment, in the mode Airflow gives task code run in another interpreter (no
  metadata-DB engine, which a task may not use anyway), plus ``AIRFLOW_CONN_<ID>`` for each
  Airflow connection the configuration's locations name (:func:`connection_env`): the child is
  not a task and cannot ask Airflow's supervisor for them; the environment is Airflow's own way
  to hand one over, and it is never logged or written to disk;
- its result, or the exception it raised (the same class, so a terminal error still fails the
  task at once), pickled into a file of a private temporary folder;
- its log records on its stderr, which is the task's: they appear in the task's log.

The child dies with the task: on Linux it asks the kernel for SIGKILL when its parent ends
(``PR_SET_PDEATHSIG``, so even a task killed with SIGKILL takes it along), and the parent kills
it when it is interrupted (a timeout, SIGTERM, an exception). What the step holds — the
catalogue's file lock, the journal's leases — is held by the child and so dies with it too;
a merge killed before COMMIT is redone whole by the next run.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pacs.errors import PacsError, TerminalError, TransientError, is_terminal

if TYPE_CHECKING:
    from pacs.config import Config

log = logging.getLogger(__name__)

_PARENT_ENV = "PACS_ISOLATE_PARENT"
_PR_SET_PDEATHSIG = 1


class StepDiedError(TransientError):
    """The isolated step's process ended without a result (killed, or out of memory)."""


def connection_env(cfg: Config) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` for each connection the configuration's locations name and the
    environment does not already define (looked up through Airflow, i.e. in a task)."""
    ids = {loc.conn_id for loc in cfg.all_roots() if loc.conn_id}
    env: dict[str, str] = {}
    for conn_id in sorted(ids):
        name = f"AIRFLOW_CONN_{conn_id.upper()}"
        if name in os.environ:
            continue
        from airflow.sdk import Connection

        env[name] = Connection.get(conn_id).as_json()
    return env


def run(target: str, /, *, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """Call ``target`` (``"module:function"``) with ``kwargs`` in a fresh interpreter; return
    what it returns or raise what it raised.

    Raises
    ------
    StepDiedError
        The child ended without a result (its exit status is named); the step is retried.
    """
    package_root = str(Path(__file__).resolve().parent.parent)
    # PYTHON_OPERATORS_VIRTUAL_ENV_MODE: Airflow's own mode for task code in another interpreter
    # (PythonVirtualenvOperator) — importing Airflow then sets up no metadata-DB engine, which a task
    # may not use anyway (inside a task its URL is deliberately unparsable)
    child_env = {**os.environ, "PYTHON_OPERATORS_VIRTUAL_ENV_MODE": "1", **(env or {}), _PARENT_ENV: str(os.getpid())}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, child_env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="pacs-isolate-") as tmp:
        result = Path(tmp) / "result.pickle"
        request = pickle.dumps({"target": target, "kwargs": kwargs})
        proc = subprocess.Popen([sys.executable, "-m", "pacs.isolate", str(result)],
                                stdin=subprocess.PIPE, env=child_env)
        try:
            assert proc.stdin is not None
            with proc.stdin:
                proc.stdin.write(request)
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if code != 0 or not result.exists():
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            raise StepDiedError(f"{target}: its process ended with {how} before finishing; nothing it did "
                                "counts twice: the task's retry redoes it")
        outcome = pickle.loads(result.read_bytes())  # noqa: S301 - written by our own child, in our private folder
    if outcome[0] == "ok":
        return outcome[1]
    exc, child_traceback = outcome[1], outcome[2]
    # an archive error's one line says it all (its traceback only on request); anything else is a
    # fault worth its traceback, which the parent's own would not show
    log.log(logging.DEBUG if isinstance(exc, PacsError) else logging.ERROR, "%s raised in its process:\n%s",
            target, child_traceback)
    raise exc


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else an archive error of the same kind with its message."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
        return exc
    except Exception:  # noqa: BLE001 - any failure to round-trip means: send a plain copy
        kind = TerminalError if is_terminal(exc) else TransientError
        return kind(f"{type(exc).__name__}: {exc}")


def _die_with_parent() -> None:
    parent = int(os.environ.get(_PARENT_ENV, "0"))
    if sys.platform.startswith("linux"):
        with_errno = ctypes.CDLL(None, use_errno=True)
        with_errno.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:  # the parent ended before the request above
        os._exit(1)


def _main(argv: list[str]) -> int:
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    result = Path(argv[1])
    request = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from our parent, over a pipe
    try:
        module, _, name = request["target"].partition(":")
        outcome: tuple[Any, ...] = ("ok", getattr(importlib.import_module(module), name)(**request["kwargs"]))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent, which raises it
        outcome = ("error", _portable(exc), traceback.format_exc())
    result.write_bytes(pickle.dumps(outcome))  # read only after a clean exit: no partial file is ever read
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv))
