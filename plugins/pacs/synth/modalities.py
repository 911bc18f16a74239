"""The realistic vocabulary: per-modality specs (SOP class, matrices, counts, procedures,
series descriptions, devices), sites, names, referring doctors and projection views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    MRImageStorage,
    UltrasoundImageStorage,
)

from pacs.synth.encode import _T_IMAGE_POSITION, _T_LATERALITY, _T_SLICE_LOCATION, _T_VIEW_POSITION

DEFAULT_MODALITIES: tuple[str, ...] = ("CT", "MR", "CR", "DX", "US", "MG")


@dataclass(frozen=True)
class _ModalitySpec:
    """How a modality's studies look: SOP class, mix weight, matrices, pixel format, counts."""

    sop_class_uid: str
    weight: float
    matrices: tuple[tuple[int, int], ...]  # (rows, columns) choices
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str
    series_range: tuple[int, int]
    instances_range: tuple[int, int]
    procedures: tuple[tuple[str, str], ...]  # (study description, body part)
    series_descriptions: tuple[str, ...]
    devices: tuple[tuple[str, str], ...]  # (manufacturer, model)
    dynamic: tuple[tuple[int, str], ...]  # per-instance elements besides SOP UID/number/pixels


_SLICE_DYNAMIC = (_T_IMAGE_POSITION, _T_SLICE_LOCATION)
_PROJECTION_DYNAMIC = (_T_VIEW_POSITION, _T_LATERALITY)

_MODALITIES: dict[str, _ModalitySpec] = {
    "CT": _ModalitySpec(
        CTImageStorage, 0.20, ((512, 512),), 1, 16, 12, "MONOCHROME2", (1, 4), (50, 300),
        (
            ("CT HEAD WO CONTRAST", "HEAD"),
            ("CT CHEST W CONTRAST", "CHEST"),
            ("CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN"),
            ("CT CHEST ABDOMEN PELVIS", "CHEST"),
            ("CT ANGIO PULMONARY", "CHEST"),
            ("CT SPINE LUMBAR", "LSPINE"),
            ("CT SINUS", "HEAD"),
        ),
        ("AXIAL 5MM", "AXIAL 1.25MM", "AXIAL 2.5MM STD", "CORONAL MPR 3MM", "SAGITTAL MPR 3MM",
         "AXIAL LUNG 1MM", "ARTERIAL PHASE", "PORTAL VENOUS PHASE"),
        (("SIEMENS", "SOMATOM Definition AS"), ("GE MEDICAL SYSTEMS", "Revolution CT"),
         ("Philips", "Ingenuity CT"), ("Canon Medical Systems", "Aquilion ONE")),
        _SLICE_DYNAMIC,
    ),
    "MR": _ModalitySpec(
        MRImageStorage, 0.12, ((256, 256), (256, 256), (256, 256), (512, 512)), 1, 16, 12,
        "MONOCHROME2", (4, 10), (20, 150),
        (
            ("MR BRAIN WO W CONTRAST", "BRAIN"),
            ("MR KNEE WO CONTRAST", "KNEE"),
            ("MR LUMBAR SPINE WO CONTRAST", "LSPINE"),
            ("MR SHOULDER WO CONTRAST", "SHOULDER"),
            ("MR PROSTATE MULTIPARAMETRIC", "PROSTATE"),
            ("MR CERVICAL SPINE WO CONTRAST", "CSPINE"),
        ),
        ("T1 SAG", "T2 AX", "FLAIR AX", "DWI AX", "ADC AX", "T1 POST AX", "T2 COR", "PD FS COR",
         "SWI AX", "T1 MPRAGE SAG", "T2 STIR SAG", "LOCALIZER"),
        (("SIEMENS", "MAGNETOM Skyra"), ("GE MEDICAL SYSTEMS", "SIGNA Premier"),
         ("Philips Medical Systems", "Ingenia 3.0T")),
        _SLICE_DYNAMIC,
    ),
    "CR": _ModalitySpec(
        ComputedRadiographyImageStorage, 0.28, ((2500, 2000), (2000, 2500), (2370, 1770)), 1, 16,
        12, "MONOCHROME2", (1, 1), (1, 3),
        (
            ("XR CHEST 2 VIEWS", "CHEST"),
            ("XR HAND 3 VIEWS", "HAND"),
            ("XR KNEE 2 VIEWS", "KNEE"),
            ("XR ANKLE 3 VIEWS", "ANKLE"),
            ("XR PELVIS 1 VIEW", "PELVIS"),
            ("XR SKULL 2 VIEWS", "SKULL"),
        ),
        ("CR VIEWS",),
        (("FUJIFILM Corporation", "FCR PROFECT CS"), ("Carestream Health", "DirectView CR 975"),
         ("Agfa", "CR 30-X")),
        _PROJECTION_DYNAMIC,
    ),
    "DX": _ModalitySpec(
        DigitalXRayImageStorageForPresentation, 0.17, ((3000, 2800), (2800, 3000)), 1, 16, 14,
        "MONOCHROME2", (1, 1), (1, 4),
        (
            ("XR CHEST PA LATERAL", "CHEST"),
            ("XR LUMBAR SPINE 3 VIEWS", "LSPINE"),
            ("XR SHOULDER 2 VIEWS", "SHOULDER"),
            ("XR ABDOMEN 1 VIEW", "ABDOMEN"),
            ("XR FOOT 3 VIEWS", "FOOT"),
        ),
        ("DX VIEWS",),
        (("Philips Medical Systems", "DigitalDiagnost C90"), ("Carestream Health", "DRX-Evolution"),
         ("SIEMENS", "Ysio Max")),
        _PROJECTION_DYNAMIC,
    ),
    "US": _ModalitySpec(
        UltrasoundImageStorage, 0.15, ((480, 640),), 3, 8, 8, "RGB", (1, 1), (5, 40),
        (
            ("US ABDOMEN COMPLETE", "ABDOMEN"),
            ("US THYROID", "NECK"),
            ("US PELVIS TRANSABDOMINAL", "PELVIS"),
            ("US RENAL", "KIDNEY"),
            ("US OB 2ND TRIMESTER", "ABDOMEN"),
            ("US CAROTID DOPPLER", "NECK"),
        ),
        ("US IMAGES",),
        (("GE Healthcare", "LOGIQ E10"), ("Philips", "EPIQ 7G"), ("SIEMENS", "ACUSON Sequoia")),
        (),
    ),
    "MG": _ModalitySpec(
        DigitalMammographyXRayImageStorageForPresentation, 0.08, ((4096, 3328),), 1, 16, 14,
        "MONOCHROME2", (1, 1), (4, 4),
        (("MG SCREENING BILATERAL", "BREAST"), ("MG DIAGNOSTIC BILATERAL", "BREAST")),
        ("MAMMO VIEWS",),
        (("HOLOGIC, Inc.", "Selenia Dimensions"), ("SIEMENS", "MAMMOMAT Revelation"),
         ("GE MEDICAL SYSTEMS", "Senographe Pristina")),
        _PROJECTION_DYNAMIC,
    ),
}

_SITES: tuple[tuple[str, str], ...] = (
    ("SYNTH GENERAL HOSPITAL", "GEN"),
    ("SYNTH NORTH CLINIC", "NOR"),
    ("SYNTH RIVERSIDE MEDICAL CENTER", "RIV"),
    ("SYNTH CHILDRENS HOSPITAL", "KID"),
)
_GIVEN_F = ("ALICE", "BEATRICE", "CAROL", "DIANA", "EVE", "FIONA", "GRACE", "HANNAH", "IRIS",
            "JULIA", "KATE", "LAURA", "MARTA", "NORA", "OLIVIA", "PAULA", "RUTH", "SARA")
_GIVEN_M = ("ADAM", "BOB", "CARL", "DAVID", "ERIC", "FRANK", "GEORGE", "HENRY", "IVAN", "JACK",
            "KARL", "LEO", "MAX", "NOAH", "OSCAR", "PETER", "ROBERT", "SAM")
_DOCTORS = ("HOUSE", "GREY", "WATSON", "QUINN", "STRANGE", "ZHIVAGO", "DOLITTLE", "JEKYLL")
_STUDIES_PER_PATIENT_WEIGHTS = (34, 24, 16, 11, 8, 7)  # for 1..6 studies
_WEEKEND_FACTOR = 0.3
_YEARLY_FACTORS = (1.08, 1.08, 1.06, 1.02, 1.0, 0.96, 0.88, 0.82, 0.98, 1.04, 1.06, 1.0)
"""Studies per day by month, January first: busier winters, quieter summer holidays."""
_MG_VIEWS = (("CC", "R"), ("CC", "L"), ("MLO", "R"), ("MLO", "L"))
_XR_VIEWS = ("PA", "LAT", "AP", "LL", "RL")


def _check_modalities(modalities: Sequence[str]) -> list[str]:
    """``modalities`` upper-cased; ValueError if empty or any is unknown."""
    mods = [m.upper() for m in modalities]
    unknown = sorted(set(mods) - set(_MODALITIES))
    if unknown or not mods:
        raise ValueError(f"unknown or no modalities {unknown}; choose from {sorted(_MODALITIES)}")
    return mods
