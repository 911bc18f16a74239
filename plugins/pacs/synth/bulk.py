"""Benchmark sets: :func:`generate_ct_slices` (large CT slices) and :func:`generate_small_files`
(about 12 KB MR images), both grouped into a few patients, studies and series by :func:`_bulk`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import date
from pathlib import Path

from pacs.synth.builder import _Builder, _day_sampler
from pacs.synth.encode import _PIXEL_DATA_TAG, _T_CONTENT_TIME, _T_INSTANCE_NUMBER, _T_SOP_INSTANCE
from pacs.synth.modalities import _MODALITIES
from pacs.synth.model import SynthResult, _Patient, _Study

log = logging.getLogger(__name__)


def _bulk(root: str | Path, n: int, *, seed: int, namespace: str, modality: str,
          per_series: int,
          matrix: Callable[[_Builder, _Study, int, str], tuple[int, int]]) -> SynthResult:
    """``n`` good files in series of ``per_series``, grouped into a few studies and patients.

    ``matrix(builder, study, number, description)`` returns the series' (rows, columns).
    """
    if n < 0 or per_series < 1:
        raise ValueError("n must be >= 0 and per_series >= 1")
    root_path = Path(root).absolute()
    root_path.mkdir(parents=True, exist_ok=True)
    b = _Builder(root_path, seed, namespace, total=n)
    rng = b.rng
    spec = _MODALITIES[modality]
    days, cum = _day_sampler(date(2021, 1, 1), date(2025, 12, 31), 0.08)
    remaining = n
    patient: _Patient | None = None
    studies_left = 0
    s_index = 0
    while remaining > 0:
        if patient is None or studies_left == 0:
            patient = b.patient(birth_before=date(2021, 1, 1))
            studies_left = rng.randint(1, 3)
            s_index = 0
        study = b.study(patient, modality, rng.choices(days, cum_weights=cum)[0], s_index)
        s_index += 1
        studies_left -= 1
        for number in range(1, rng.randint(1, 4) + 1):
            if remaining <= 0:
                break
            count = min(per_series, remaining)
            description = rng.choice(spec.series_descriptions)
            rows, cols = matrix(b, study, number, description)
            b.write_series(study, number=number, description=description, instances=count,
                           rows=rows, columns=cols, implicit=False)
            remaining -= count
    result = SynthResult(root=root_path, files=b.files)
    log.info("synth %s: %s", namespace, json.dumps(result.summary()))
    return result


def generate_ct_slices(
    root: str | Path,
    n: int,
    *,
    seed: int = 0,
    rows: int = 512,
    columns: int = 512,
    per_series: int = 250,
) -> SynthResult:
    """``n`` CT slices of ``rows`` x ``columns`` 16-bit (512x512: about 0.5 MB each)."""
    return _bulk(root, n, seed=seed, namespace="ct", modality="CT", per_series=per_series,
                 matrix=lambda b, study, number, description: (rows, columns))


def generate_small_files(
    root: str | Path,
    n: int,
    *,
    seed: int = 0,
    target_size: int = 12_000,
    per_series: int = 100,
) -> SynthResult:
    """``n`` small MR images of about ``target_size`` bytes each (header plus a small matrix)."""

    def matrix(b: _Builder, study: _Study, number: int, description: str) -> tuple[int, int]:
        # The header size barely depends on Rows/Columns (fixed-size US values; only the
        # Pixel Spacing text may change by a few bytes): measure it on a 64x64 probe.
        writer, dyn = b.series_writer(study, number=number, description=description, rows=64,
                                      columns=64, implicit=False)
        values = dyn(0)
        values[_T_SOP_INSTANCE[0]] = b.uid("sop", "probe").encode("ascii")
        values[_T_INSTANCE_NUMBER[0]] = str(min(per_series, 99)).encode("ascii")
        values[_T_CONTENT_TIME[0]] = b"120000"
        values[_PIXEL_DATA_TAG] = b""
        header = sum(len(p) for p in writer.encode(values))
        pixel_bytes = max(2, target_size - header)
        cols = max(1, int(math.sqrt(pixel_bytes / 2)))
        rows_ = max(1, round(pixel_bytes / (2 * cols)))
        return rows_, cols

    return _bulk(root, n, seed=seed, namespace="small", modality="MR", per_series=per_series,
                 matrix=matrix)

