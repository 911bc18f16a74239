"""The state of one generation run (:class:`_Builder`): seeded RNG and UIDs, unique ids and file
names, sites and their stations, patients, studies and the series writer, plus progress logging
and the study-day sampler.

Everything is deterministic given a seed: UIDs are derived from the seed with
:func:`pydicom.uid.generate_uid` (``entropy_srcs``), structure from :class:`random.Random`,
arrival times (file mtimes, :mod:`pacs.synth.arrival`) from a second one and pixel content from
:func:`numpy.random.default_rng`. The clock only caps arrival times: no file arrives after it
was written.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import random
import time
import zlib
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from pacs.synth.acquisition import study_dose_rng
from pacs.synth.arrival import LAG_S, arrival_time, study_delay
from pacs.synth.dose import ct_dose_report, ct_events, study_base
from pacs.synth.encode import _PIXEL_DATA_TAG, _T_CONTENT_TIME, _T_INSTANCE_NUMBER, _T_SOP_INSTANCE, _fmt_time
from pacs.synth.modalities import (
    _DOCTORS,
    _GIVEN_F,
    _GIVEN_M,
    _MODALITIES,
    _SITES,
    _WEEKEND_FACTOR,
    _YEARLY_FACTORS,
)
from pacs.synth.model import KIND_GOOD, SynthFile, _Patient, _Study
from pacs.synth.pixels import _PixelSource
from pacs.synth.series import _dynamic_values_fn, _DynamicFn, _series_template, _SeriesWriter

log = logging.getLogger(__name__)

UID_PREFIX = "1.2.826.0.1.3680043.8.498."
"""Root of every generated UID (pydicom's organisational root)."""

_PROGRESS_EVERY_S = 5.0
DOSE_SERIES_NUMBER = 997
"""The series number of a CT study's dose report (a series of its own, as scanners send it)."""


class _Progress:
    """Logs a counter line every few seconds during long runs."""

    def __init__(self, label: str, total: int | None = None) -> None:
        self.label = label
        self.total = total
        self.count = 0
        self.start = time.monotonic()
        self.next_at = self.start + _PROGRESS_EVERY_S

    def tick(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now >= self.next_at:
            self.next_at = now + _PROGRESS_EVERY_S
            rate = self.count / max(now - self.start, 1e-9)
            of = f"/{self.total}" if self.total is not None else ""
            log.info("synth %s: %d%s files written (%.0f files/s)", self.label, self.count, of, rate)



def _day_sampler(start: date, end: date, growth: float) -> tuple[list[date], list[float]]:
    """Days of [start, end] and cumulative weights: yearly growth, fewer studies at weekends and
    a yearly rhythm (busier winters, quieter summer holidays and end-of-year weeks)."""
    days: list[date] = []
    cum: list[float] = []
    total = 0.0
    n = (end - start).days + 1
    for i in range(n):
        d = start + datetime.timedelta(days=i)
        w = (1.0 + growth) ** (i / 365.25) * _YEARLY_FACTORS[d.month - 1]
        if (d.month, d.day) >= (12, 24) or (d.month, d.day) == (1, 1):
            w *= 0.5
        if d.weekday() >= 5:
            w *= _WEEKEND_FACTOR
        total += w
        days.append(d)
        cum.append(total)
    return days, cum


class _Builder:
    """Shared state of one generation run: RNG, sites/stations, directories, written files."""

    def __init__(self, root: Path, seed: int, namespace: str, *, total: int | None = None) -> None:
        self.root = root
        self.seed = seed
        self.namespace = namespace
        self.rng = random.Random(f"pacs.synth:{namespace}:{seed}")
        self.arrival_rng = random.Random(f"pacs.synth:{namespace}:{seed}:arrival")
        self.clock = time.time()
        self.files: list[SynthFile] = []
        self.progress = _Progress(namespace, total)
        self._dirs: set[Path] = set()
        self._names: set[str] = set()
        self._ids: set[str] = set()
        self._series_counter = 0
        self.sites = [_SITES[i] for i in sorted(self.rng.sample(range(4), self.rng.choice((3, 4))))]
        self._stations: dict[tuple[int, str], list[tuple[str, str, str]]] = {}

    def uid(self, *parts: object) -> str:
        src = "|".join((self.namespace, str(self.seed), *(str(p) for p in parts)))
        return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=[src]))

    def unique_id(self, prefix: str, digits: int) -> str:
        while True:
            value = f"{prefix}{self.rng.randrange(10 ** (digits - 1), 10 ** digits)}"
            if value not in self._ids:
                self._ids.add(value)
                return value

    def file_name(self, suffix: str = ".dcm") -> str:
        while True:
            name = f"{self.rng.getrandbits(64):016x}{suffix}"
            if name not in self._names:
                self._names.add(name)
                return name

    def directory(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        if path not in self._dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path)
        return path

    def station(self, site: int, modality: str) -> tuple[str, str, str]:
        """(station name, manufacturer, model) of a site's scanner for a modality."""
        key = (site, modality)
        if key not in self._stations:
            spec = _MODALITIES[modality]
            code = self.sites[site][1]
            n = self.rng.choice((1, 1, 2))
            self._stations[key] = [
                (f"{code}_{modality}{i + 1:02d}", *self.rng.choice(spec.devices)) for i in range(n)
            ]
        return self.rng.choice(self._stations[key])

    def patient(self, *, birth_before: date, sex: str | None = None) -> _Patient:
        rng = self.rng
        sex = sex or rng.choice("FM")
        given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
        lo = date(1930, 1, 1).toordinal()
        hi = max(lo, birth_before.toordinal() - 365)
        birth = date.fromordinal(rng.randint(lo, hi))
        return _Patient(self.unique_id("SYN", 7), f"SYNTH^{given}", birth, sex,
                        rng.randrange(len(self.sites)))

    def study(self, patient: _Patient, modality: str, study_date: date, index: int) -> _Study:
        rng = self.rng
        spec = _MODALITIES[modality]
        description, body_part = rng.choice(spec.procedures)
        weekend = study_date.weekday() >= 5
        hour = rng.randint(8, 15) if weekend else rng.choice((7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18))
        site = patient.site if rng.random() < 0.85 else rng.randrange(len(self.sites))
        station, manufacturer, model = self.station(site, modality)
        if body_part in ("BREAST",):
            laterality = "B"
        elif body_part in ("HAND", "KNEE", "ANKLE", "SHOULDER", "FOOT"):
            laterality = rng.choice("LR")
        else:
            laterality = "U"
        return _Study(
            patient=patient,
            uid=self.uid("study", patient.patient_id, index),
            study_date=study_date,
            time_s=hour * 3600 + rng.randrange(3600),
            modality=modality,
            accession=self.unique_id("A", 9),
            study_id=str(rng.randint(1, 99999)),
            description=description,
            body_part=body_part,
            institution=self.sites[site][0],
            station=station,
            manufacturer=manufacturer,
            model=model,
            referring=f"{rng.choice(_DOCTORS)}^{rng.choice(_GIVEN_F + _GIVEN_M)}^^^DR",
            laterality=laterality,
            delay_s=study_delay(self.arrival_rng),
        )

    # -- series ------------------------------------------------------------------------------

    def write_series(self, study: _Study, *, number: int, description: str, instances: int,
                     rows: int, columns: int, implicit: bool) -> None:
        """Write one series of ``instances`` files of ``study``."""
        writer, pixels, dynamic_fn = self.prepare_series(
            study, number=number, description=description, rows=rows, columns=columns,
            implicit=implicit,
        )
        directory = self.directory(study.station, study.study_date.strftime("%Y%m%d"))
        series_uid = str(writer.template["SeriesInstanceUID"])
        study_date = study.study_date.strftime("%Y%m%d")
        lag = self.arrival_rng.randint(*LAG_S)
        for i in range(instances):
            sop_uid = self.uid("sop", series_uid, i)
            values = dynamic_fn(i)
            values[_T_SOP_INSTANCE[0]] = sop_uid.encode("ascii")
            values[_T_INSTANCE_NUMBER[0]] = str(i + 1).encode("ascii")
            content_s = study.time_s + 60 * number + 2 * i
            values[_T_CONTENT_TIME[0]] = _fmt_time(content_s).encode("ascii")
            values[_PIXEL_DATA_TAG] = pixels.instance(i)
            parts = writer.encode(values)
            path = directory / self.file_name()
            with open(path, "wb") as fh:
                fh.writelines(parts)
            received = arrival_time(study.study_date, content_s, study.delay_s, lag, clock=self.clock)
            os.utime(path, (received, received))
            self.files.append(SynthFile(
                path=str(path), kind=KIND_GOOD, sop_instance_uid=sop_uid,
                study_instance_uid=study.uid, series_instance_uid=series_uid,
                patient_id=study.patient.patient_id, modality=study.modality,
                study_date=study_date, size_bytes=sum(len(p) for p in parts),
            ))
            self.progress.tick()

    def write_dose_report(self, study: _Study, *, after_series: int) -> None:
        """Write the CT Radiation Dose SR of ``study`` (:mod:`pacs.synth.dose`), received after
        its images. Its values, UIDs, name and time come from the study alone, never from the
        run's generators: with or without dose reports, a seed gives the same images."""
        events = ct_events(study_dose_rng(study), study.description, lambda i: self.uid("event", study.uid, i))
        series_uid = self.uid("series", study.uid, DOSE_SERIES_NUMBER)
        sop_uid = self.uid("sop", series_uid, 0)
        content_s = study.time_s + 60 * (after_series + 1)
        ds = ct_dose_report(study_base(study), events, sop_instance_uid=sop_uid, series_instance_uid=series_uid,
                            content_date=study.study_date, content_time=_fmt_time(content_s),
                            series_number=DOSE_SERIES_NUMBER)
        name = hashlib.sha256(sop_uid.encode("ascii")).hexdigest()[:16] + ".dcm"
        self._names.add(name)
        path = self.directory(study.station, study.study_date.strftime("%Y%m%d")) / name
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        received = arrival_time(study.study_date, content_s, study.delay_s, LAG_S[1], clock=self.clock)
        os.utime(path, (received, received))
        self.files.append(SynthFile(
            path=str(path), kind=KIND_GOOD, sop_instance_uid=sop_uid, study_instance_uid=study.uid,
            series_instance_uid=series_uid, patient_id=study.patient.patient_id, modality="SR",
            study_date=study.study_date.strftime("%Y%m%d"), size_bytes=path.stat().st_size,
        ))
        self.progress.tick()

    def series_writer(self, study: _Study, *, number: int, description: str, rows: int,
                      columns: int, implicit: bool) -> tuple[_SeriesWriter, _DynamicFn]:
        """The writer and per-instance value function of a series (no side effects)."""
        spec = _MODALITIES[study.modality]
        series_uid = self.uid("series", study.uid, number)
        for_uid = self.uid("frame", study.uid, number)
        template = _series_template(study, spec, series_uid=series_uid, for_uid=for_uid,
                                    number=number, description=description, rows=rows,
                                    columns=columns, implicit=implicit,
                                    series_time_s=study.time_s + 60 * number)
        writer = _SeriesWriter(template, (_T_SOP_INSTANCE, _T_CONTENT_TIME, _T_INSTANCE_NUMBER,
                                          *spec.dynamic), implicit=implicit)
        return writer, _dynamic_values_fn(study, template, description)

    def prepare_series(self, study: _Study, *, number: int, description: str, rows: int,
                       columns: int, implicit: bool) -> tuple[_SeriesWriter, _PixelSource, _DynamicFn]:
        """The writer, pixel source and per-instance value function of a new series."""
        self._series_counter += 1
        spec = _MODALITIES[study.modality]
        writer, dynamic_fn = self.series_writer(study, number=number, description=description,
                                                rows=rows, columns=columns, implicit=implicit)
        pixel_rng = np.random.default_rng(
            [self.seed % 2**63, zlib.crc32(self.namespace.encode("ascii")), self._series_counter]
        )
        pixels = _PixelSource(pixel_rng, rows, columns, spec.samples, spec.bits_allocated,
                              spec.bits_stored)
        return writer, pixels, dynamic_fn
