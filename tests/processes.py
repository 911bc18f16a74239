"""Real child processes for the tests of leases and concurrent runs: a snippet of Python run by
the project's interpreter (``pacs`` importable, the test's environment: moto's endpoint and
credentials), spoken to line by line on stdin/stdout, killed or paused with real signals.

Every wait has a generous timeout and polls; nothing here measures time.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import ROOT

_END = "\0end of output\0"

TIMEOUT = 180.0
"""How long a test waits for a child's line or for a condition (a loaded 2-core machine is slow)."""


class Child:
    """A Python child process running ``code`` with ``args`` as ``sys.argv[1:]``.

    Its stdout is read by a thread into a queue so that :meth:`line` can time out; its stderr
    goes to ``log`` and is shown when it ends unexpectedly.
    """

    def __init__(self, code: str, *args: str, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
        self.log = log
        self._err = open(log, "w")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, bufsize=1)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(_END)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        self._err.flush()
        return self.log.read_text()[-4000:]

    def line(self, timeout: float = TIMEOUT) -> str:
        """The child's next line of output; fails the test if it ends or says nothing for ``timeout``."""
        try:
            out = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from the child for {timeout:.0f}s:\n{self.stderr()}") from None
        if out is _END:
            self._lines.put(_END)
            status = self.proc.wait(TIMEOUT)
            raise AssertionError(f"the child ended (status {status}):\n{self.stderr()}")
        return out

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = TIMEOUT) -> int:
        status = self.proc.wait(timeout)
        self._err.close()
        return status

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the child."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(TIMEOUT)
        self._err.close()

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT, every: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something true (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
