"""``make demo``: a small synthetic hospital through ``pacs_ingest``, then a summary.

1. Prepares the demo archive (the folders of ``$PACS_CONFIG``, by default ``var/data``) with
   :func:`prepare`, which deletes only what an earlier ``make demo`` made (the rule below).
2. Generates a few years of a small hospital into landing with :mod:`pacs.synth` (CT, MR, CR,
   DX, US, MG; growth and weekly seasonality; identical resends; every bad-input class), and
   copies in every real DICOM file that pydicom ships.
3. Runs ``airflow dags test pacs_ingest`` on the project-local ``AIRFLOW_HOME`` (SQLite),
   showing progress as tasks finish (Airflow's own log goes to ``var/demo-airflow.log``).
4. Prints what the catalogue holds and a ready-to-paste query.

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


def generate(cfg: Config, *, patients: int = 80) -> int:
    landing = Path(cfg.landing[0].root)
    _step(f"generating a small hospital ({patients} patients, 2022-2026) into {landing}")
    t0 = time.monotonic()
    result = synth.generate_archive(landing, seed=2026, patients=patients,
                                    start=dt.date(2022, 1, 1), end=dt.date(2026, 10, 31),
                                    count_scale=0.12, size_scale=0.25, bad=True, duplicates=20)
    counts = result.counts()
    good = result.summary()
    print(f"    {good['images']:,} images in {good['studies']} studies ({good['bytes'] / 1e6:,.0f} MB), "
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


def run_dag(total_files: int, batch_size: int) -> int:
    airflow = Path(sys.executable).with_name("airflow")
    log_path = VAR / "demo-airflow.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    batches = -(-total_files // batch_size)
    _step(f"airflow dags test pacs_ingest  ({total_files:,} files in {batches} batches; log: {log_path})")
    t0 = time.monotonic()
    done_process = 0
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(airflow), "dags", "test", "pacs_ingest"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            m = _END.search(line)
            if not m:
                continue
            task = m.group(1)
            elapsed = time.monotonic() - t0
            if task == "process":
                done_process += 1
                bar = "#" * int(30 * done_process / max(batches, 1))
                print(f"\r    process [{bar:<30}] {done_process}/{batches} batches  {elapsed:5.1f}s",
                      end="", flush=True)
            else:
                if done_process and task == "merge":
                    print()
                print(f"    {task} done  {elapsed:5.1f}s", flush=True)
        rc = proc.wait()
    if rc != 0:
        print(f"\nairflow dags test failed (exit {rc}); see {log_path}", file=sys.stderr)
    return rc


def main(*, var: Path = VAR) -> int:
    try:
        cfg = load_config()
        _step(f"configuration {cfg.path}")
        prepare(cfg, var=var)
    except (ConfigError, DemoRefusal) as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 2
    total = generate(cfg)
    rc = run_dag(total, cfg.ingest.batch_size)
    if rc != 0:
        return rc
    _step("what the catalogue holds")
    print_summary(summary(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
