"""The realistic hospital archive: :func:`generate_archive` (patients, studies, series, optional
duplicates and bad set) in a modality-drop-like tree ``root/<station>/<YYYYMMDD>/<hex>.dcm``.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from pacs.synth.bad import _copy_duplicate, generate_bad_files
from pacs.synth.builder import _Builder, _day_sampler
from pacs.synth.modalities import (
    _MODALITIES,
    _STUDIES_PER_PATIENT_WEIGHTS,
    DEFAULT_MODALITIES,
    _check_modalities,
)
from pacs.synth.model import SynthFile, SynthResult, _Study

log = logging.getLogger(__name__)


def _scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


def generate_archive(
    root: str | Path,
    *,
    seed: int = 0,
    patients: int = 50,
    start: datetime.date = date(2021, 1, 1),
    end: datetime.date = date(2025, 12, 31),
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    size_scale: float = 1.0,
    count_scale: float = 1.0,
    growth: float = 0.08,
    bad: bool = False,
    duplicates: int = 0,
    dose_reports: bool = False,
) -> SynthResult:
    """Write a synthetic hospital archive under ``root`` and return what was written.

    ``patients`` patients get 1-6 studies each on days drawn from [start, end] with a yearly
    ``growth`` trend, fewer studies at weekends and a yearly rhythm; each study has one modality
    (a realistic mix of ``modalities``; mammography only for women). Each file's mtime is when
    it reached the archive: mostly minutes after its acquisition, some hours, days or weeks late
    (:mod:`pacs.synth.arrival`), never after the file was written. ``size_scale`` scales the image matrix in
    each dimension, ``count_scale`` the number of instances per series (at least 1).
    ``duplicates`` adds that many byte-identical copies of good files; ``bad`` adds the bad
    set of :func:`generate_bad_files` under ``root/incoming-bad`` (with the ``unsafe_path``
    link target in ``<root>-outside`` next to ``root``). ``dose_reports`` adds one CT Radiation
    Dose SR per CT study (:mod:`pacs.synth.dose`: its own series, modality SR, events consistent
    with the study's images and totals with its events); off by default, so the archive holds
    images only (the demo turns it on). The images are the same either way.
    """
    mods = _check_modalities(modalities)
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if patients < 0 or duplicates < 0 or size_scale <= 0 or count_scale <= 0:
        raise ValueError("patients and duplicates must be >= 0, scales > 0")
    root_path = Path(root).absolute()
    root_path.mkdir(parents=True, exist_ok=True)
    b = _Builder(root_path, seed, "archive")
    log.info("synth archive: %d patients, %s..%s, modalities %s, seed %d", patients, start, end,
             ",".join(mods), seed)
    _write_patients(b, patients, mods, start=start, end=end, growth=growth, size_scale=size_scale,
                    count_scale=count_scale, dose_reports=dose_reports)
    good = [f for f in b.files if f.modality != "SR"]  # duplicates and the bad set refer to images
    if duplicates:
        _write_duplicates(b, good, duplicates)
    result = SynthResult(root=root_path, files=b.files)
    if bad:
        outside = root_path.parent / (root_path.name + "-outside")
        reference = SynthResult(root=root_path, files=good)
        result.files.extend(generate_bad_files(root_path / "incoming-bad", seed=seed,
                                               reference=reference, outside=outside))
    log.info("synth archive: %s", json.dumps({**result.summary(), "counts": result.counts()}))
    return result


def _write_patients(b: _Builder, patients: int, mods: list[str], *, start: date, end: date,
                    growth: float, size_scale: float, count_scale: float, dose_reports: bool = False) -> None:
    """``patients`` patients with 1-6 studies each, one modality per study (MG only for women)."""
    rng = b.rng
    days, cum = _day_sampler(start, end, growth)
    weights = [_MODALITIES[m].weight for m in mods]
    non_mg = [m for m in mods if m != "MG"]
    non_mg_weights = [_MODALITIES[m].weight for m in non_mg]
    for _ in range(patients):
        sex = "F" if mods == ["MG"] else None
        patient = b.patient(birth_before=start, sex=sex)
        n_studies = rng.choices(range(1, 7), weights=_STUDIES_PER_PATIENT_WEIGHTS)[0]
        study_days = sorted(rng.choices(days, cum_weights=cum, k=n_studies))
        for s_index, day in enumerate(study_days):
            modality = rng.choices(mods, weights=weights)[0]
            if modality == "MG" and patient.sex != "F" and non_mg:
                modality = rng.choices(non_mg, weights=non_mg_weights)[0]
            study = b.study(patient, modality, day, s_index)
            _write_study(b, study, size_scale=size_scale, count_scale=count_scale, dose_reports=dose_reports)


def _write_study(b: _Builder, study: _Study, *, size_scale: float, count_scale: float,
                 dose_reports: bool = False) -> None:
    rng = b.rng
    spec = _MODALITIES[study.modality]
    n_series = rng.randint(*spec.series_range)
    descriptions = (rng.sample(spec.series_descriptions, n_series)
                    if n_series <= len(spec.series_descriptions)
                    else [rng.choice(spec.series_descriptions) for _ in range(n_series)])
    base_rows, base_cols = rng.choice(spec.matrices)
    for k in range(n_series):
        if study.modality == "MR":
            base_rows, base_cols = rng.choice(spec.matrices)
        rows = max(1, round(base_rows * size_scale))
        cols = max(1, round(base_cols * size_scale))
        instances = _scaled(rng.randint(*spec.instances_range), count_scale)
        implicit = rng.random() < 0.1
        b.write_series(study, number=k + 1, description=descriptions[k], instances=instances,
                       rows=rows, columns=cols, implicit=implicit)
    if dose_reports and study.modality == "CT":
        b.write_dose_report(study, after_series=n_series)


def _write_duplicates(b: _Builder, good: list[SynthFile], duplicates: int) -> None:
    """``duplicates`` byte-identical copies of good files, next to their originals."""
    if not good:
        log.warning("synth archive: no good files to duplicate")
        return
    rng = b.rng
    picks = (rng.sample(good, duplicates) if duplicates <= len(good)
             else [rng.choice(good) for _ in range(duplicates)])
    for j, original in enumerate(picks):
        b.files.append(_copy_duplicate(original, Path(original.path).parent / b.file_name(), j))
