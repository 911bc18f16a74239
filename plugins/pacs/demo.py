"""``make demo``: a small synthetic hospital through every DAG of the product, with outcomes.

1. Prepares the demo archive (the folders of ``$PACS_CONFIG``, by default ``var/data``) with
   :func:`prepare`, which deletes only what an earlier ``make demo`` made (the rule below).
2. Generates a few years of a small hospital into landing with :mod:`pacs.synth` (CT, MR, CR,
   DX, US, MG with realistic acquisition parameters, a radiation dose SR per CT study; growth and
   weekly seasonality; identical resends; every bad-input class), and
   copies in every real DICOM file that pydicom ships.
3. Runs ``airflow dags test pacs_ingest`` on the project-local ``AIRFLOW_HOME`` (SQLite),
   showing progress as tasks finish (Airflow's own log of each DAG goes to ``var/demo-<dag>.log``),
   and prints what the catalogue holds.
4. Walks the rest at :data:`DEMO_DAY`: ``pacs_lifecycle`` (studies past the online retention
   go offline, one tar per series: ``config/demo-lifecycle.yaml`` through ``$PACS_POLICY``),
   ``pacs_recall`` of one offline study, ``pacs_fixity`` and ``pacs_capacity_report`` with tier
   capacities sized to the demo archive (``$PACS_ONLINE_BYTES``/``$PACS_OFFLINE_BYTES``: about
   70% and 60% full), printing each step's outcome, then where the report, its figures, the
   catalogue and the snapshot are.

The demo cannot destroy an archive it did not make. When it makes its archive it writes a
marker, ``.pacs-demo`` (JSON: who made it, when, from which configuration, and the locations it
made, relative to the marker's folder), at the top of what it made: the nearest common folder
of every location (``var/data`` for ``config/pacs.yaml``). The locations are every landing,
online, offline, quarantine, work, reports, the catalogue's parquet folder and DuckDB file (with
its ``.wal``), and ``<landing>-outside`` where the demo's hostile link points. Before deleting
anything, :func:`prepare` checks, on resolved paths (symlinks followed), that:

- every location is local (any ``s3://`` or other remote location: refuse);
- every location lies strictly inside one folder that is strictly inside the project's ``var/``
  (the marked folder, if there is a marker at or above their common folder; a marker below it
  means a location lies outside the marked folder: refuse);
- with a marker: every location that holds anything is one the marker lists (or lies inside
  one); without a marker: no location holds anything (a fresh clone; nothing is deleted) —
  otherwise refuse, e.g. ``make airflow`` ingested real data into the default ``var/data``.

A refusal is one line on stderr saying what and how to fix, exit status 2, and nothing deleted.
When every check passes, only the locations the marker lists are deleted (nothing else in the
marked folder, nothing outside it), a fresh marker is written and the landing folders created.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydicom.data import get_testdata_files

from pacs import store, synth
from pacs.catalogue import sql
from pacs.catalogue.checks import print_summary, summary
from pacs.config import DEFAULT_CONFIG, Config, ConfigError, load_config
from pacs.errors import DemoRefusal

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var"
MARKER = ".pacs-demo"
_DUCKDB = "catalogue.duckdb"
_OUTSIDE = "landing-outside"
_END = re.compile(r"\[DAG TEST\] end task task_id=(\w+) map_index=(-?\d+)")


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _is_default(cfg: Config, project: Path) -> bool:
    return os.path.realpath(cfg.path) == os.path.realpath(project / DEFAULT_CONFIG)


def _hint(cfg: Config, project: Path, *, foreign: bool) -> str:
    """How to fix a refusal: ``foreign`` when the archive holds what the demo did not make."""
    if not _is_default(cfg, project):
        return "Unset PACS_CONFIG (the demo uses config/pacs.yaml under var/), or point it at a demo configuration."
    if foreign:
        return ("Move the archive aside (or remove it yourself if it is only an earlier demo's), "
                "then run make demo again.")
    return ("Keep every location of config/pacs.yaml local and in one folder under var/ (as shipped), "
            "or point PACS_CONFIG at a demo configuration.")


def _locations(cfg: Config, hint: str) -> dict[str, str]:
    """Every place the demo writes, name → resolved local path; refuses a remote location."""
    out: dict[str, str] = {}
    for loc in cfg.all_roots():
        folder = store.local_folder(loc)
        if folder is None:
            raise DemoRefusal(f"refusing to reset the archive of {cfg.path}: {loc.name} is {loc.url}, not a local "
                              f"folder (the demo only resets folders it made under var/). {hint}")
        out[loc.name] = os.path.realpath(folder)
    out[_DUCKDB] = os.path.realpath(cfg.duckdb)
    out[_OUTSIDE] = os.path.realpath(cfg.landing[0].root + "-outside")
    return out


def _inside(path: str, folder: str) -> bool:
    """``path`` lies strictly inside ``folder`` (both resolved)."""
    return path != folder and os.path.commonpath([path, folder]) == folder


def _has_content(path: str, *, duckdb: bool = False) -> bool:
    if duckdb and os.path.lexists(path + ".wal"):
        return True
    if not os.path.lexists(path):
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        with os.scandir(path) as it:
            return any(True for _ in it)
    return True


def _remove(path: str, *, duckdb: bool = False) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    if duckdb and os.path.lexists(path + ".wal"):
        os.unlink(path + ".wal")


def _find_marked(home: str, var: str, locs: dict[str, str]) -> str | None:
    """The folder holding the marker at or above ``home`` (inside ``var``), if any.

    Refuses when a marker sits below ``home``: a marked folder some location lies outside of.
    """
    d = home
    while _inside(d, var):
        if os.path.isfile(os.path.join(d, MARKER)):
            return d
        d = os.path.dirname(d)
    for path in locs.values():
        d = os.path.dirname(path)
        while _inside(d, home):
            if os.path.isfile(os.path.join(d, MARKER)):
                name, away = next((n, p) for n, p in locs.items() if not _inside(p, d))
                raise DemoRefusal(f"refusing to reset {d}: {name} ({away}) lies outside the demo's folder {d} "
                                  f"(the one holding its {MARKER} marker); keep every location of the demo "
                                  "configuration inside it.")
            d = os.path.dirname(d)
    return None


def _read_marker(marked: str, hint: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(marked, MARKER).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("roots"), list):
            raise ValueError("it lists no roots")
    except (OSError, ValueError) as exc:
        raise DemoRefusal(f"refusing to reset {marked}: its {MARKER} marker is unreadable ({exc}). {hint}") from exc
    return data


def _made(marker: dict[str, Any]) -> list[str]:
    """What the marker says the demo made, relative to the marked folder."""
    made = [str(r) for r in marker["roots"]]
    if isinstance(marker.get("catalogue"), str):
        made.append(marker["catalogue"])
    return made


def _covered(rel: str, made: Iterable[str]) -> bool:
    return any(rel == m or rel.startswith(m.rstrip("/") + "/") for m in made)


def _shown(path: str, var: str) -> str:
    """``path`` as the user knows it: relative to the project (``var/data``) when under it."""
    project = os.path.dirname(var)
    return os.path.relpath(path, project) if _inside(path, project) else path


def prepare(cfg: Config, *, var: Path = VAR, now: dt.datetime | None = None) -> Path:
    """Reset the demo archive of ``cfg`` if the demo made it (the rule in the module docstring).

    Checks everything before deleting anything and raises :class:`DemoRefusal` (nothing
    deleted) when the rule does not hold. ``var`` is the project's ``var/`` folder. Returns the
    marked folder, holding a fresh marker and empty landing folders.
    """
    var_real = os.path.realpath(var)
    project = Path(var_real).parent
    hint = _hint(cfg, project, foreign=False)
    foreign = _hint(cfg, project, foreign=True)
    locs = _locations(cfg, hint)
    home = os.path.commonpath(list(locs.values()))
    marked = _find_marked(home, var_real, locs)
    top = marked or home
    full = {name: _has_content(path, duckdb=name == _DUCKDB) for name, path in locs.items()}
    busy = [name for name in locs if full[name]]
    if not marked and busy:
        who = f"{_shown(top, var_real)} holds" if _is_default(cfg, project) else "PACS_CONFIG names"
        raise DemoRefusal(f"refusing to reset {top}: {who} an archive the demo did not create (no {MARKER} marker; "
                          f"not empty: {', '.join(busy)}). {foreign}")
    if not _inside(top, var_real):
        away = next(((n, p) for n, p in locs.items() if not _inside(p, var_real)), None)
        where = (f"{away[0]} ({away[1]}) is not under the project's var/ ({var_real})" if away else
                 f"its locations share no folder under the project's var/ ({var_real}) but var/ itself")
        raise DemoRefusal(f"refusing to reset {top if top != os.sep else cfg.path}: {where}. {hint}")
    for name, path in locs.items():
        if not _inside(path, top):
            raise DemoRefusal(f"refusing to reset {top}: {name} is {path}, the demo's folder itself; give every "
                              f"location its own folder inside it. {hint}")
    kept: list[str] = []
    if marked:
        marker = _read_marker(marked, foreign)
        made = _made(marker)
        for name in busy:
            if not _covered(os.path.relpath(locs[name], marked), made):
                raise DemoRefusal(f"refusing to reset {marked}: {name} ({locs[name]}) holds files the demo did not "
                                  f"make (its {MARKER} marker does not list it). {foreign}")
        _step(f"resetting the demo archive under {_shown(top, var_real)} "
              f"(made by {marker.get('made_by', 'make demo')} on {marker.get('created', 'an unknown date')})")
        for name in busy:
            _remove(locs[name], duckdb=name == _DUCKDB)
        # what an earlier demo made that this configuration no longer names stays the demo's
        kept = [r for r in map(str, marker["roots"]) if os.path.lexists(os.path.join(top, r))]
    else:
        _step(f"creating the demo archive under {_shown(top, var_real)}")
    os.makedirs(top, exist_ok=True)
    stamp = (now or dt.datetime.now()).astimezone().isoformat(sep=" ", timespec="minutes")
    roots = {os.path.relpath(p, top) for n, p in locs.items() if n != _DUCKDB}
    record = {"made_by": "make demo", "created": stamp, "config": str(cfg.path),
              "roots": sorted(roots.union(kept)), "catalogue": os.path.relpath(locs[_DUCKDB], top)}
    store.put(store.Location("demo", top), os.path.join(top, MARKER), (json.dumps(record, indent=2) + "\n").encode())
    for loc in cfg.landing:
        os.makedirs(loc.root, exist_ok=True)
    return Path(top)


def generate(cfg: Config, *, patients: int = 400) -> int:
    landing = Path(cfg.landing[0].root)
    _step(f"generating a small hospital ({patients} patients, 2022-2026) into {landing}")
    t0 = time.monotonic()
    result = synth.generate_archive(landing, seed=2026, patients=patients,
                                    start=dt.date(2022, 1, 1), end=dt.date(2026, 10, 31),
                                    count_scale=0.025, size_scale=0.25, bad=True, duplicates=20,
                                    dose_reports=True)
    counts = result.counts()
    good = result.summary()
    print(f"    {good['images']:,} images in {good['studies']} studies ({good['bytes'] / 1e6:,.0f} MB; "
          f"{good['by_modality'].get('SR', 0)} of them CT radiation dose reports), "
          f"{counts.get('duplicate', 0)} identical resends, "
          f"{sum(v for k, v in counts.items() if k not in ('good', 'duplicate'))} bad files "
          f"[{time.monotonic() - t0:.1f}s]")
    real = landing / "pydicom-samples"
    n = 0
    for p in sorted(get_testdata_files()):
        if os.path.isfile(p):
            dst = real / f"{n:03d}-{os.path.basename(p)}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)
            n += 1
    print(f"    + {n} real files that pydicom ships (many vendors and transfer syntaxes)")
    return len(result.files) + n


def run_dag(dag_id: str, *, logical_date: str | None = None, conf: dict[str, Any] | None = None,
            batches: int = 0, logs: Path = VAR) -> int:
    """``airflow dags test`` one DAG, with a line per finished task (a count, or a bar when the
    number of mapped tasks is known, for mapped ones); Airflow's own log goes to ``logs``."""
    airflow = Path(sys.executable).with_name("airflow")
    log_path = logs / f"demo-{dag_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(airflow), "dags", "test", dag_id, *([logical_date] if logical_date else [])]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    t0 = time.monotonic()
    mapped: dict[str, int] = {}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            m = _END.search(line)
            if not m:
                continue
            task, index = m.group(1), int(m.group(2))
            elapsed = time.monotonic() - t0
            if index >= 0:
                if mapped and task not in mapped:
                    print()
                    mapped.clear()
                mapped[task] = mapped.get(task, 0) + 1
                done = mapped[task]
                shown = (f"[{'#' * int(30 * done / max(batches, done)):<30}] {done}/{max(batches, done)}"
                         if batches else f"{done} done")
                print(f"\r    {task} {shown}  {elapsed:5.1f}s", end="", flush=True)
                continue
            if mapped:
                print()
                mapped.clear()
            print(f"    {task} done  {elapsed:5.1f}s", flush=True)
        rc = proc.wait()
    if mapped:
        print()
    if rc != 0:
        print(f"\nairflow dags test {dag_id} failed (exit {rc}); see {log_path}", file=sys.stderr)
    return rc


def _one(cfg: Config, query: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
    from pacs.catalogue import opened

    with opened(cfg.duckdb, read_only=True) as con:
        row = con.execute(query, params or {}).fetchone()
    return tuple(row) if row else ()


def _tiers(cfg: Config) -> str:
    online, offline, studies_off, studies = _one(cfg, sql.load("demo_tiers"))
    return (f"{studies_off} of {studies} studies offline; online tier {online / 1e6:,.0f} MB, "
            f"offline tier {offline / 1e6:,.0f} MB")


def _size_tiers(cfg: Config) -> None:
    """Tier capacities that fit the demo archive (the report's utilisation then reads 50-90%)."""
    online, offline, _, _ = _one(cfg, sql.load("demo_tiers"))
    os.environ["PACS_ONLINE_BYTES"] = f"{max(int(online / 0.7), 10**6)} B"
    os.environ["PACS_OFFLINE_BYTES"] = f"{max(int(offline / 0.6), 10**6)} B"


def walk(cfg: Config, *, day: dt.date, logs: Path = VAR) -> int:
    """Lifecycle at ``day`` (packing on), a recall, fixity and the capacity report, with outcomes."""
    when = day.isoformat()
    os.environ["PACS_POLICY"] = str(ROOT / "config" / "demo-lifecycle.yaml")
    _step(f"pacs_lifecycle at {when}: studies past the online retention go offline, one tar per series")
    if rc := run_dag("pacs_lifecycle", logical_date=when, logs=logs):
        return rc
    print(f"    {_tiers(cfg)}")
    found = _one(cfg, sql.load("demo_recall_pick"))
    if found:
        uid, study_date, images = found
        _step(f"pacs_recall of one offline study (dated {study_date}, {images} image{'s' * (images != 1)}): "
              "back online, pinned")
        if rc := run_dag("pacs_recall", logical_date=when, conf={"study_uids": [uid]}, logs=logs):
            return rc
        state, pinned = _one(cfg, "SELECT tier_state, pinned_until FROM study WHERE study_instance_uid = $u",
                             {"u": uid})
        print(f"    the study is {state}, pinned online until {pinned}")
    _step("pacs_fixity: every online file and offline object checked against its sha256")
    if rc := run_dag("pacs_fixity", logical_date=when, logs=logs):
        return rc
    checked, objects, findings = _one(cfg, sql.load("demo_fixity"))
    print(f"    {checked:,} online files and {objects:,} offline objects checked, {findings} finding(s)")
    _size_tiers(cfg)
    _step("pacs_capacity_report: volume, growth, tier utilisation and forecast")
    return run_dag("pacs_capacity_report", logical_date=when, logs=logs)


def _where(cfg: Config, logs: Path) -> None:
    _step("where everything is")
    report = Path(cfg.reports.root) / "capacity" / "latest"
    print(f"    capacity report   {report / 'report.html'}")
    print(f"    its figures       {report / 'summary.json'}")
    print(f"    DuckDB catalogue  {cfg.duckdb}")
    print(f"    Parquet snapshot  {cfg.parquet.root}  (plain DuckDB: .read {cfg.parquet.root}/_snapshot.sql)")
    print(f"    Airflow's logs    {logs}/demo-*.log")
    print("    next: make airflow (the UI on http://localhost:8080; the DAGs start paused), "
          "or .venv/bin/pacs query \"SELECT ...\"")


DEMO_DAY = dt.date(2026, 11, 1)
"""The demo's date for lifecycle, recall, fixity and the report (its archive runs to 2026-10-31)."""


def main(*, var: Path = VAR, patients: int = 400) -> int:
    try:
        cfg = load_config()
        _step(f"configuration {cfg.path}")
        prepare(cfg, var=var)
    except (ConfigError, DemoRefusal) as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 2
    total = generate(cfg, patients=patients)
    batches = -(-total // cfg.ingest.batch_size)
    _step(f"airflow dags test pacs_ingest  ({total:,} files in {batches} batches)")
    if rc := run_dag("pacs_ingest", batches=batches, logs=var):
        return rc
    _step("what the catalogue holds")
    print_summary(summary(cfg))
    if rc := walk(cfg, day=DEMO_DAY, logs=var):
        return rc
    _where(cfg, var)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
