"""``make demo`` cannot destroy: its reset deletes only what an earlier demo made and marked.

Every test works in a throw-away project (``tmp_path/project`` with its own ``var/``), never in
the real project's ``var/``; the one subprocess run names an archive the demo must refuse.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pacs import demo
from pacs.config import Config, load_config

# The shipped config/pacs.yaml's layout: everything under ../var/data.
SHIPPED: dict[str, Any] = {
    "landing": ["../var/data/landing"],
    "online": "../var/data/online",
    "offline": "../var/data/offline",
    "quarantine": "../var/data/quarantine",
    "work": "../var/data/work",
    "reports": "../var/data/reports",
    "catalogue": {"duckdb": "../var/data/catalogue/pacs.duckdb", "parquet": "../var/data/catalogue/parquet"},
}
WHEN = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)


def _config(path: Path, **changes: Any) -> Config:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**SHIPPED, **changes}))
    return load_config(path)


def _project(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away project: its default configuration and its var/ folder."""
    project = tmp_path / "project"
    return project / "config" / "pacs.yaml", project / "var"


def _fill(*folders: Path) -> None:
    for i, folder in enumerate(folders):
        (folder / "2024" / "01").mkdir(parents=True, exist_ok=True)
        (folder / "2024" / "01" / f"study-{i}.dcm").write_bytes(os.urandom(64))
        (folder / "README").write_text(f"precious {i}\n")


def _refused(cfg: Any, var: Path, root: Path, match: str | None = None) -> str:
    """Assert that preparing ``cfg`` is refused and changes nothing under ``root``; the reason."""
    before = _listing(root)
    with pytest.raises(demo.DemoRefusal, match=match) as err:
        demo.prepare(cfg, var=var)
    assert _listing(root) == before
    return str(err.value)


def _listing(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by sha256, links by target, folders as such."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _real_archive(tmp_path: Path) -> Path:
    """A configuration naming an archive outside any var/, with files in landing, online, offline."""
    archive = tmp_path / "data" / "archive"
    cfg_path = tmp_path / "etc" / "pacs.yaml"
    _config(cfg_path, landing=[str(archive / "landing")], online=str(archive / "online"),
            offline=str(archive / "offline"), quarantine=str(archive / "quarantine"), work=str(archive / "work"),
            reports=str(archive / "reports"),
            catalogue={"duckdb": str(archive / "catalogue/pacs.duckdb"), "parquet": str(archive / "catalogue/pq")})
    _fill(archive / "landing", archive / "online", archive / "offline")
    (archive / "catalogue").mkdir()
    (archive / "catalogue" / "pacs.duckdb").write_bytes(b"catalogue")
    return cfg_path


def test_a_pacs_config_naming_a_real_archive_is_refused_in_one_line_and_nothing_is_deleted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = _real_archive(tmp_path)
    _, var = _project(tmp_path)
    before = _listing(tmp_path)
    monkeypatch.setenv("PACS_CONFIG", str(cfg_path))
    assert demo.main(var=var) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"make demo: refusing to reset {tmp_path / 'data' / 'archive'}: PACS_CONFIG names an "
                          "archive the demo did not create (no .pacs-demo marker")
    assert "Unset PACS_CONFIG (the demo uses config/pacs.yaml under var/)" in err
    assert _listing(tmp_path) == before


def test_python_m_pacs_demo_exits_2_on_a_real_archive_and_deletes_nothing(tmp_path: Path) -> None:
    cfg_path = _real_archive(tmp_path)
    before = _listing(tmp_path)
    root = Path(demo.__file__).resolve().parents[2]
    env = {**os.environ, "PACS_CONFIG": str(cfg_path), "PYTHONPATH": str(root / "plugins")}
    proc = subprocess.run([sys.executable, "-m", "pacs.demo"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("make demo: refusing to reset ")
    assert "no .pacs-demo marker" in proc.stderr and proc.stderr.count("\n") == 1
    assert _listing(tmp_path) == before


def test_an_s3_location_is_refused_before_anything_is_deleted(tmp_path: Path) -> None:
    cfg_path, var = _project(tmp_path)
    cfg = _config(cfg_path, offline="s3://pacs-offline/archive")
    _fill(var / "data" / "online", var / "data" / "landing")
    _refused(cfg, var, tmp_path, r"offline is s3://pacs-offline/archive, not a local folder")


def test_a_fresh_clone_is_allowed_and_the_demo_marks_what_it_makes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path, var = _project(tmp_path)
    cfg = _config(cfg_path)
    assert demo.prepare(cfg, var=var, now=WHEN) == var / "data"
    assert "creating the demo archive under var/data" in capsys.readouterr().out
    marker = json.loads((var / "data" / ".pacs-demo").read_text())
    assert marker["made_by"] == "make demo" and marker["created"].startswith("2026-01-02")
    assert marker["config"] == str(cfg_path)
    assert marker["catalogue"] == "catalogue/pacs.duckdb"
    assert set(marker["roots"]) == {"landing", "landing-outside", "online", "offline", "quarantine", "work",
                                    "reports", "catalogue/parquet"}
    assert (var / "data" / "landing").is_dir() and not any((var / "data" / "landing").iterdir())


def test_a_second_demo_resets_only_the_locations_its_marker_lists(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path, var = _project(tmp_path)
    cfg = _config(cfg_path)
    demo.prepare(cfg, var=var, now=WHEN)
    data = var / "data"
    made = [data / n for n in ("landing", "landing-outside", "online", "offline", "quarantine", "work", "reports",
                               "catalogue/parquet")]
    _fill(*made)
    (data / "catalogue" / "pacs.duckdb").write_bytes(b"db")
    (data / "catalogue" / "pacs.duckdb.wal").write_bytes(b"wal")
    (data / "notes.txt").write_text("mine, not the demo's\n")
    (var / "keep.txt").write_text("a sibling of the demo folder\n")
    (tmp_path / "project" / "sibling.txt").write_text("outside var\n")
    survivors = {p: p.read_bytes() for p in (data / "notes.txt", var / "keep.txt", tmp_path / "project/sibling.txt")}
    capsys.readouterr()
    demo.prepare(cfg, var=var)
    out = capsys.readouterr().out
    assert "resetting the demo archive under var/data (made by make demo on 2026-01-02" in out
    for folder in made:
        assert not folder.exists() or not any(folder.iterdir()), folder
    assert not (data / "catalogue" / "pacs.duckdb").exists() and not (data / "catalogue" / "pacs.duckdb.wal").exists()
    assert (data / "landing").is_dir()
    assert {p: p.read_bytes() for p in survivors} == survivors
    assert (data / ".pacs-demo").is_file()


@pytest.mark.parametrize("where", ["outside var", "elsewhere in var"])
def test_a_marked_folder_whose_configuration_points_a_location_outside_it_is_refused(
        tmp_path: Path, where: str) -> None:
    cfg_path, var = _project(tmp_path)
    demo.prepare(_config(cfg_path), var=var)
    _fill(var / "data" / "landing", var / "data" / "offline")
    away = tmp_path / "hospital" / "online" if where == "outside var" else var / "other" / "online"
    _fill(away)
    cfg = _config(cfg_path, online=str(away))
    _refused(cfg, var, tmp_path, r"online \(.*\) lies outside the demo's folder")


def test_a_marked_location_replaced_by_a_link_to_a_real_archive_is_refused(tmp_path: Path) -> None:
    cfg_path, var = _project(tmp_path)
    cfg = _config(cfg_path)
    demo.prepare(cfg, var=var)
    real = tmp_path / "hospital" / "online"
    _fill(real)
    (var / "data" / "online").symlink_to(real)
    _refused(cfg, var, tmp_path, r"refusing to reset")


def test_an_unmarked_archive_in_the_default_var_data_is_refused(tmp_path: Path) -> None:
    cfg_path, var = _project(tmp_path)
    cfg = _config(cfg_path)
    _fill(var / "data" / "online", var / "data" / "work")
    (var / "data" / "catalogue").mkdir()
    (var / "data" / "catalogue" / "pacs.duckdb").write_bytes(b"real catalogue")
    message = _refused(cfg, var, tmp_path)
    assert "var/data holds an archive the demo did not create (no .pacs-demo marker" in message
    assert "online" in message and "catalogue.duckdb" in message and "Move the archive aside" in message
    assert "\n" not in message


def test_an_outside_folder_with_files_and_no_marker_is_refused(tmp_path: Path) -> None:
    cfg_path, var = _project(tmp_path)
    cfg = _config(cfg_path)
    _fill(var / "data" / "landing-outside")
    (var / "data" / "online").mkdir()  # an empty folder holds nothing to lose
    _refused(cfg, var, tmp_path, r"not empty: landing-outside\)")


def test_a_marked_folder_with_a_location_its_marker_does_not_list_is_refused(tmp_path: Path) -> None:
    cfg_path, var = _project(tmp_path)
    demo.prepare(_config(cfg_path), var=var)
    _fill(var / "data" / "online", var / "data" / "imports")
    cfg = _config(cfg_path, landing=["../var/data/landing", "../var/data/imports"])
    _refused(cfg, var, tmp_path, r"landing\[1\] \(.*imports\) holds files the demo did not make")


def test_an_unreadable_marker_is_refused(tmp_path: Path) -> None:
    cfg_path, var = _project(tmp_path)
    cfg = _config(cfg_path)
    demo.prepare(cfg, var=var)
    _fill(var / "data" / "online")
    (var / "data" / ".pacs-demo").write_text("{not json")
    _refused(cfg, var, tmp_path, r"marker is unreadable")


def test_locations_spread_over_var_itself_are_refused(tmp_path: Path) -> None:
    cfg_path, var = _project(tmp_path)
    cfg = _config(cfg_path, online="../var/online")
    with pytest.raises(demo.DemoRefusal, match=r"share no folder under the project's var/"):
        demo.prepare(cfg, var=var)
    assert not var.exists() or not (var / "data" / ".pacs-demo").exists()
