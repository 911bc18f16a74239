"""Radiation Dose SRs through the real intake: CT reports (TID 10011, written by
:mod:`pacs.synth.dose` with values the tests choose) and a projection X-ray report (TID 10001,
written here with pydicom) become ``dose_report`` and ``dose_event`` rows linked to their study,
and ``dose_per_study`` / ``ct_dose_by_protocol`` give totals and medians computed here from the
chosen values. Malformed values are left empty and counted; a rejected report leaves the views;
a purged one leaves the catalogue; the snapshot, plain DuckDB and the de-identified views agree."""

from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dept_files import ct_image
from helpers import query as _q
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacs.admin import reject
from pacs.admin.purge import purge
from pacs.catalogue import snapshot_refresh
from pacs.catalogue.checks import check
from pacs.intake import run_ingest
from pacs.synth.dose import CONSTANT_ANGLE, SPIRAL, CtEvent, ct_dose_report
from pacs.synth.encode import _lenient_pydicom

CHEST = ("51185008", "SCT", "Chest")
HEAD = ("69536005", "SCT", "Head")
KEY = b"departmental-test-key-0123456789"
PLACEHOLDER = "271.828182"  # a number pydicom writes, replaced in the file by one it would refuse


def _event(ctdivol: float, length_mm: float, protocol: str = "CHEST ROUTINE", *, localizer: bool = False,
           region: tuple[str, str, str] = CHEST, uid: str | None = None) -> CtEvent:
    return CtEvent(uid or generate_uid(), protocol, region, CONSTANT_ANGLE if localizer else SPIRAL, ctdivol,
                   length_mm, region is HEAD)


def _ct_study(landing: Any, events: list[CtEvent], *, study_date: str = "20250314",
              dlp_total: float | None = None) -> tuple[Dataset, Dataset]:
    """A CT image and the dose report of its study (in landing); returns (image, report)."""
    image = ct_image(StudyDate=study_date)
    landing.write(image)
    report = ct_dose_report(image, events, sop_instance_uid=generate_uid(), series_instance_uid=generate_uid(),
                            dlp_total_mgycm=dlp_total)
    landing.write(report)
    return image, report


def test_a_ct_dose_report_records_its_events_and_its_studys_totals(cfg, landing, views) -> None:
    events = [_event(0.2, 400.0, localizer=True), _event(8.5, 320.0), _event(12.25, 300.0)]
    image, report = _ct_study(landing, events)
    out = run_ingest(cfg)
    assert out["catalogued"] == 2 and out["quarantined"] == 0, out
    study = image.StudyInstanceUID

    assert _q(cfg, "SELECT study_instance_uid, report_kind, template_id, event_count, reported_event_count, "
                   "dlp_total_mgycm, invalid_values FROM dose_report WHERE sop_instance_uid = $s",
              {"s": report.SOPInstanceUID}) == [(study, "ct", "10011", 3, 3, 8.0 + 272.0 + 367.5, [])]
    rows = _q(cfg, "SELECT event_ordinal, irradiation_event_uid, study_instance_uid, event_kind, acquisition_type, "
                   "acquisition_protocol, target_region, target_region_code, ctdivol_mgy, dlp_mgycm, "
                   "scanning_length_mm FROM dose_event ORDER BY event_ordinal")
    assert rows == [
        (1, events[0].uid, study, "ct", "Constant Angle Acquisition", "CHEST ROUTINE", "Chest", "SCT:51185008",
         0.2, 8.0, 400.0),
        (2, events[1].uid, study, "ct", "Spiral Acquisition", "CHEST ROUTINE", "Chest", "SCT:51185008",
         8.5, 272.0, 320.0),
        (3, events[2].uid, study, "ct", "Spiral Acquisition", "CHEST ROUTINE", "Chest", "SCT:51185008",
         12.25, 367.5, 300.0),
    ]
    [per_study] = views(cfg, "SELECT * FROM dose_per_study")
    assert per_study["study_instance_uid"] == study and per_study["modalities_in_study"] == ["CT", "SR"]
    assert (per_study["dose_reports"], per_study["ct_events"], per_study["projection_events"]) == (1, 3, 0)
    assert per_study["dlp_total_mgycm"] == per_study["reported_dlp_total_mgycm"] == 647.5
    assert per_study["max_ctdivol_mgy"] == 12.25
    assert check(cfg) == []


def test_ct_dose_by_protocol_gives_each_months_median_per_exam(cfg, landing, views) -> None:
    exams = {  # (study date, protocol) -> spiral CTDIvols, scanning length; each exam also has a localizer
        ("20250303", "CHEST ROUTINE"): ([6.0], 300.0),
        ("20250310", "CHEST ROUTINE"): ([9.0, 11.0], 320.0),
        ("20250321", "CHEST ROUTINE"): ([14.0], 350.0),
        ("20250402", "CHEST ROUTINE"): ([7.5], 310.0),
        ("20250315", "HEAD ROUTINE"): ([52.0], 160.0),
    }
    expected: dict[tuple[dt.date, str], list[tuple[float, float]]] = {}
    for (day, protocol), (ctdivols, length) in exams.items():
        region = HEAD if protocol.startswith("HEAD") else CHEST
        events = [_event(0.1, 500.0, protocol, localizer=True, region=region),
                  *(_event(c, length, protocol, region=region) for c in ctdivols)]
        _ct_study(landing, events, study_date=day)
        month = dt.date(int(day[:4]), int(day[4:6]), 1)
        dlp = round(sum(round(e.ctdivol_mgy * e.scanning_length_mm / 10, 2) for e in events), 3)
        expected.setdefault((month, protocol), []).append((statistics.mean(ctdivols), dlp))
    assert run_ingest(cfg)["catalogued"] == 2 * len(exams)
    got = {(r["month"], r["acquisition_protocol"]): r for r in views(cfg, "SELECT * FROM ct_dose_by_protocol")}
    assert set(got) == set(expected)
    for key, per_exam in expected.items():
        row = got[key]
        assert row["studies"] == len(per_exam)
        assert row["median_ctdivol_mgy"] == pytest.approx(statistics.median(c for c, _ in per_exam))
        assert row["median_dlp_mgycm"] == pytest.approx(statistics.median(d for _, d in per_exam))
    march = got[(dt.date(2025, 3, 1), "CHEST ROUTINE")]
    assert march["median_ctdivol_mgy"] == 10.0  # exams of 6, 10 (9 and 11) and 14 mGy


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _content(relationship: str, value_type: str, concept: tuple[str, str, str], **values: Any) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = relationship, value_type
    item.ConceptNameCodeSequence = Sequence([_code(*concept)])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _num(concept: tuple[str, str, str], value: str, unit: str) -> Dataset:
    measured = Dataset()
    measured.NumericValue = value
    measured.MeasurementUnitsCodeSequence = Sequence([_code(unit, "UCUM", unit)])
    return _content("CONTAINS", "NUM", concept, MeasuredValueSequence=Sequence([measured]))


def _container(concept: tuple[str, str, str], children: list[Dataset]) -> Dataset:
    return _content("CONTAINS", "CONTAINER", concept, ContinuityOfContent="SEPARATE",
                    ContentSequence=Sequence(children))


def _projection_report(image: Dataset, events: list[tuple[str, str, str, str]], totals: tuple[str, str]) -> Dataset:
    """A Projection X-Ray Radiation Dose SR (TID 10001) of ``image``'s study: ``events`` of
    (DAP value, its unit, Dose (RP) value, its unit); ``totals`` (DAP total Gy.m2, Dose (RP) total Gy)."""
    ds = Dataset()
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber"):
        ds[keyword] = image[keyword]
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.67"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), "SR", 999, 1
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("113701", "DCM", "X-Ray Radiation Dose Report")])
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "10001"
    ds.ContentTemplateSequence = Sequence([template])
    accumulated = _container(("113702", "DCM", "Accumulated X-Ray Dose Data"), [
        _num(("113722", "DCM", "Dose Area Product Total"), totals[0], "Gy.m2"),
        _num(("113725", "DCM", "Dose (RP) Total"), totals[1], "Gy"),
    ])
    items = [accumulated]
    for dap, dap_unit, dose, dose_unit in events:
        items.append(_container(("113706", "DCM", "Irradiation Event X-Ray Data"), [
            _content("CONTAINS", "UIDREF", ("113769", "DCM", "Irradiation Event UID"), UID=generate_uid()),
            _content("CONTAINS", "CODE", ("113721", "DCM", "Irradiation Event Type"),
                     ConceptCodeSequence=Sequence([_code("113611", "DCM", "Stationary Acquisition")])),
            _content("CONTAINS", "TEXT", ("125203", "DCM", "Acquisition Protocol"), TextValue="ABDOMEN AP"),
            _content("CONTAINS", "CODE", ("123014", "DCM", "Target Region"),
                     ConceptCodeSequence=Sequence([_code("113345001", "SCT", "Abdomen")])),
            _num(("122130", "DCM", "Dose Area Product"), dap, dap_unit),
            _num(("113738", "DCM", "Dose (RP)"), dose, dose_unit),
        ]))
    ds.ContentSequence = Sequence(items)
    return ds


def test_a_projection_dose_report_gives_dose_area_product_and_dose_at_the_reference_point(cfg, landing, views) -> None:
    image = ct_image(Modality="DX", SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1")
    image.file_meta.MediaStorageSOPClassUID = image.SOPClassUID
    landing.write(image)
    # 0.00012 Gy.m2 and 15 dGy.cm2 (= 0.00015 Gy.m2); 0.8 mGy (= 0.0008 Gy) and 0.0011 Gy
    report = _projection_report(image, [("0.00012", "Gy.m2", "0.8", "mGy"), ("15", "dGy.cm2", "0.0011", "Gy")],
                                totals=("0.00027", "0.0019"))
    landing.write(report)
    assert run_ingest(cfg)["catalogued"] == 2
    assert _q(cfg, "SELECT report_kind, template_id, event_count, dose_area_product_total_gym2, dose_rp_total_gy "
                   "FROM dose_report") == [("projection", "10001", 2, 0.00027, 0.0019)]
    events = _q(cfg, "SELECT event_kind, acquisition_type, acquisition_protocol, target_region, "
                     "dose_area_product_gym2, dose_rp_gy FROM dose_event ORDER BY event_ordinal")
    assert [e[:4] for e in events] == [("projection", "Stationary Acquisition", "ABDOMEN AP", "Abdomen")] * 2
    assert [pytest.approx(e[4:]) for e in events] == [(0.00012, 0.0008), (0.00015, 0.0011)]
    [row] = views(cfg, "SELECT * FROM dose_per_study")
    assert (row["ct_events"], row["projection_events"], row["dlp_total_mgycm"]) == (0, 2, None)
    assert row["dose_area_product_total_gym2"] == pytest.approx(row["reported_dose_area_product_total_gym2"])
    assert row["dose_rp_total_gy"] == pytest.approx(0.0019) and row["reported_dose_rp_total_gy"] == 0.0019
    assert check(cfg) == []


def test_malformed_dose_values_are_left_empty_counted_and_the_report_catalogued(cfg, landing, views) -> None:
    image = ct_image()
    landing.write(image)
    report = ct_dose_report(image, [_event(8.0, 300.0), _event(9.0, 300.0)], sop_instance_uid=generate_uid(),
                            series_instance_uid=generate_uid())
    first, second = (item for item in report.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "113819")
    for item in first.ContentSequence:
        if item.ValueType == "UIDREF":
            with _lenient_pydicom():
                item.UID = "not.a.uid-"
        if item.ConceptNameCodeSequence[0].CodeValue == "113829":  # CT Dose
            for number in item.ContentSequence:
                if number.ConceptNameCodeSequence[0].CodeValue == "113838":  # DLP: not a number (patched below)
                    number.MeasuredValueSequence[0].NumericValue = PLACEHOLDER
    for item in second.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "113829":
            for number in item.ContentSequence:
                if number.ConceptNameCodeSequence[0].CodeValue == "113830":  # CTDIvol in an unknown unit
                    number.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue = "furlong"
    path = landing.write(report)
    data = path.read_bytes()
    assert data.count(PLACEHOLDER.encode()) == 1
    path.write_bytes(data.replace(PLACEHOLDER.encode(), b"abc".ljust(len(PLACEHOLDER))))
    out = run_ingest(cfg)
    assert out["catalogued"] == 2 and out["quarantined"] == 0, out
    assert _q(cfg, "SELECT event_ordinal, irradiation_event_uid, ctdivol_mgy, dlp_mgycm, invalid_values "
                   "FROM dose_event ORDER BY 1") == [(1, None, 8.0, None, ["IrradiationEventUID", "DLP"]),
                                     (2, report_uid(second), None, 270.0, ["CTDIvol"])]
    counted = {(r["table_name"], r["keyword"]): r["rows"]
               for r in views(cfg, "SELECT * FROM departmental_invalid_values")}
    assert counted == {("dose_event", "IrradiationEventUID"): 1, ("dose_event", "DLP"): 1,
                       ("dose_event", "CTDIvol"): 1}
    assert check(cfg) == []


def report_uid(event: Dataset) -> str:
    return next(str(i.UID) for i in event.ContentSequence if i.ValueType == "UIDREF")


def test_the_same_event_in_two_reports_counts_once(cfg, landing, views) -> None:
    events = [_event(0.2, 400.0, localizer=True), _event(10.0, 300.0)]
    image, _ = _ct_study(landing, events)
    copy = ct_dose_report(image, events, sop_instance_uid=generate_uid(), series_instance_uid=generate_uid())
    landing.write(copy)  # a dose registry's copy of the same events
    assert run_ingest(cfg)["catalogued"] == 3
    [row] = views(cfg, "SELECT * FROM dose_per_study")
    assert (row["dose_reports"], row["ct_events"]) == (2, 2)
    assert row["dlp_total_mgycm"] == 308.0  # each event once
    assert row["reported_dlp_total_mgycm"] == 616.0  # what the two reports state, summed


def test_a_rejected_report_leaves_the_views_and_a_purge_deletes_its_rows(cfg, landing, views) -> None:
    kept_image, _ = _ct_study(landing, [_event(5.0, 300.0)])
    image, report = _ct_study(landing, [_event(10.0, 300.0)])
    assert run_ingest(cfg)["catalogued"] == 4
    reject(cfg, sop=report.SOPInstanceUID, code="113001", reason="test", run_id="reject")
    reject(cfg, sop=image.SOPInstanceUID, code="113001", reason="test", run_id="reject")
    shown = [r["study_instance_uid"] for r in views(cfg, "SELECT * FROM dose_per_study")]
    assert shown == [kept_image.StudyInstanceUID]
    assert views(cfg, "SELECT count(*) AS n FROM accepted_dose_event") == [{"n": 1}]
    assert views(cfg, "SELECT sum(images) AS n FROM ct_acquisition_by_protocol") == [{"n": 1}]
    assert _q(cfg, "SELECT count(*) FROM dose_event")[0][0] == 2  # kept in the tables until a purge

    done = purge(cfg, rejected_before=dt.date.today() + dt.timedelta(days=1), run_id="purge")
    assert done["instances_deleted"] == 2, done
    for table, n in (("dose_report", 1), ("dose_event", 1), ("ct_acquisition", 1)):
        assert _q(cfg, f"SELECT count(*) FROM {table}")[0][0] == n, table
    assert _q(cfg, "SELECT count(*) FROM dose_event WHERE sop_instance_uid = $s",
              {"s": report.SOPInstanceUID}) == [(0,)]
    for table in ("dose_report", "dose_event", "ct_acquisition"):  # the snapshot lost them too
        assert views(cfg, f"SELECT count(*) AS n FROM {table}") == [{"n": 1}], table
    assert check(cfg) == []


def test_plain_duckdb_and_the_deidentified_views_show_the_same_doses(cfg, landing, views) -> None:
    image, report = _ct_study(landing, [_event(0.2, 400.0, localizer=True), _event(8.5, 320.0)])
    assert run_ingest(cfg)["catalogued"] == 2
    live = views(cfg, "SELECT * FROM dose_per_study")
    con = duckdb.connect()
    con.execute(Path(cfg.parquet.path(snapshot_refresh.SNAPSHOT_VIEWS)).read_text())
    cur = con.execute("SELECT * FROM dose_per_study")
    assert [dict(zip([d[0] for d in cur.description], r, strict=True)) for r in cur.fetchall()] == live
    assert con.execute("SELECT studies, median_dlp_mgycm FROM ct_dose_by_protocol").fetchall() == [(1, 280.0)]

    [deid] = views(cfg, "SELECT * FROM deid_dose_per_study", key=KEY)
    assert deid["dlp_total_mgycm"] == 280.0 and deid["study_year"] == 2025 and len(deid["study_key"]) == 32
    identifiers = {image.StudyInstanceUID, image.PatientID, report.SOPInstanceUID, image.SeriesInstanceUID}
    for view in ("deid_dose_per_study", "deid_dose_event", "deid_ct_acquisition"):
        for row in views(cfg, f"SELECT * FROM {view}", key=KEY):
            assert not identifiers & {str(v) for v in row.values()}, view
            assert not {"study_instance_uid", "patient_id", "sop_instance_uid", "irradiation_event_uid",
                        "acquisition_protocol", "protocol_name"} & set(row), view
    assert views(cfg, "SELECT * FROM deid_ct_dose_by_protocol", key=KEY) == []  # fewer than 11 studies
