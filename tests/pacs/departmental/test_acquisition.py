"""Acquisition tables filled at intake from the header already read: pydicom's own CT, MR and US
files through the real intake (sweep → process → merge → snapshot), one row per image in the
table of its modality, values as pydicom reads them; a malformed value leaves that value empty,
is counted, and the file is catalogued, never quarantined for it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from dept_files import ct_image, pydicom_file
from helpers import query as _q
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacs.catalogue.checks import check, summary
from pacs.dicom import read_header_bytes
from pacs.dicom.acquisition import ACQUISITION_TABLES, PHYSICAL_UNITS, TABLE_FOR_MODALITY
from pacs.intake import run_ingest
from pacs.synth.encode import _lenient_pydicom

# pydicom's files that carry acquisition values: explicit and implicit VR, big endian, US regions
PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                 "examples_palette.dcm", "examples_ybr_color.dcm")
INGESTED = ("CT_small.dcm", "MR_small.dcm", "examples_palette.dcm", "examples_ybr_color.dcm")  # MR: one SOP UID


def _header(name: str) -> dict[str, Any]:
    return read_header_bytes(Path(get_testdata_file(name)).read_bytes())


def _expected(ds: Dataset) -> dict[str, Any]:
    """A file's acquisition row as pydicom itself reads the values (independent of the header reader)."""
    table = TABLE_FOR_MODALITY[ds.Modality]
    out: dict[str, Any] = {}
    for field in ACQUISITION_TABLES[table]:
        if field.kind in ("number", "text") and field.keyword in ds and ds[field.keyword].value not in (None, ""):
            value = ds[field.keyword].value
            if field.kind == "number":
                out[field.column] = float(value[0] if isinstance(value, list | tuple) else value)
            else:
                out[field.column] = "\\".join(value) if not isinstance(value, str) else value.strip()
    if "SequenceOfUltrasoundRegions" in ds:
        regions = ds.SequenceOfUltrasoundRegions
        out["region_count"] = len(regions)
        out["physical_units_x_direction"] = [PHYSICAL_UNITS[r.PhysicalUnitsXDirection] for r in regions]
        out["physical_units_y_direction"] = [PHYSICAL_UNITS[r.PhysicalUnitsYDirection] for r in regions]
    return out


@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_the_header_reader_reads_the_acquisition_values_of_pydicoms_files(name: str) -> None:
    ds = pydicom_file(name)
    header = _header(name)
    got = json.loads(header["acquisition"])
    assert got.pop("table") == TABLE_FOR_MODALITY[ds.Modality]
    assert got == _expected(ds)
    assert header["dose_report"] is None


def test_known_values_of_ct_small_and_mr_small() -> None:
    ct = json.loads(_header("CT_small.dcm")["acquisition"])
    assert (ct["kvp"], ct["x_ray_tube_current"], ct["exposure"], ct["slice_thickness"], ct["convolution_kernel"]) == (
        120.0, 170.0, 170.0, 5.0, "STANDARD")
    for name in ("MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"):
        mr = json.loads(_header(name)["acquisition"])
        assert (mr["scanning_sequence"], mr["repetition_time"], mr["echo_time"], mr["flip_angle"]) == (
            "SE", 4000.0, 240.0, 90.0), name


def test_a_file_without_a_departmental_table_has_no_acquisition_row() -> None:
    for name in ("test-SR.dcm", "rtdose.dcm"):  # an SR, an RT dose: no table of theirs
        assert _header(name)["acquisition"] is None


def test_pydicoms_files_are_catalogued_with_one_row_per_image_and_the_views_read_them(cfg, landing, views) -> None:
    for name in INGESTED:
        landing.copy(name)
    out = run_ingest(cfg)
    assert out["catalogued"] == len(INGESTED) and out["quarantined"] == 0, out
    for name in INGESTED:
        ds = pydicom_file(name)
        table = TABLE_FOR_MODALITY[ds.Modality]
        columns = [f.column for f in ACQUISITION_TABLES[table]]
        rows = _q(cfg, f"SELECT series_instance_uid, study_instance_uid, invalid_values, {', '.join(columns)} "
                       f"FROM {table} WHERE sop_instance_uid = $s", {"s": ds.SOPInstanceUID})
        assert len(rows) == 1, name
        series, study, invalid, *values = rows[0]
        assert (series, study, invalid) == (ds.SeriesInstanceUID, ds.StudyInstanceUID, [])
        assert {c: v for c, v in zip(columns, values, strict=True) if v is not None} == _expected(ds), name
    ct = pydicom_file("CT_small.dcm")
    assert views(cfg, "SELECT month, series, images, median_kvp, median_x_ray_tube_current, median_slice_thickness "
                      "FROM ct_acquisition_by_protocol") == [
        {"month": ct_month(ct), "series": 1, "images": 1, "median_kvp": 120.0, "median_x_ray_tube_current": 170.0,
         "median_slice_thickness": 5.0}]
    assert check(cfg) == []


def ct_month(ds: Dataset) -> dt.date:
    return dt.date(int(ds.StudyDate[:4]), int(ds.StudyDate[4:6]), 1)


def test_malformed_values_are_left_empty_counted_and_the_file_catalogued(cfg, landing, views) -> None:
    abc, negative = ct_image(), ct_image()
    us = pydicom_file("examples_palette.dcm")
    region = us.SequenceOfUltrasoundRegions[0]
    region.PhysicalUnitsXDirection = 99  # not a DICOM physical unit
    us.SequenceOfUltrasoundRegions = Sequence([region])
    mr = pydicom_file("MR_small.dcm")
    mr["EchoTime"].VR = "UN"  # an element sent with VR UN is read as its dictionary VR: not malformed
    mr["EchoTime"].value = b"12.5"
    landing.write_malformed(abc, {"KVP": "abc"})
    landing.write_malformed(negative, {"XRayTubeCurrent": "-170", "SliceThickness": "nan"})
    for ds in (us, mr):
        landing.write(ds)
    out = run_ingest(cfg)
    assert out["catalogued"] == 4 and out["quarantined"] == 0, out
    assert _q(cfg, "SELECT count(*) FROM quarantine")[0][0] == 0

    assert _q(cfg, "SELECT kvp, x_ray_tube_current, exposure, invalid_values FROM ct_acquisition "
                   "WHERE sop_instance_uid = $s", {"s": abc.SOPInstanceUID}) == [(None, 170.0, 170.0, ["KVP"])]
    assert _q(cfg, "SELECT kvp, x_ray_tube_current, slice_thickness, invalid_values FROM ct_acquisition "
                   "WHERE sop_instance_uid = $s", {"s": negative.SOPInstanceUID}) == [
        (120.0, None, None, ["XRayTubeCurrent", "SliceThickness"])]
    assert _q(cfg, "SELECT physical_units_x_direction, physical_units_y_direction, invalid_values FROM us_acquisition"
              ) == [([None], ["cm"], ["PhysicalUnitsXDirection"])]
    assert _q(cfg, "SELECT echo_time, invalid_values FROM mr_acquisition") == [(12.5, [])]

    counted = {(r["table_name"], r["keyword"]): r["rows"]
               for r in views(cfg, "SELECT * FROM departmental_invalid_values")}
    assert counted == {("ct_acquisition", "KVP"): 1, ("ct_acquisition", "XRayTubeCurrent"): 1,
                       ("ct_acquisition", "SliceThickness"): 1, ("us_acquisition", "PhysicalUnitsXDirection"): 1}
    info = summary(cfg)["departmental"]
    assert info["ct_acquisition"] == {"rows": 2, "malformed": 2} and info["us_acquisition"]["malformed"] == 1
    assert check(cfg) == []


def test_a_value_that_is_a_sequence_is_malformed_not_a_reason_to_quarantine(cfg, landing) -> None:
    ds = ct_image()
    with _lenient_pydicom():
        ds.add_new(0x00180060, "SQ", Sequence([Dataset()]))  # KVP as a sequence
    landing.write(ds)
    out = run_ingest(cfg)
    assert out["catalogued"] == 1 and out["quarantined"] == 0, out
    assert _q(cfg, "SELECT kvp, invalid_values FROM ct_acquisition") == [(None, ["KVP"])]


def test_values_are_per_image_within_a_series(cfg, landing, views) -> None:
    """Tube current modulation: each slice of one series has its own mA; one row per image."""
    first = ct_image(XRayTubeCurrent="100")
    second = ct_image(first.StudyInstanceUID, first.SeriesInstanceUID, XRayTubeCurrent="300")
    third = ct_image(first.StudyInstanceUID, first.SeriesInstanceUID, XRayTubeCurrent="200")
    for ds in (first, second, third):
        landing.write(ds)
    assert run_ingest(cfg)["catalogued"] == 3
    assert sorted(r[0] for r in _q(cfg, "SELECT x_ray_tube_current FROM ct_acquisition")) == [100.0, 200.0, 300.0]
    assert [(r["series"], r["images"], r["median_x_ray_tube_current"])
            for r in views(cfg, "SELECT * FROM ct_acquisition_by_protocol")] == [(1, 3, 200.0)]
