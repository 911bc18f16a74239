"""The stack's processes: PostgreSQL, Redis, moto's S3 server and the Airflow components.

Each is started from its own binary on 127.0.0.1, on a free port, with its data and its log in
the stack's temporary folder, and in a session of its own (``start_new_session``), so that
:meth:`Service.stop` ends it and every child it forked (Celery's pool, the task processes) by
the process group of the one process it started — never by name. Nothing here relies on a
system service or on what is already running on the machine.

- :func:`ensure_packages` — Debian's ``postgresql`` (15) and ``redis-server`` when missing
  (apt-get as root, or through ``sudo -n``), as ``.ci/run`` does for chromium;
- :class:`Service` — one long-running process, its log, and a stop that always ends it;
- :class:`Postgres` — a throw-away cluster (``initdb`` + ``pg_ctl``, as the ``postgres`` user
  when run as root: PostgreSQL refuses to run as root);
- :func:`redis`, :func:`moto` — Redis (the Celery broker) and moto's S3 server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, ready: Callable[[], bool], *, timeout: float, every: float = 0.5,
               alive: Callable[[], None] | None = None) -> float:
    """Poll ``ready()`` until it is true; the seconds it took. ``alive()`` raises if what we wait for died."""
    t0 = time.monotonic()
    while True:
        if alive is not None:
            alive()
        try:
            if ready():
                return time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise StackError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(every)


class StackError(RuntimeError):
    """The stack could not be started, a component died, or a check failed (one line)."""


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (empty when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ── Debian packages ──────────────────────────────────────────────────────────────────────────
def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL binaries (15 preferred), or None."""
    preferred = Path("/usr/lib/postgresql/15/bin")
    if (preferred / "postgres").exists():
        return preferred
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def redis_bin() -> Path | None:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server")
                                             else None)
    return Path(found) if found else None


def ensure_packages() -> list[str]:
    """Install Debian's ``postgresql`` and ``redis-server`` when missing; the packages installed."""
    missing = [pkg for pkg, there in (("postgresql", postgres_bin()), ("redis-server", redis_bin())) if not there]
    if not missing:
        return []
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
            sudo = ["sudo", "-n"]
        else:
            raise StackError(f"missing Debian packages {' '.join(missing)}, and neither root nor sudo: "
                             f"install them (apt-get install {' '.join(missing)}) and run make stack-test again")
    env = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive"]
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        proc = subprocess.run([*env, *cmd], capture_output=True, text=True)
        if proc.returncode:
            raise StackError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    if postgres_bin() is None or redis_bin() is None:
        raise StackError(f"installed {' '.join(missing)}, yet postgres or redis-server is still not found")
    return missing


# ── processes ────────────────────────────────────────────────────────────────────────────────
class Service:
    """One long-running process of the stack, started in its own session, logging to ``log``."""

    def __init__(self, name: str, cmd: Sequence[str], *, env: Mapping[str, str], log: Path,
                 cwd: Path | None = None) -> None:
        self.name, self.cmd, self.env, self.log, self.cwd = name, list(cmd), dict(env), log, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def check_alive(self) -> None:
        """Raise :class:`StackError` with the log's tail if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise StackError(f"{self.name} exited with status {self.proc.returncode}; the end of {self.log}:\n"
                             f"{tail(self.log)}")

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)  # the session this process leads: it and its children

    def terminate(self) -> None:
        """SIGTERM to the process group (the process and every child it forked)."""
        if self.proc is not None:
            self._signal_group(signal.SIGTERM)

    def finish(self, timeout: float = 15.0) -> None:
        """Wait up to ``timeout`` for the process after :meth:`terminate`, then SIGKILL what is left of its group."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        # Children (Celery's pool, task supervisors) may outlive their parent: end the group.
        deadline = time.monotonic() + 5
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.proc = None

    def stop(self, timeout: float = 15.0) -> None:
        """:meth:`terminate`, then :meth:`finish`."""
        self.terminate()
        self.finish(timeout)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# ── PostgreSQL ───────────────────────────────────────────────────────────────────────────────
class Postgres:
    """A throw-away PostgreSQL cluster in ``base`` on 127.0.0.1:``port`` with a database ``airflow``.

    Trust authentication on the loopback address only; durability off (``fsync``,
    ``synchronous_commit``): the cluster lives as long as the stack does.
    """

    def __init__(self, base: Path, port: int) -> None:
        self.base, self.port = base, port
        self.data, self.sockets, self.log = base / "data", base / "sockets", base / "postgres.log"
        self.bin = postgres_bin()
        self.user = "postgres"
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/airflow"

    @property
    def celery_url(self) -> str:
        return f"db+postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/airflow"

    def _runner(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        owner = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
        if owner is None:
            raise StackError("running as root and there is no 'postgres' user to run PostgreSQL as")
        return ["runuser", "-u", owner, "--"]

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run([*self._runner(), *cmd], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode:
            raise StackError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): "
                             f"{(proc.stdout + proc.stderr).strip()[-1500:]}\n{tail(self.log)}")

    def start(self) -> None:
        if self.bin is None:
            raise StackError("PostgreSQL is not installed (Debian package postgresql)")
        self.sockets.mkdir(parents=True)
        runner = self._runner()
        if runner:
            owner = runner[2]
            for path in (self.base, self.sockets):
                shutil.chown(path, owner)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8",
                  "--no-sync")
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self.started = True
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "120", "-l", str(self.log),
                  "-o", options, "start")
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "airflow")

    def stop(self) -> None:
        if not self.started or self.bin is None:
            return
        proc = subprocess.run([*self._runner(), str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                               "-w", "-t", "60", "stop"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode:
            # The postmaster's pid is the first line of postmaster.pid: end it by that id.
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGQUIT)
        self.started = False


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# ── Redis and moto ───────────────────────────────────────────────────────────────────────────
def redis(base: Path, port: int, env: Mapping[str, str]) -> Service:
    """Redis on 127.0.0.1:``port``, in memory only (no RDB, no AOF)."""
    exe = redis_bin()
    if exe is None:
        raise StackError("redis-server is not installed (Debian package redis-server)")
    base.mkdir(parents=True, exist_ok=True)
    cmd = [str(exe), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(base), "--daemonize", "no", "--protected-mode", "yes"]
    return Service("redis", cmd, env=env, log=base / "redis.log")


def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def moto(base: Path, port: int, env: Mapping[str, str]) -> Service:
    """moto's S3 server on 127.0.0.1:``port`` (a real HTTP endpoint, as in the tests)."""
    exe = VENV_BIN / "moto_server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    return Service("moto", [*cmd, "-H", "127.0.0.1", "-p", str(port)], env=env, log=base / "moto.log")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310  (our own 127.0.0.1 endpoint)
        return 200 <= resp.status < 300
