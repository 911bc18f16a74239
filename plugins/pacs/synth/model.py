"""What a generation run writes and works with: the public :class:`SynthFile` and
:class:`SynthResult`, file kinds, and the internal patient/study records.

File times: a good file's mtime is when it reached the archive, after its study's acquisition
(:mod:`pacs.synth.arrival`); every duplicate or bad file that refers to an earlier good file gets
a later mtime than that file ("first received wins", see :mod:`pacs.synth.bad`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

KIND_GOOD = "good"
KIND_DUPLICATE = "duplicate"


@dataclass
class SynthFile:
    """One file written by the generator and what it was written with."""

    path: str
    kind: str
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    patient_id: str | None
    modality: str | None
    study_date: str | None
    size_bytes: int


@dataclass
class SynthResult:
    """The files written under ``root`` (good ones and, if asked for, duplicates and bad ones)."""

    root: Path
    files: list[SynthFile] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of files per kind."""
        out: dict[str, int] = {}
        for f in self.files:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def good(self) -> list[SynthFile]:
        """The good files (kind ``"good"``)."""
        return [f for f in self.files if f.kind == KIND_GOOD]

    def summary(self) -> dict[str, Any]:
        """Patients, studies, series, images and bytes of the good files, and images per modality."""
        good = self.good()
        by_modality: dict[str, int] = {}
        for f in good:
            key = f.modality or ""
            by_modality[key] = by_modality.get(key, 0) + 1
        return {
            "patients": len({f.patient_id for f in good}),
            "studies": len({f.study_instance_uid for f in good}),
            "series": len({f.series_instance_uid for f in good}),
            "images": len(good),
            "bytes": sum(f.size_bytes for f in good),
            "by_modality": dict(sorted(by_modality.items())),
        }

    def write_manifest(self, path: str | Path) -> None:
        """Write a JSON manifest: root, counts, summary and all fields of every file."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "root": str(self.root),
            "counts": self.counts(),
            "summary": self.summary(),
            "files": [asdict(f) for f in self.files],
        }
        target.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


@dataclass
class _Patient:
    """A synthetic patient (``site``: index into the run's sites)."""

    patient_id: str
    name: str
    birth_date: date
    sex: str
    site: int


@dataclass
class _Study:
    """A study of one modality at one station, with what its series' headers need."""

    patient: _Patient
    uid: str
    study_date: date
    time_s: int
    modality: str
    accession: str
    study_id: str
    description: str
    body_part: str
    institution: str
    station: str
    manufacturer: str
    model: str
    referring: str
    laterality: str
    delay_s: int = 0
    """Seconds between the study's acquisition and its sending (:func:`pacs.synth.arrival.study_delay`)."""
