"""The ``pacs`` command, run as a user runs it (a real process of ``python -m pacs.cli``): every
command takes ``--config`` before its name; a user's mistake is one line saying what, where and
how to fix, exit status 2, with the traceback only under ``-v``; a closed pipe is silent;
``pacs header`` says what intake would do with a file; missing landing locations and files
still settling are said, not hidden behind ``"files": 0``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import ROOT, _free_port, write_config
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacs import synth
from pacs.config import load_config
from pacs.dicom.validation import REQUIRED
from pacs.intake import run_ingest

DAY = "2026-06-01"


def _pacs(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "pacs.cli", *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env={**base, **(env or {})})


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An archive with one ingested study (6 small MR images in 2 series), loaded."""
    cfg = load_config(write_config(tmp_path_factory.mktemp("cli") / "archive"))
    synth.generate_small_files(cfg.landing[0].root, 6, seed=3, per_series=3)
    assert run_ingest(cfg)["catalogued"] == 6
    return cfg


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """An empty working folder: no config/pacs.yaml to fall back on."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


def _online_file(cfg: Any) -> Path:
    return sorted(Path(cfg.online.root).rglob("*.dcm"))[0]


def _study_uid(cfg: Any) -> str:
    return pydicom.dcmread(_online_file(cfg), stop_before_pixels=True).StudyInstanceUID


# --- --config before any command ----------------------------------------------------------------

def _command_args(name: str, cfg: Any, tmp: Path) -> list[str]:
    return {
        "ingest": ["ingest", "--no-snapshot"],
        "summary": ["summary"],
        "check": ["check"],
        "header": ["header", str(_online_file(cfg))],
        "resubmit": ["resubmit", "--reason", "missing_tag"],
        "query": ["query", "SELECT count(*) AS images FROM image"],
        "lifecycle": ["lifecycle", "--date", DAY, "--dry-run"],
        "recall": ["recall", "--study", _study_uid(cfg), "--date", DAY],
        "fixity": ["fixity", "--date", DAY],
        "report": ["report", "--date", DAY, "--out-location", str(tmp / "report")],
        "synth": ["synth", "small", "--out", str(tmp / "synth"), "--n", "1"],
    }[name]


@pytest.mark.parametrize("name", ["ingest", "summary", "check", "header", "resubmit", "query", "lifecycle",
                                  "recall", "fixity", "report", "synth"])
def test_every_command_takes_the_configuration_before_its_name(ingested: Any, name: str, cwd: Path) -> None:
    out = _pacs("--config", str(ingested.path), *_command_args(name, ingested, cwd), cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert "unrecognized arguments" not in out.stderr and "Traceback" not in out.stderr


def test_the_options_also_follow_the_command_and_v_shows_progress(ingested: Any, cwd: Path) -> None:
    after = _pacs("query", "--config", str(ingested.path), "--format", "csv", "SELECT count(*) AS n FROM image",
                  cwd=cwd)
    assert after.returncode == 0 and after.stdout.split() == ['"n"', "6"], after.stderr
    verbose = _pacs("-v", "--config", str(ingested.path), "ingest", "--no-snapshot", cwd=cwd)
    assert verbose.returncode == 0 and "INFO pacs.intake.landing: sweep:" in verbose.stderr


def test_help_is_plain_and_each_command_has_its_own(cwd: Path) -> None:
    top = _pacs("--help", cwd=cwd)
    assert top.returncode == 0 and "``" not in top.stdout and ":mod:" not in top.stdout
    assert all(f"  {name} " in top.stdout for name in ("ingest", "header", "lifecycle", "recall", "fixity"))
    lifecycle, recall = _pacs("lifecycle", "--help", cwd=cwd), _pacs("recall", "--help", cwd=cwd)
    assert lifecycle.stdout.startswith("usage: pacs lifecycle") and recall.stdout.startswith("usage: pacs recall")
    assert "--dry-run" in lifecycle.stdout and "--dry-run" not in recall.stdout
    assert "--study" in recall.stdout and "--study" not in lifecycle.stdout
    nothing = _pacs(cwd=cwd)
    assert nothing.returncode == 2 and "COMMAND" in nothing.stderr


# --- a user's mistake: one line, exit status 2 --------------------------------------------------

def _assert_one_line(args: list[str], says: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    out = _pacs(*args, cwd=cwd, env=env)
    command = next(a for a in args if not a.startswith("-") and not a.endswith(".yaml"))
    lines = _lines(out.stderr)
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith(f"pacs {command}: "), out.stderr
    assert "Traceback" not in out.stderr
    for text in says:
        assert text in lines[0], lines[0]
    verbose = _pacs("-v", *args, cwd=cwd, env=env)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
    assert _lines(verbose.stderr)[-1] == lines[0]
    return lines[0]


def test_a_missing_configuration_says_which_file_and_how_to_name_one(cwd: Path) -> None:
    _assert_one_line(["--config", str(cwd / "nope.yaml"), "summary"],
                     [f"configuration file {cwd / 'nope.yaml'} does not exist", "--config FILE", "PACS_CONFIG"], cwd)
    _assert_one_line(["query", "SELECT 1"],
                     [str(cwd / "config" / "pacs.yaml"), "the default", "--config FILE"], cwd)


def test_a_misspelt_key_lists_the_allowed_and_the_missing_required_keys(tmp_path: Path, cwd: Path) -> None:
    path = write_config(tmp_path / "a")
    path.write_text(path.read_text().replace("\nonline:", "\nonlin:"))
    line = _assert_one_line(["--config", str(path), "lifecycle", "--dry-run"], [
        str(path), "unknown top-level key(s) ['onlin'] (did you mean 'online' for 'onlin'?)",
        "missing required key(s) ['online']", "allowed: ['backup', 'capacity', 'catalogue',"], cwd)
    assert "of which ['landing', 'online', 'offline', 'quarantine', 'catalogue'] are required" in line


@pytest.mark.parametrize(("text", "says"), [
    ("landing: [l\nonline: o\n", "not valid YAML at line 2, column 7"),
    ("settle_seconds: -1\n", "settle_seconds: expected a non-negative integer, got -1"),
    ("ingest: {batch_sise: 10}\n", "ingest: unknown key(s) ['batch_sise'] (did you mean 'batch_size'"),
], ids=["yaml", "value", "section-key"])
def test_an_invalid_configuration_is_one_line_naming_file_and_key(tmp_path: Path, cwd: Path, text: str,
                                                                  says: str) -> None:
    path = tmp_path / "pacs.yaml"
    base = "landing: [l]\nonline: o\noffline: f\nquarantine: q\ncatalogue: {duckdb: c.duckdb, parquet: p}\n"
    path.write_text(text if text.startswith("landing") else base + text)
    _assert_one_line(["--config", str(path), "fixity"], [str(path), says], cwd)


def test_an_unknown_study_or_patient_for_recall(ingested: Any, cwd: Path) -> None:
    _assert_one_line(["--config", str(ingested.path), "recall", "--study", "1.2.3.999", "--date", DAY],
                     ["no catalogued study matches the recall of study 1.2.3.999", str(ingested.duckdb)], cwd)
    line = _assert_one_line(["--config", str(ingested.path), "recall", "--patient-id", "NO-SUCH-PATIENT-77"],
                            ["no catalogued study matches the recall of the patient ID given"], cwd)
    assert "NO-SUCH-PATIENT-77" not in line  # no patient data in messages


def test_a_missing_file_for_header(cwd: Path) -> None:
    _assert_one_line(["header", str(cwd / "missing.dcm")], [f"{cwd / 'missing.dcm'}: no such file"], cwd)


def test_an_unknown_reason_code_and_a_catalogue_not_made_yet(tmp_path: Path, cwd: Path) -> None:
    path = write_config(tmp_path / "fresh")
    _assert_one_line(["--config", str(path), "check"],
                     ["pacs.duckdb does not exist yet (run pacs_ingest first)"], cwd)
    from pacs import catalogue

    cfg = load_config(path)
    catalogue.connect(cfg.duckdb).close()
    _assert_one_line(["--config", str(path), "resubmit", "--reason", "no_such_reason"],
                     ["unknown reason code 'no_such_reason'; known:"], cwd)


def test_an_unreachable_location(tmp_path: Path, cwd: Path) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    path = write_config(tmp_path / "far", landing=[{"url": "s3://landing-bucket/incoming", "storage_options": {
        "endpoint_url": endpoint, "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}}])
    _assert_one_line(["--config", str(path), "ingest"], [endpoint, "unreachable", "endpoint_url"], cwd,
                     env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    """A 16 KB tmpfs (needs root to mount)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_full_location_fails_ingest_in_one_line_and_keeps_the_file(tmp_path: Path, cwd: Path,
                                                                     small_mount: Path) -> None:
    path = write_config(tmp_path / "full", online=str(small_mount / "online"))
    landed = Path(load_config(path).landing[0].root) / "ct.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), landed)  # 39 KB: more than the tier holds
    _assert_one_line(["--config", str(path), "ingest"],
                     [f"the online tier at {small_mount / 'online'} is full", "free space or grow the tier"], cwd)
    assert landed.read_bytes() == Path(get_testdata_file("CT_small.dcm")).read_bytes()
    assert [p for p in (small_mount / "online").rglob("*") if p.is_file()] == []


# --- a closed pipe ------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["summary"], ["query", "SELECT * FROM range(200000)", "--max-rows", "200000"]],
                         ids=["summary", "query"])
def test_a_closed_pipe_is_silent(ingested: Any, cwd: Path, args: list[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "pacs.cli", "--config", str(ingested.path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            env={"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin"})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 0 and err == ""
    shell = subprocess.run(["bash", "-o", "pipefail", "-c",
                            f'"{sys.executable}" -m pacs.cli --config "{ingested.path}" '
                            + " ".join(f"'{a}'" for a in args) + " | head -1"],
                           capture_output=True, text=True, cwd=cwd, timeout=120,
                           env={"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin"})
    assert shell.returncode == 0 and shell.stderr == "" and len(_lines(shell.stdout)) == 1


# --- pacs header: what intake would do ----------------------------------------------------------

def _save(ds: Dataset, path: Path) -> Path:
    """A Part-10 file (preamble, DICM, file meta) of ``ds``, whatever it lacks."""
    ds.preamble = b"\0" * 128
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=False)
    return path


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_header_says_a_good_file_would_be_catalogued(ingested: Any, cwd: Path, name: str) -> None:
    out = _pacs("--config", str(ingested.path), "header", get_testdata_file(name), cwd=cwd)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first == f"{get_testdata_file(name)}: intake would catalogue it"
    assert f"checked against the catalogue {ingested.duckdb}" in out.stdout
    assert "patient_name " in out.stdout and "***" in out.stdout  # names masked


def test_header_says_a_file_missing_every_required_tag_would_be_quarantined(cwd: Path) -> None:
    ds = Dataset()
    ds.StudyDescription = "nothing the catalogue needs"
    path = _save(ds, cwd / "empty.dcm")
    out = _pacs("header", str(path), cwd=cwd)
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines()[0] == f"{path}: intake would quarantine it: missing_tag " \
                                         "(a required tag is missing or empty)"
    assert f"missing or empty: {', '.join(kw for kw, _ in REQUIRED)}" in out.stdout
    assert "null" not in out.stdout
    text = _pacs("header", str(_save_text(cwd / "notes.txt")), cwd=cwd)
    assert text.returncode == 1 and "intake would quarantine it: not_dicom" in text.stdout


def _save_text(path: Path) -> Path:
    path.write_text("not an image\n")
    return path


def _variant(src: Path, dst: Path, **changes: str) -> Path:
    ds = pydicom.dcmread(src)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(dst)
    return dst


def test_header_checks_the_merges_outcomes_against_the_catalogue(ingested: Any, cwd: Path) -> None:
    src = _online_file(ingested)
    cases = {
        "duplicate": (src, "intake would count it as a duplicate: an identical copy of a catalogued image"),
        "sop_conflict": (_variant(src, cwd / "changed.dcm", StudyDescription="edited"), "sop_conflict"),
        "patient_mismatch": (_variant(src, cwd / "other-patient.dcm", PatientID="OTHER-1",
                                      SOPInstanceUID=generate_uid()), "patient_mismatch"),
        "series_conflict": (_variant(src, cwd / "other-study.dcm", StudyInstanceUID=generate_uid(),
                                     SOPInstanceUID=generate_uid()), "series_conflict"),
    }
    for name, (path, says) in cases.items():
        out = _pacs("--config", str(ingested.path), "header", str(path), cwd=cwd)
        assert out.returncode == (0 if name == "duplicate" else 1), (name, out.stderr)
        assert says in out.stdout.splitlines()[0], (name, out.stdout)


def test_header_without_a_configuration_judges_the_file_alone_and_json_is_whole(cwd: Path) -> None:
    out = _pacs("header", "--json", get_testdata_file("CT_small.dcm"), cwd=cwd)
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["outcome"] == "catalogued" and doc["reason"] is None
    assert doc["checked"].startswith("the file alone") and "sop_conflict" in doc["checked"]
    assert doc["header"]["patient_name"] == "***" and doc["header"]["modality"] == "CT"
    shown = json.loads(_pacs("header", "--json", "--show-phi", get_testdata_file("CT_small.dcm"), cwd=cwd).stdout)
    assert shown["header"]["patient_name"] == str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)


# --- what waits in landing ----------------------------------------------------------------------

def test_a_missing_landing_location_is_warned_by_ingest_and_summary_and_fails_check(tmp_path: Path,
                                                                                    cwd: Path) -> None:
    path = write_config(tmp_path / "typo")
    missing = tmp_path / "typo" / "landnig"
    path.write_text(path.read_text().replace(str(tmp_path / "typo" / "landing"), str(missing)))
    warning = (f"warning: landing[0] at {missing} does not exist, so nothing there is taken in: create it, "
               f"or correct 'landing' in {path}")
    ingest = _pacs("--config", str(path), "ingest", cwd=cwd)
    assert ingest.returncode == 0 and _lines(ingest.stderr) == [f"pacs ingest: {warning}"], ingest.stderr
    summary = _pacs("--config", str(path), "summary", cwd=cwd)
    assert summary.returncode == 0 and _lines(summary.stderr) == [f"pacs summary: {warning}"]
    assert f"missing: {missing} does not exist" in summary.stdout
    check = _pacs("--config", str(path), "check", cwd=cwd)
    assert check.returncode == 1 and f"landing[0] at {missing} does not exist" in check.stdout
    assert check.stdout.strip().endswith("1 problem(s)")


def test_ingest_and_summary_say_how_many_files_wait_to_settle(tmp_path: Path, cwd: Path) -> None:
    path = write_config(tmp_path / "settling", settle_seconds=3600)
    landing = Path(load_config(path).landing[0].root)
    for i in range(3):
        shutil.copy(get_testdata_file("CT_small.dcm"), landing / f"ct{i}.dcm")
        os.utime(landing / f"ct{i}.dcm", (time.time(), time.time()))  # just written
    ingest = _pacs("--config", str(path), "ingest", cwd=cwd)
    assert ingest.returncode == 0, ingest.stderr
    assert "pacs ingest: 3 file(s) in landing are waiting to settle (changed within the last settle_seconds = " \
           "3600 s); a later run takes them" in ingest.stderr
    summary = _pacs("--config", str(path), "summary", cwd=cwd)
    assert "Landing: 3 file(s) were waiting to settle at the last sweep" in summary.stdout
    landing_state = json.loads(_pacs("--config", str(path), "summary", "--json", cwd=cwd).stdout)["landing"]
    assert landing_state["waiting"] == 3 and landing_state["missing"] == [] and landing_state["swept_at"]
