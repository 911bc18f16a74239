"""Realistic acquisition parameters per modality for the synthetic series' headers.

Values come from their own seeded generators (one per study for CT, whose images and dose
report must agree; one per series otherwise), never from the run's structural RNG, so that
adding a parameter never changes which patients, studies and series a seed gives.

- CT: kVp 100-140 by protocol, CTDIvol from the study's dose report (:mod:`pacs.synth.dose`: the
  first spiral acquisition), mAs and mA from it (about 7.5 mGy per 100 mAs for the body phantom,
  16 for the head), the vendor's kernels, the protocol name;
- MR: sequence type, variant, TR, TE, TI and flip angle by series (T1, T2, FLAIR, DWI, MPRAGE, ...);
- CR/DX/MG: kVp, exposure in µAs, source-to-detector distance, body part thickness, entrance
  dose by body part; for MG the mean glandular dose (OrganDose, dGy);
- US: the transducer and its frequency by body part, one 2D tissue region in cm (and a spectral
  Doppler region, seconds by cm/s, for a carotid Doppler study).
"""

from __future__ import annotations

import random
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pacs.synth.dose import ct_events, ct_protocol
from pacs.synth.model import _Study

_KERNELS = {  # manufacturer -> (soft tissue, lung, head)
    "SIEMENS": ("Br40", "Bl57", "Hr38"),
    "GE MEDICAL SYSTEMS": ("STANDARD", "LUNG", "SOFT"),
    "Philips": ("B", "L", "UB"),
    "Canon Medical Systems": ("FC08", "FC51", "FC26"),
}
_ROTATION_S = 0.5


def series_rng(kind: str, series_uid: str) -> random.Random:
    return random.Random(f"pacs.synth:acquisition:{kind}:{series_uid}")


def study_dose_rng(study: _Study) -> random.Random:
    """The generator of a CT study's dose report (its images' CTDIvol comes from the same draw)."""
    return random.Random(f"pacs.synth:dose:{study.uid}")


def ct_values(study: _Study, description: str) -> dict[str, Any]:
    """KVP, XRayTubeCurrent, Exposure, CTDIvol, ConvolutionKernel and ProtocolName of a CT series."""
    events = ct_events(study_dose_rng(study), study.description, lambda i: "")
    ctdivol = next(e.ctdivol_mgy for e in events if e.acquisition_type[2] != "Constant Angle Acquisition")
    head = events[0].head_phantom
    protocol = ct_protocol(study.description)
    rng = random.Random(f"pacs.synth:acquisition:ct:{study.uid}")
    kvp = 100 if protocol in ("PE ANGIO", "SINUS LOW DOSE") else rng.choice((120, 120, 120, 140))
    mas = ctdivol / (0.16 if head else 0.075) * (120 / kvp) ** 2.5
    soft, lung, head_kernel = _KERNELS.get(study.manufacturer, ("STANDARD", "LUNG", "STANDARD"))
    kernel = lung if "LUNG" in description else head_kernel if head else soft
    return {"KVP": str(kvp), "XRayTubeCurrent": round(mas / _ROTATION_S), "Exposure": round(mas),
            "CTDIvol": ctdivol, "ConvolutionKernel": kernel, "ProtocolName": protocol}


# series description prefix -> (ScanningSequence, SequenceVariant, TR range, TE range, TI range or None, flip angle)
_MR_SEQUENCES: tuple[tuple[str, tuple[str, str, tuple[int, int], tuple[float, float], tuple[int, int] | None,
                                       tuple[int, int]]], ...] = (
    ("T1 MPRAGE", ("GR\\IR", "SK\\SP\\MP", (1900, 2300), (2.2, 3.0), (900, 1000), (8, 9))),
    ("T2 STIR", ("SE\\IR", "SK\\SP\\MP", (3500, 5000), (40, 60), (150, 220), (90, 90))),
    ("FLAIR", ("SE\\IR", "SK\\SP\\MP", (8000, 10000), (100, 130), (2400, 2600), (90, 90))),
    ("DWI", ("EP", "SK\\SP", (4000, 6500), (60, 90), None, (90, 90))),
    ("ADC", ("EP", "SK\\SP", (4000, 6500), (60, 90), None, (90, 90))),
    ("SWI", ("GR", "SP\\OSP", (27, 40), (20, 25), None, (15, 15))),
    ("LOCALIZER", ("GR", "SP", (7, 9), (3.5, 4.5), None, (20, 20))),
    ("PD FS", ("SE", "SK\\SP\\OSP", (2500, 3500), (25, 40), None, (90, 90))),
    ("T2", ("SE", "SK\\SP\\OSP", (3000, 5000), (80, 110), None, (90, 90))),
    ("T1", ("SE", "SK\\SP", (450, 700), (8, 15), None, (90, 90))),
)


def mr_values(series_uid: str, description: str) -> dict[str, Any]:
    """ScanningSequence, SequenceVariant, RepetitionTime, EchoTime, InversionTime, FlipAngle."""
    rng = series_rng("mr", series_uid)
    spec = next((v for prefix, v in _MR_SEQUENCES if description.startswith(prefix)), _MR_SEQUENCES[-1][1])
    sequence, variant, tr, te, ti, flip = spec
    out: dict[str, Any] = {"ScanningSequence": sequence, "SequenceVariant": variant,
                           "RepetitionTime": str(rng.randint(*tr)), "EchoTime": f"{rng.uniform(*te):.2f}",
                           "FlipAngle": str(rng.randint(*flip))}
    if ti is not None:
        out["InversionTime"] = str(rng.randint(*ti))
    return out


# body part -> (kVp, mAs, source-to-detector mm, thickness mm, entrance dose mGy)
_PROJECTION: dict[str, tuple[tuple[int, int], tuple[float, float], tuple[int, int], tuple[int, int],
                             tuple[float, float]]] = {
    "CHEST": ((110, 125), (1.5, 4.0), (1800, 1830), (200, 280), (0.08, 0.25)),
    "HAND": ((50, 60), (2.0, 4.0), (1000, 1100), (20, 40), (0.05, 0.15)),
    "KNEE": ((60, 70), (5.0, 10.0), (1000, 1150), (90, 130), (0.2, 0.5)),
    "ANKLE": ((55, 65), (3.0, 6.0), (1000, 1100), (60, 90), (0.1, 0.3)),
    "FOOT": ((55, 65), (3.0, 6.0), (1000, 1100), (50, 80), (0.1, 0.3)),
    "PELVIS": ((75, 85), (15.0, 35.0), (1100, 1150), (180, 250), (2.0, 4.0)),
    "SKULL": ((70, 80), (15.0, 25.0), (1000, 1150), (150, 190), (1.5, 3.0)),
    "LSPINE": ((80, 95), (20.0, 60.0), (1100, 1150), (200, 280), (3.0, 8.0)),
    "SHOULDER": ((65, 75), (8.0, 15.0), (1000, 1150), (120, 160), (0.5, 1.2)),
    "ABDOMEN": ((75, 85), (15.0, 35.0), (1100, 1150), (180, 260), (2.0, 4.0)),
    "BREAST": ((26, 32), (50.0, 150.0), (650, 700), (30, 75), (4.0, 10.0)),
}


def projection_values(series_uid: str, study: _Study) -> dict[str, Any]:
    """KVP, ExposureInuAs, DistanceSourceToDetector, BodyPartThickness, EntranceDoseInmGy (and
    for MG, OrganDose: the mean glandular dose in dGy)."""
    rng = series_rng("projection", series_uid)
    kvp, mas, sid, thickness, esd = _PROJECTION.get(study.body_part, _PROJECTION["CHEST"])
    out: dict[str, Any] = {"KVP": str(rng.randint(*kvp)), "ExposureInuAs": round(rng.uniform(*mas) * 1000),
                           "DistanceSourceToDetector": str(rng.randint(*sid)),
                           "BodyPartThickness": str(rng.randint(*thickness)),
                           "EntranceDoseInmGy": f"{rng.uniform(*esd):.3f}"}
    if study.modality == "MG":
        out["OrganDose"] = f"{rng.uniform(0.010, 0.025):.4f}"
    return out


def _region(spatial: int, data_type: int, box: tuple[int, int, int, int], units: tuple[int, int],
            delta: tuple[float, float], frequency_khz: int) -> Dataset:
    item = Dataset()
    item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = spatial, data_type, 0
    item.RegionLocationMinX0, item.RegionLocationMinY0, item.RegionLocationMaxX1, item.RegionLocationMaxY1 = box
    item.PhysicalUnitsXDirection, item.PhysicalUnitsYDirection = units
    item.PhysicalDeltaX, item.PhysicalDeltaY = delta
    item.TransducerFrequency = frequency_khz
    return item


def us_values(series_uid: str, study: _Study, rows: int, columns: int) -> dict[str, Any]:
    """TransducerType and the Sequence of Ultrasound Regions (2D tissue in cm; a carotid Doppler
    study adds a spectral Doppler region in seconds by cm/s)."""
    rng = series_rng("us", series_uid)
    linear = study.body_part == "NECK"
    frequency = rng.choice((7500, 9000, 10000, 12000)) if linear else rng.choice((2500, 3500, 5000))
    depth_cm = rng.uniform(3.0, 5.0) if linear else rng.uniform(12.0, 20.0)
    doppler = "DOPPLER" in study.description
    image_rows = rows // 2 if doppler else rows
    delta = round(depth_cm / max(image_rows, 1), 6)
    regions = [_region(1, 1, (0, 0, max(columns - 1, 0), max(image_rows - 1, 0)), (3, 3), (delta, delta),
                       frequency)]
    if doppler:
        regions.append(_region(3, 3, (0, image_rows, max(columns - 1, 0), max(rows - 1, 0)), (4, 7),
                               (round(4.0 / max(columns, 1), 6), round(200.0 / max(rows - image_rows, 1), 6)),
                               frequency))
    return {"TransducerType": "LINEAR" if linear else "CURVED LINEAR",
            "SequenceOfUltrasoundRegions": Sequence(regions)}
