"""Synthetic CT Radiation Dose SRs (TID 10011) whose events and totals are consistent.

:func:`ct_events` draws a CT study's irradiation events from its protocol: a localizer
(Constant Angle Acquisition) and one or two spiral acquisitions with a CTDIvol typical of the
protocol, a scanning length typical of the body region, and DLP = CTDIvol × scanning length (in
cm), rounded to 0.01 mGy·cm; the report's CT Dose Length Product Total is the sum of the events'
DLPs as written. :func:`ct_dose_report` builds the X-Ray Radiation Dose SR (SOP class
``1.2.840.10008.5.1.4.1.1.88.67``) of a study from any dataset that carries its patient and study
attributes (a study's image, or :func:`study_base`), so that tests can write reports with values
they chose. Written with pydicom (one file per CT study).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from pacs.synth.encode import _fmt_time
from pacs.synth.model import _Study

XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
"""X-Ray Radiation Dose SR Storage."""

SPIRAL = ("116152004", "SCT", "Spiral Acquisition")
CONSTANT_ANGLE = ("113805", "DCM", "Constant Angle Acquisition")
_BODY_PHANTOM = ("113691", "DCM", "IEC Body Dosimetry Phantom")
_HEAD_PHANTOM = ("113690", "DCM", "IEC Head Dosimetry Phantom")

# study description -> (protocol name, target region (SCT), CTDIvol range mGy, scanning length range mm, spirals)
CT_PROTOCOLS: dict[str, tuple[str, tuple[str, str, str], tuple[float, float], tuple[int, int], tuple[int, ...]]] = {
    "CT HEAD WO CONTRAST": ("HEAD ROUTINE", ("69536005", "SCT", "Head"), (38.0, 60.0), (140, 190), (1,)),
    "CT CHEST W CONTRAST": ("CHEST ROUTINE", ("51185008", "SCT", "Chest"), (5.0, 12.0), (280, 360), (1,)),
    "CT ABDOMEN PELVIS W CONTRAST": ("ABDOMEN PELVIS", ("818981001", "SCT", "Abdomen and Pelvis"), (8.0, 18.0),
                                     (400, 500), (1, 1, 2)),
    "CT CHEST ABDOMEN PELVIS": ("CHEST ABDOMEN PELVIS", ("416775004", "SCT", "Chest, Abdomen and Pelvis"),
                                (9.0, 20.0), (600, 720), (1, 1, 2)),
    "CT ANGIO PULMONARY": ("PE ANGIO", ("51185008", "SCT", "Chest"), (6.0, 15.0), (260, 340), (1,)),
    "CT SPINE LUMBAR": ("L-SPINE", ("122496007", "SCT", "Lumbar spine"), (12.0, 20.0), (180, 240), (1,)),
    "CT SINUS": ("SINUS LOW DOSE", ("2095001", "SCT", "Paranasal sinus"), (5.0, 12.0), (90, 130), (1,)),
}
"""Typical values: body CT 5-20 mGy CTDIvol; a head CT is higher (national reference levels are
about 60 mGy for the head, 10-15 mGy for chest and abdomen)."""


def ct_protocol(description: str) -> str:
    """The CT protocol name of a study description (ProtocolName in its images and its dose SR)."""
    return CT_PROTOCOLS[description][0] if description in CT_PROTOCOLS else description.removeprefix("CT ")


@dataclass(frozen=True)
class CtEvent:
    """One CT irradiation event (TID 10013) as a report states it."""

    uid: str
    acquisition_protocol: str
    target_region: tuple[str, str, str]  # (code value, scheme, meaning)
    acquisition_type: tuple[str, str, str]
    ctdivol_mgy: float
    scanning_length_mm: float
    head_phantom: bool = False

    @property
    def dlp_mgycm(self) -> float:
        """DLP = CTDIvol × scanning length (cm), as written (0.01 mGy·cm)."""
        return round(self.ctdivol_mgy * self.scanning_length_mm / 10.0, 2)


def ct_events(rng: random.Random, description: str, uid: Callable[[int], str]) -> list[CtEvent]:
    """A study's events: a localizer and its protocol's spiral acquisitions (``uid(i)``: event i's UID)."""
    protocol, region, (lo, hi), (short, long), spirals = CT_PROTOCOLS.get(
        description, (ct_protocol(description), ("38266002", "SCT", "Entire body"), (5.0, 20.0), (300, 500), (1,)))
    head = region[2] in ("Head", "Paranasal sinus")
    events = [CtEvent(uid(0), protocol, region, CONSTANT_ANGLE, round(rng.uniform(0.05, 0.3), 2),
                      float(rng.randint(short + 60, long + 100)), head)]
    for i in range(rng.choice(spirals)):
        events.append(CtEvent(uid(i + 1), protocol, region, SPIRAL, round(rng.uniform(lo, hi), 2),
                              float(rng.randint(short, long)), head))
    return events


def _code(code: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def _item(relationship: str, value_type: str, concept: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = Sequence([_code(concept)])
    return item


def _num(concept: tuple[str, str, str], value: float, unit: tuple[str, str, str]) -> Dataset:
    item = _item("CONTAINS", "NUM", concept)
    measured = Dataset()
    measured.NumericValue = f"{value:.10g}"
    measured.MeasurementUnitsCodeSequence = Sequence([_code(unit)])
    item.MeasuredValueSequence = Sequence([measured])
    return item


def _code_item(concept: tuple[str, str, str], value: tuple[str, str, str],
               relationship: str = "CONTAINS") -> Dataset:
    item = _item(relationship, "CODE", concept)
    item.ConceptCodeSequence = Sequence([_code(value)])
    return item


def _container(relationship: str, concept: tuple[str, str, str], children: list[Dataset]) -> Dataset:
    item = _item(relationship, "CONTAINER", concept)
    item.ContinuityOfContent = "SEPARATE"
    item.ContentSequence = Sequence(children)
    return item


_MGY = ("mGy", "UCUM", "mGy")
_MGYCM = ("mGy.cm", "UCUM", "mGy.cm")
_MM = ("mm", "UCUM", "mm")


def _event_item(event: CtEvent) -> Dataset:
    protocol = _item("CONTAINS", "TEXT", ("125203", "DCM", "Acquisition Protocol"))
    protocol.TextValue = event.acquisition_protocol
    uid = _item("CONTAINS", "UIDREF", ("113769", "DCM", "Irradiation Event UID"))
    uid.UID = event.uid
    parameters = _container("CONTAINS", ("113822", "DCM", "CT Acquisition Parameters"), [
        _num(("113824", "DCM", "Exposure Time"), round(event.scanning_length_mm / 40.0, 2), ("s", "UCUM", "s")),
        _num(("113825", "DCM", "Scanning Length"), event.scanning_length_mm, _MM),
    ])
    dose = _container("CONTAINS", ("113829", "DCM", "CT Dose"), [
        _num(("113830", "DCM", "Mean CTDIvol"), event.ctdivol_mgy, _MGY),
        _code_item(("113835", "DCM", "CTDIw Phantom Type"), _HEAD_PHANTOM if event.head_phantom else _BODY_PHANTOM),
        _num(("113838", "DCM", "DLP"), event.dlp_mgycm, _MGYCM),
    ])
    return _container("CONTAINS", ("113819", "DCM", "CT Acquisition"), [
        protocol,
        _code_item(("123014", "DCM", "Target Region"), event.target_region),
        _code_item(("113820", "DCM", "CT Acquisition Type"), event.acquisition_type),
        uid, parameters, dose,
    ])


_STUDY_KEYWORDS = ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                   "PatientSex", "PatientAge", "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                   "StudyID", "StudyDescription", "ReferringPhysicianName", "InstitutionName", "Manufacturer",
                   "ManufacturerModelName", "StationName")


def study_base(study: _Study) -> Dataset:
    """The patient and study attributes of a synthetic study, as a dataset for :func:`ct_dose_report`."""
    ds = Dataset()
    patient = study.patient
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = patient.name, patient.patient_id, "SYNTH"
    ds.PatientBirthDate, ds.PatientSex = patient.birth_date.strftime("%Y%m%d"), patient.sex
    ds.StudyInstanceUID, ds.StudyDate = study.uid, study.study_date.strftime("%Y%m%d")
    ds.StudyTime, ds.AccessionNumber, ds.StudyID = _fmt_time(study.time_s), study.accession, study.study_id
    ds.StudyDescription, ds.ReferringPhysicianName = study.description, study.referring
    ds.InstitutionName, ds.StationName = study.institution, study.station
    ds.Manufacturer, ds.ManufacturerModelName = study.manufacturer, study.model
    return ds


def ct_dose_report(base: Dataset, events: list[CtEvent], *, sop_instance_uid: str, series_instance_uid: str,
                   content_date: date | None = None, content_time: str = "120000",
                   dlp_total_mgycm: float | None = None, series_number: int = 997) -> Dataset:
    """The CT Radiation Dose SR (TID 10011) of ``events``, with the patient and study attributes
    of ``base``. Its CT Dose Length Product Total is ``dlp_total_mgycm``, by default the sum of the
    events' DLPs (0.01 mGy·cm), and its Total Number of Irradiation Events their number."""
    ds = Dataset()
    for keyword in _STUDY_KEYWORDS:
        if keyword in base:
            ds[keyword] = base[keyword]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = XRAY_DOSE_SR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop_instance_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SeriesInstanceUID = series_instance_uid
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SR", series_number, 1
    ds.SeriesDescription = "Dose Report"
    ds.ContentDate = content_date.strftime("%Y%m%d") if content_date else base.get("StudyDate", "")
    ds.ContentTime = content_time
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code(("113701", "DCM", "X-Ray Radiation Dose Report"))])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "10011"
    ds.ContentTemplateSequence = Sequence([template])
    total = round(sum(e.dlp_mgycm for e in events), 2) if dlp_total_mgycm is None else dlp_total_mgycm
    accumulated = _container("CONTAINS", ("113811", "DCM", "CT Accumulated Dose Data"), [
        _num(("113812", "DCM", "Total Number of Irradiation Events"), len(events), ("{events}", "UCUM", "events")),
        _num(("113813", "DCM", "CT Dose Length Product Total"), total, _MGYCM),
    ])
    ds.ContentSequence = Sequence([
        _code_item(("121058", "DCM", "Procedure reported"), ("77477000", "SCT", "Computed Tomography X-Ray"),
                   "HAS CONCEPT MOD"),
        accumulated,
        *(_event_item(e) for e in events),
    ])
    return ds
