"""Shared helpers of the benchmark scripts: paths, cached data sets, archive configurations,
Airflow homes, RSS sampling of process trees, Orthanc 1.10 as a reference server, and output.

Nothing here asserts a timing: the scripts print figures (a table and a final JSON line).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

DEFAULT_WORKDIR = Path(os.environ.get("PACS_BENCH_DIR", "/tmp/pacs-bench"))
ORTHANC = "/usr/sbin/Orthanc"
SAMPLE_EVERY = 0.05


def bin_path(name: str) -> str:
    """An executable of the venv running this script (``airflow``), else the one on PATH."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else (shutil.which(name) or name)


# ---------------------------------------------------------------------------------------------
# data sets (generated once, cached)
# ---------------------------------------------------------------------------------------------

def ensure_set(kind: str, n: int, workdir: Path) -> Path:
    """The folder of a cached benchmark set (``ct`` or ``small``) of ``n`` files; generated once."""
    from pacs import synth

    root = workdir / "sets" / f"{kind}-{n}"
    marker = root.with_name(root.name + ".complete")
    if marker.exists() and root.is_dir():
        return root
    if root.exists():
        shutil.rmtree(root)
    gen = {"ct": synth.generate_ct_slices, "small": synth.generate_small_files}[kind]
    t0 = time.perf_counter()
    result = gen(root, n)
    print(f"generated {kind} set: {n} files, {result.summary()['bytes'] / 1e6:.0f} MB in "
          f"{time.perf_counter() - t0:.1f}s -> {root}", file=sys.stderr)
    marker.write_text(json.dumps(result.summary()))
    return root


def list_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, sorted."""
    out: list[Path] = []
    for dirpath, _dirs, files in os.walk(root):
        out.extend(Path(dirpath) / f for f in files)
    return sorted(out)


def copy_tree(src: Path, dst: Path) -> int:
    """Copy every file (bytes and mtime) of ``src`` under ``dst``; returns the byte count."""
    total = 0
    for path in list_files(src):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        total += path.stat().st_size
    return total


def count_files(root: Path) -> int:
    return sum(len(files) for _d, _s, files in os.walk(root)) if root.exists() else 0


def rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in list_files(root)) if root.exists() else 0


# ---------------------------------------------------------------------------------------------
# archive configuration and Airflow
# ---------------------------------------------------------------------------------------------

def write_config(base: Path, *, batch_size: int = 2000, workers: int = 2, fsync: bool = True) -> Path:
    """An archive configuration whose locations all live under ``base`` (one filesystem)."""
    base.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {
        "landing": [str(base / "landing")],
        "online": str(base / "online"),
        "offline": str(base / "offline"),
        "quarantine": str(base / "quarantine"),
        "work": str(base / "work"),
        "reports": str(base / "reports"),
        "catalogue": {"duckdb": str(base / "catalogue" / "pacs.duckdb"),
                      "parquet": str(base / "catalogue" / "parquet")},
        "settle_seconds": 0,
        "ingest": {"batch_size": batch_size, "workers": workers, "fsync": fsync},
        "policy": {"online_retention_years": 3},
    }
    (base / "landing").mkdir(parents=True, exist_ok=True)
    path = base / "pacs.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def airflow_env(home: Path, config: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PACS_CONFIG": str(config),
        "PYTHONPATH": os.pathsep.join(p for p in (str(PLUGINS), env.get("PYTHONPATH", "")) if p),
    })
    return env


def prepare_airflow_home(home: Path, config: Path) -> dict[str, str]:
    """A fresh AIRFLOW_HOME with the metadata DB migrated and the catalogue pool set."""
    rmtree(home)
    home.mkdir(parents=True)
    env = airflow_env(home, config)
    airflow = bin_path("airflow")
    for cmd in ([airflow, "db", "migrate"], [airflow, "pools", "set", "pacs_catalogue", "1", "x"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[1:])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return env


def _parse_ts(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    text = str(value).replace("Z", "+00:00")
    out = dt.datetime.fromisoformat(text)
    return out if out.tzinfo else out.replace(tzinfo=dt.UTC)


def dag_run_times(home: Path, dag_id: str = "pacs_ingest") -> dict[str, Any]:
    """The last DAG run's state and recorded duration, and the span of each task id (seconds)."""
    con = sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT run_id, state, start_date, end_date FROM dag_run WHERE dag_id = ? "
                           "ORDER BY id DESC LIMIT 1", (dag_id,)).fetchall()
        if not rows:
            return {"state": None, "duration_s": None, "start_epoch": None, "tasks": {}}
        run_id, state, start, end = rows[0]
        tis = con.execute("SELECT task_id, map_index, state, start_date, end_date FROM task_instance "
                          "WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)).fetchall()
    finally:
        con.close()
    start_dt, end_dt = _parse_ts(start), _parse_ts(end)
    duration = (end_dt - start_dt).total_seconds() if start_dt and end_dt else None
    parsed = [(t, m, s, _parse_ts(a), _parse_ts(b)) for t, m, s, a, b in tis]
    return {"state": state, "duration_s": duration, "start_epoch": start_dt.timestamp() if start_dt else None,
            "tasks": task_spans(parsed, start_dt),
            "task_instances": [(t, m, a.timestamp() if a else None, b.timestamp() if b else None)
                               for t, m, _s, a, b in parsed]}


def running_at(times: dict[str, Any], epoch: float) -> str:
    """The task instance(s) of ``dag_run_times`` running at ``epoch`` (or the phase around them)."""
    hits = [f"{t}[{m}]" if m is not None and m >= 0 else t for t, m, a, b in times.get("task_instances", [])
            if a is not None and b is not None and a <= epoch <= b]
    if hits:
        return ", ".join(hits)
    start = times.get("start_epoch")
    if start is not None and epoch < start:
        return "before the DAG run (CLI start-up, parsing)"
    return "between tasks / after the run"


def task_spans(tis: Sequence[tuple[str, int, str, dt.datetime | None, dt.datetime | None]],
               run_start: dt.datetime | None) -> dict[str, dict[str, Any]]:
    """Per task id: count, states, first start and last end relative to the run start, summed busy time."""
    out: dict[str, dict[str, Any]] = {}
    for task_id, _map_index, state, start, end in tis:
        d = out.setdefault(task_id, {"n": 0, "states": {}, "first_start_s": None, "last_end_s": None,
                                     "busy_s": 0.0})
        d["n"] += 1
        d["states"][state] = d["states"].get(state, 0) + 1
        if start and end:
            d["busy_s"] += (end - start).total_seconds()
        if run_start and start:
            rel = (start - run_start).total_seconds()
            d["first_start_s"] = rel if d["first_start_s"] is None else min(d["first_start_s"], rel)
        if run_start and end:
            rel = (end - run_start).total_seconds()
            d["last_end_s"] = rel if d["last_end_s"] is None else max(d["last_end_s"], rel)
    for d in out.values():
        d["busy_s"] = round(d["busy_s"], 3)
        for k in ("first_start_s", "last_end_s"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
    return out


def catalogue_images(duckdb_path: Path) -> int | None:
    """``SELECT count(*) FROM image`` on a read-only connection (None if there is no catalogue)."""
    import duckdb

    if not duckdb_path.exists():
        return None
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        return int(con.execute("SELECT count(*) FROM image").fetchall()[0][0])
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# RSS sampling
# ---------------------------------------------------------------------------------------------

@dataclass
class RssPeak:
    """Peak RSS of a process tree: of any single process, and of the whole tree at one instant."""

    max_process: int = 0
    max_process_name: str = ""
    max_process_at: float = 0.0  # epoch seconds of the sample
    max_tree: int = 0
    max_tree_at: float = 0.0
    max_processes: int = 0
    samples: int = 0
    by_name: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"peak_process_rss_mb": round(self.max_process / 2**20, 1), "peak_process": self.max_process_name,
                "peak_tree_rss_mb": round(self.max_tree / 2**20, 1), "max_processes": self.max_processes,
                "samples": self.samples, "peak_process_at": self.max_process_at, "peak_tree_at": self.max_tree_at,
                "peak_by_command_mb": {k: round(v / 2**20, 1) for k, v in
                                       sorted(self.by_name.items(), key=lambda kv: -kv[1])}}


class RssSampler:
    """Samples the RSS of a process and all its descendants every ``every`` seconds in a thread."""

    def __init__(self, pid: int, every: float = SAMPLE_EVERY, *, by_name: bool = False) -> None:
        self.pid = pid
        self.every = every
        self.by_name = by_name  # also the peak of each command line (first 3 words)
        self.peak = RssPeak()
        self.timeline: list[tuple[float, int, int]] = []  # (epoch, RSS of the root process, of the tree)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> RssPeak:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.peak

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        tree = 0
        alive = 0
        root_rss = 0
        now = time.time()
        for p in procs:
            try:
                rss = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if p.pid == self.pid:
                root_rss = rss
            alive += 1
            tree += rss
            if rss > self.peak.max_process:
                self.peak.max_process = rss
                self.peak.max_process_at = now
                with contextlib.suppress(psutil.Error):
                    self.peak.max_process_name = " ".join(p.cmdline()[:4])[:120] or p.name()
            if self.by_name:
                with contextlib.suppress(psutil.Error):
                    name = " ".join(p.cmdline()[:3])[:100] or p.name()
                    self.peak.by_name[name] = max(self.peak.by_name.get(name, 0), rss)
        if tree > self.peak.max_tree:
            self.peak.max_tree, self.peak.max_tree_at = tree, now
        self.timeline.append((now, root_rss, tree))
        self.peak.max_processes = max(self.peak.max_processes, alive)
        self.peak.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)


@dataclass
class CommandResult:
    """A timed subprocess: return code, wall time, peak RSS and the tail of its output."""

    returncode: int
    wall_s: float
    rss: RssPeak
    stdout_tail: str = ""
    stderr_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_sampled(cmd: Sequence[str], *, env: dict[str, str], log_path: Path, cwd: Path = ROOT,
                timeout: float | None = None, by_name: bool = False) -> CommandResult:
    """Run ``cmd`` to completion, timing it and sampling its process tree's RSS every 50 ms."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        with RssSampler(proc.pid, by_name=by_name) as sampler:
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        wall = time.perf_counter() - t0
    text = log_path.read_text(errors="replace")
    return CommandResult(rc, wall, sampler.peak, stdout_tail=text[-3000:], extra={"timeline": sampler.timeline})


def rss_by_task(times: dict[str, Any], timeline: Sequence[tuple[float, int, int]]) -> dict[str, dict[str, float]]:
    """Per task id: the root process' RSS (MB) when its first instance started, its peak while any
    instance ran, and the tree's peak then; plus the same for the time before the DAG run."""
    spans = sorted((a, b, t) for t, _m, a, b in times.get("task_instances", []) if a is not None and b is not None)
    out: dict[str, dict[str, float]] = {}
    start = times.get("start_epoch")
    j = 0
    for epoch, root, tree in timeline:
        if start is not None and epoch < start:
            key = "(before the DAG run)"
        else:
            while j < len(spans) and spans[j][1] < epoch:
                j += 1
            hit = next((t for a, b, t in spans[j:j + 4] if a <= epoch <= b), None)
            if hit is None:
                continue
            key = hit
        d = out.setdefault(key, {"root_at_start_mb": round(root / 2**20, 1), "root_peak_mb": 0.0,
                                 "tree_peak_mb": 0.0})
        d["root_peak_mb"] = max(d["root_peak_mb"], round(root / 2**20, 1))
        d["tree_peak_mb"] = max(d["tree_peak_mb"], round(tree / 2**20, 1))
    return out


# ---------------------------------------------------------------------------------------------
# Orthanc 1.10 (the reference server)
# ---------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PG_BIN = Path("/usr/lib/postgresql/15/bin")
ORTHANC_PG_INDEX = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"


class Postgres:
    """A throw-away PostgreSQL 15 cluster (Debian's binaries) on a free port, run as ``postgres``,
    with one database for Orthanc's index; removed when stopped."""

    def __init__(self, base: Path) -> None:
        self.base, self.port = base, free_port()
        self.data, self.sockets = base / "data", base / "sockets"

    def _as_postgres(self, *cmd: str) -> None:
        runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        proc = subprocess.run([*runner, *cmd], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")

    def start(self) -> None:
        rmtree(self.base)
        self.sockets.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sockets, "postgres")
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.base / "pg.log"),
                          "-o", f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1", "start")
        self._as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          "orthanc")

    def stop(self) -> None:
        try:
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            rmtree(self.base)

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Orthanc:
    """Orthanc started from its Debian binary with a fresh storage folder and a fresh index:
    SQLite by default, or PostgreSQL (Debian's ``orthanc-postgresql`` index plugin, Orthanc's
    recommended production set-up) when ``postgres`` is given."""

    def __init__(self, base: Path, *, concurrent_jobs: int = 2, postgres: Postgres | None = None) -> None:
        self.base = base
        self.port = free_port()
        self.concurrent_jobs = concurrent_jobs
        self.postgres = postgres
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        if self.postgres is not None:
            return {**self._config(), "Plugins": [ORTHANC_PG_INDEX], "PostgreSQL": {
                "EnableIndex": True, "EnableStorage": False, "Host": "127.0.0.1", "Port": self.postgres.port,
                "Database": "orthanc", "Username": "postgres", "Password": "", "EnableSsl": False, "Lock": False}}
        return self._config()

    def _config(self) -> dict[str, Any]:
        return {
            "Name": "pacs-bench",
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "StorageDirectory": str(self.base / "storage"),
            "IndexDirectory": str(self.base / "index"),
            "TemporaryDirectory": str(self.base / "tmp"),
            "ConcurrentJobs": self.concurrent_jobs,
            "StorageCompression": False,
            "OverwriteInstances": False,
            "Plugins": [],
        }

    def start(self, timeout: float = 60.0) -> None:
        rmtree(self.base)
        for sub in ("storage", "index", "tmp"):
            (self.base / sub).mkdir(parents=True)
        cfg = self.base / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        log = open(self.base / "orthanc.log", "wb")  # noqa: SIM115 - closed by the process' lifetime
        self.proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.base / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("Orthanc did not answer /system")

    def get(self, path: str) -> Any:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise OSError(f"GET {path}: HTTP {resp.status}")
            return json.loads(body)
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __enter__(self) -> Orthanc:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def post_all(port: int, files: Sequence[Path], clients: int = 2) -> dict[str, Any]:
    """POST every file's bytes to Orthanc's ``/instances`` from ``clients`` keep-alive connections.

    Files are dealt round-robin; the time runs from the first POST to the last response. A
    keep-alive connection the server closes (as Orthanc does under load) is opened again and the
    file posted again, up to 3 times per file; the reconnects are counted in the result.
    """
    import http.client

    statuses: dict[int, int] = {}
    errors: list[str] = []
    reconnects = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def post(conn: Any, data: bytes) -> int:
        conn.request("POST", "/instances", body=data,
                     headers={"Content-Type": "application/dicom", "Connection": "keep-alive"})
        resp = conn.getresponse()
        resp.read()
        return resp.status

    def client(share: Sequence[Path]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        local: dict[int, int] = {}
        start.wait()
        try:
            for path in share:
                data = path.read_bytes()
                for attempt in range(3):
                    try:
                        status = post(conn, data)
                        break
                    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                        if attempt == 2:
                            raise
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                        with lock:
                            reconnects[0] += 1
                local[status] = local.get(status, 0) + 1
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
            with lock:
                for k, v in local.items():
                    statuses[k] = statuses.get(k, 0) + v

    threads = [threading.Thread(target=client, args=(files[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed, "statuses": statuses, "errors": errors, "reconnects": reconnects[0]}


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------

def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def machine_info() -> dict[str, Any]:
    import platform

    import duckdb
    import pydicom

    try:
        from importlib.metadata import version

        airflow_version = version("apache-airflow")
    except Exception:  # noqa: BLE001
        airflow_version = None
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "mem_gb": round(psutil.virtual_memory().total / 2**30, 1), "duckdb": duckdb.__version__,
            "pydicom": pydicom.__version__, "airflow": airflow_version,
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def code_version() -> dict[str, Any]:
    """Which code was measured: git HEAD, whether the measured folders differ from it, and a digest
    of their content (other engineers edit the package while benchmarks run; compare the digest
    taken at the start and at the end of a run)."""
    import hashlib

    h = hashlib.sha256()
    for folder in ("plugins/pacs", "include/sql", "dags"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".sql"):
                h.update(str(path.relative_to(ROOT)).encode())
                h.update(path.read_bytes())

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", "plugins/pacs", "include/sql", "dags")
    return {"git_head": git("rev-parse", "--short", "HEAD") or None, "measured_code_dirty": bool(dirty),
            "code_digest": h.hexdigest()[:16]}


def provenance(start: dict[str, Any]) -> dict[str, Any]:
    """``start`` (a :func:`code_version` taken before measuring) plus whether the code changed since."""
    end = code_version()
    return {**start, "code_changed_during_run": end["code_digest"] != start["code_digest"],
            "code_digest_at_end": end["code_digest"]}


def final_json(payload: dict[str, Any]) -> None:
    """The machine-readable result: one JSON line, last line of stdout."""
    print(json.dumps(payload, default=str, sort_keys=True))


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None
