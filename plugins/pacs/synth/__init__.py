"""Synthetic DICOM archives: realistic hospital data for the demo, the tests and the benchmarks.

Every file is a real DICOM Part-10 file that pydicom can read, and deterministic given a seed.

- :mod:`pacs.synth.archive`     :func:`generate_archive`: patients, studies and series of a hospital
- :mod:`pacs.synth.bad`         :func:`generate_bad_files` (every quarantine reason) and duplicates
- :mod:`pacs.synth.bulk`        :func:`generate_ct_slices`, :func:`generate_small_files`: benchmark sets
- :mod:`pacs.synth.builder`     one run's state: seeded RNG and UIDs, sites, patients, studies, series
- :mod:`pacs.synth.series`      the per-series element template, its fast writer, per-instance values
- :mod:`pacs.synth.arrival`     when each file reached the archive (its mtime: intake's ``received_at``)
- :mod:`pacs.synth.pixels`      seeded pixel content
- :mod:`pacs.synth.modalities`  the vocabulary: modality specs, sites, names, views
- :mod:`pacs.synth.acquisition` realistic acquisition parameters per modality (kVp, mAs, CTDIvol, TR/TE, ...)
- :mod:`pacs.synth.dose`        CT Radiation Dose SRs (TID 10011) whose events and totals agree
- :mod:`pacs.synth.encode`      element/file byte encoding, lenient pydicom, :func:`element_value_span`
- :mod:`pacs.synth.model`       :class:`SynthFile`, :class:`SynthResult`, file kinds, patient/study records
- :mod:`pacs.cli.synth`         the command line (``pacs synth ...`` or ``python -m pacs.synth ...``)
"""

from __future__ import annotations

from collections.abc import Sequence

from pacs.synth.archive import generate_archive
from pacs.synth.bad import BAD_KINDS, BAD_MTIME, LATER_BY, generate_bad_files
from pacs.synth.builder import UID_PREFIX
from pacs.synth.bulk import generate_ct_slices, generate_small_files
from pacs.synth.encode import element_value_span
from pacs.synth.modalities import DEFAULT_MODALITIES
from pacs.synth.model import KIND_DUPLICATE, KIND_GOOD, SynthFile, SynthResult
from pacs.synth.series import IMPLEMENTATION_VERSION_NAME

__all__ = [
    "BAD_KINDS",
    "BAD_MTIME",
    "DEFAULT_MODALITIES",
    "IMPLEMENTATION_VERSION_NAME",
    "KIND_DUPLICATE",
    "KIND_GOOD",
    "LATER_BY",
    "UID_PREFIX",
    "SynthFile",
    "SynthResult",
    "element_value_span",
    "generate_archive",
    "generate_bad_files",
    "generate_ct_slices",
    "generate_small_files",
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line, :func:`pacs.cli.synth.main` (imported here lazily: it imports this package)."""
    from pacs.cli.synth import main as cli_main

    return cli_main(argv)
