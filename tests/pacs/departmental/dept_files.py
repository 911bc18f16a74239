"""What the departmental tests write: files into an archive's landing in received order, and
pydicom's own files as instances of new studies."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pacs.config import Config
from pacs.synth import element_value_span
from pacs.synth.encode import _lenient_pydicom

T0 = 1_700_000_000


class Landing:
    """Writes datasets into an archive's landing folder, each received one second after the last."""

    def __init__(self, cfg: Config) -> None:
        self.cfg, self.n = cfg, 0

    def write(self, ds: Dataset, name: str | None = None) -> Path:
        self.n += 1
        out = Path(self.cfg.landing[0].root) / (name or f"f{self.n:03d}.dcm")
        with _lenient_pydicom():  # malformed values are written as they are
            pydicom.dcmwrite(out, ds, enforce_file_format=True)
        os.utime(out, (T0 + self.n, T0 + self.n))
        return out

    def write_malformed(self, ds: Dataset, values: dict[str, str]) -> Path:
        """``ds`` with the raw text of each keyword replaced by ``values`` (as a modality might
        send it, which pydicom would refuse to write): placeholders of the same length, patched."""
        for keyword, text in values.items():
            setattr(ds, keyword, "1" * len(text))
        path = self.write(ds)
        data = bytearray(path.read_bytes())
        for keyword, text in values.items():
            at, length = element_value_span(bytes(data), int(tag_for_keyword(keyword)))
            data[at: at + length] = text.encode("latin-1").ljust(length, b" ")
        path.write_bytes(bytes(data))
        os.utime(path, (T0 + self.n, T0 + self.n))
        return path

    def copy(self, name: str) -> Path:
        """One of pydicom's own test files, as it is."""
        data = Path(get_testdata_file(name)).read_bytes()
        self.n += 1
        out = Path(self.cfg.landing[0].root) / f"f{self.n:03d}-{name}"
        out.write_bytes(data)
        os.utime(out, (T0 + self.n, T0 + self.n))
        return out


def pydicom_file(name: str) -> Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def ct_image(study: str | None = None, series: str | None = None, **values: Any) -> Dataset:
    """pydicom's CT_small.dcm as an instance of ``study``/``series`` (new UIDs by default)."""
    ds = copy.deepcopy(pydicom_file("CT_small.dcm"))
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds
