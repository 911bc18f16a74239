"""The synthetic generator's departmental values: realistic acquisition parameters in every
modality's headers, and (opt-in, as the demo has it) one CT Radiation Dose SR per CT study whose
events and totals agree, read here with pydicom by an independent walk of the content tree, and
equal to what the catalogue's views give after intake."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import ROOT, write_config
from helpers import query as _q

from pacs import synth
from pacs.analyst.views import add_views
from pacs.catalogue import snapshot
from pacs.catalogue.checks import check
from pacs.config import load_config
from pacs.intake import run_ingest

ARGS: dict[str, Any] = {"seed": 5, "patients": 8, "count_scale": 0.02, "size_scale": 0.05}


def _find(items: Any, code: str) -> list[Any]:
    """Every content item with DCM concept ``code`` below ``items`` (depth first)."""
    out = []
    for item in items:
        name = item.ConceptNameCodeSequence[0]
        if name.CodeValue == code and name.CodingSchemeDesignator == "DCM":
            out.append(item)
        out.extend(_find(item.get("ContentSequence", []), code))
    return out


def _number(item: Any, code: str) -> float:
    [num] = _find(item.ContentSequence, code)
    return float(num.MeasuredValueSequence[0].NumericValue)


def _report(path: str) -> dict[str, Any]:
    ds = pydicom.dcmread(path)
    [accumulated] = _find(ds.ContentSequence, "113811")
    events = [{"ctdivol": _number(e, "113830"), "dlp": _number(e, "113838"), "length": _number(e, "113825"),
               "localizer": _find(e.ContentSequence, "113820")[0].ConceptCodeSequence[0].CodeValue == "113805"}
              for e in _find(ds.ContentSequence, "113819")]
    return {"study": ds.StudyInstanceUID, "sop": ds.SOPInstanceUID, "sop_class": ds.SOPClassUID,
            "modality": ds.Modality, "total": _number(accumulated, "113813"),
            "count": _number(accumulated, "113812"), "events": events}


@pytest.fixture(scope="module")
def ct_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.SynthResult]:
    root = tmp_path_factory.mktemp("dose") / "landing"
    return root, synth.generate_archive(root, modalities=("CT",), dose_reports=True, **ARGS)


def test_each_ct_study_has_one_dose_report_whose_events_and_totals_agree(ct_archive) -> None:
    _, result = ct_archive
    reports = [f for f in result.good() if f.modality == "SR"]
    images = [f for f in result.good() if f.modality == "CT"]
    assert sorted(f.study_instance_uid for f in reports) == sorted({f.study_instance_uid for f in images})
    for f in reports:
        r = _report(f.path)
        assert (r["sop_class"], r["modality"], r["study"]) == ("1.2.840.10008.5.1.4.1.1.88.67", "SR",
                                                               f.study_instance_uid)
        assert r["count"] == len(r["events"]) >= 2 and r["events"][0]["localizer"]
        for e in r["events"]:
            assert e["dlp"] == round(e["ctdivol"] * e["length"] / 10, 2)  # DLP = CTDIvol x scan length
        assert r["total"] == round(sum(e["dlp"] for e in r["events"]), 2)
        for e in r["events"][1:]:
            assert 5.0 <= e["ctdivol"] <= 60.0 and 90 <= e["length"] <= 720


def test_the_images_are_the_same_with_or_without_dose_reports(ct_archive, tmp_path: Path) -> None:
    root, result = ct_archive
    plain = synth.generate_archive(tmp_path / "plain", modalities=("CT",), **ARGS)
    with_reports = {Path(f.path).relative_to(root): Path(f.path).read_bytes()
                    for f in result.good() if f.modality == "CT"}
    without = {Path(f.path).relative_to(plain.root): Path(f.path).read_bytes() for f in plain.good()}
    assert with_reports == without


def test_the_catalogue_gives_the_reports_totals_and_the_images_ctdivol(archive, ct_archive) -> None:
    root, result = ct_archive
    reports = {r["study"]: r for r in (_report(f.path) for f in result.good() if f.modality == "SR")}
    cfg = archive()
    shutil.copytree(root, Path(cfg.landing[0].root) / "ct", copy_function=shutil.copy2)  # with their mtimes
    out = run_ingest(cfg)
    assert out["catalogued"] == len(result.good()) and out["quarantined"] == 0, out

    def work(con: Any) -> list[tuple[Any, ...]]:
        add_views(con)
        return con.execute("SELECT study_instance_uid, dlp_total_mgycm, reported_dlp_total_mgycm, ct_events, "
                           "max_ctdivol_mgy FROM dose_per_study").fetchall()

    rows = snapshot.with_snapshot(cfg.parquet, work)
    assert {r[0] for r in rows} == set(reports)
    for study, dlp, reported, events, max_ctdivol in rows:
        r = reports[study]
        assert dlp == reported == pytest.approx(r["total"])
        assert events == len(r["events"])
        assert max_ctdivol == max(e["ctdivol"] for e in r["events"])
        # every CT image of the study records the CTDIvol of its (first) spiral acquisition
        spiral = next(e["ctdivol"] for e in r["events"] if not e["localizer"])
        assert _q(cfg, "SELECT DISTINCT ctdivol FROM ct_acquisition WHERE study_instance_uid = $s",
                  {"s": study}) == [(spiral,)]
    assert check(cfg) == []


RANGES = {  # column -> (low, high) over every modality of a synthetic archive
    "ct_acquisition": {"kvp": (100, 140), "x_ray_tube_current": (20, 1200), "exposure": (10, 600),
                       "ctdivol": (5, 60), "slice_thickness": (1, 5)},
    "mr_acquisition": {"magnetic_field_strength": (1.5, 3), "repetition_time": (7, 10000), "echo_time": (2, 130),
                       "flip_angle": (8, 90)},
    "dx_exposure": {"kvp": (26, 125), "exposure_in_uas": (1500, 150000), "distance_source_to_detector": (650, 1830),
                    "body_part_thickness": (20, 280), "entrance_dose_in_mgy": (0.05, 10)},
    "us_acquisition": {"transducer_frequency": (2500, 12000), "region_count": (1, 2)},
}


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, collections.Counter[str]]:
    """Every modality, with dose reports (as the demo has it), ingested."""
    base = tmp_path_factory.mktemp("hospital")
    cfg = load_config(write_config(base / "archive"))
    result = synth.generate_archive(Path(cfg.landing[0].root) / "all", seed=5, patients=20, count_scale=0.02,
                                    size_scale=0.05, dose_reports=True)
    out = run_ingest(cfg)
    assert out["catalogued"] == len(result.good()) and out["quarantined"] == 0, out
    return cfg, collections.Counter(f.modality for f in result.good())


def test_every_modality_gets_realistic_values_in_its_table(hospital) -> None:
    cfg, by_modality = hospital
    assert {"CT", "MR", "CR", "DX", "US", "MG", "SR"} <= set(by_modality), by_modality
    tables = {"ct_acquisition": ("CT",), "mr_acquisition": ("MR",), "dx_exposure": ("CR", "DX", "MG"),
              "us_acquisition": ("US",)}
    for table, modalities in tables.items():
        assert _q(cfg, f"SELECT count(*) FROM {table}")[0][0] == sum(by_modality[m] for m in modalities), table
        for column, (low, high) in RANGES[table].items():
            lo, hi, nulls = _q(cfg, f"SELECT min({column}), max({column}), count(*) FILTER (WHERE {column} IS NULL) "
                                    f"FROM {table}")[0]
            assert nulls == 0 and low <= lo <= hi <= high, (table, column, lo, hi)
    mg = _q(cfg, "SELECT min(a.organ_dose), max(a.organ_dose) FROM dx_exposure a "
                 "JOIN series s USING (series_instance_uid) WHERE s.modality = 'MG'")[0]
    assert 0.01 <= mg[0] <= mg[1] <= 0.025  # mean glandular dose 1-2.5 mGy, in dGy
    assert _q(cfg, "SELECT count(*) FROM dose_report")[0][0] == by_modality["SR"]
    assert _q(cfg, "SELECT count(*) FROM ct_acquisition WHERE len(invalid_values) > 0")[0][0] == 0
    assert check(cfg) == []


def _readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Departmental tables and radiation dose"):]
    block = section[section.index("```sql") + len("```sql"): section.index("```", section.index("```sql") + 6)]
    return [q.strip() for q in block.split(";") if q.strip()]


def test_the_readmes_example_questions_run_and_answer(hospital) -> None:
    cfg, _ = hospital
    queries = _readme_examples()
    assert len(queries) >= 6

    def work(con: Any) -> list[int]:
        add_views(con)
        return [len(con.execute(q).fetchall()) for q in queries]

    rows = snapshot.with_snapshot(cfg.parquet, work)
    assert rows[0] > 0  # ct_dose_by_protocol has months and protocols
