"""Header reading: header only, and on object storage only small reads — never the whole object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from pacs import synth
from pacs.dicom import NotDicomError, UnreadableError, read_header, read_header_bytes


def _fresh_fs(s3: Any) -> Any:
    from s3fs import S3FileSystem

    return S3FileSystem(endpoint_url=s3.endpoint, key="testing", secret="testing", skip_instance_cache=True,
                        use_listings_cache=False)


class CountingS3:
    """Wraps an s3fs filesystem and counts the bytes its GET requests return."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.fetched = 0
        original = fs._call_s3

        async def counting(method: str, *args: Any, **kwargs: Any) -> Any:
            out = await original(method, *args, **kwargs)
            if method == "get_object":
                self.fetched += int(out.get("ContentLength") or 0)
            return out

        fs._call_s3 = counting


def test_header_of_a_large_object_costs_a_few_kilobytes(s3, tmp_path: Path) -> None:
    src = synth.generate_ct_slices(tmp_path / "ct", 1, rows=2048, columns=2048)  # an 8 MB image
    path = src.good()[0].path
    size = Path(path).stat().st_size
    assert size > 8_000_000
    fs = _fresh_fs(s3)
    fs.mkdir("hdr")
    fs.put_file(path, "hdr/big.dcm")
    counter = CountingS3(fs)
    header = read_header(fs, "hdr/big.dcm", size=size)
    expected = pydicom.dcmread(path, stop_before_pixels=True)
    assert header["sop_instance_uid"] == expected.SOPInstanceUID
    assert header["rows"] == 2048 and header["has_pixel_data"] is True
    assert 0 < counter.fetched <= 256 * 1024, f"fetched {counter.fetched} of {size} bytes for a header"


def test_encapsulated_pixel_data_is_walked_without_reading_it(s3) -> None:
    path = get_testdata_file("examples_jpeg2k.dcm")  # 150 KB, JPEG 2000 fragments
    fs = _fresh_fs(s3)
    fs.mkdir("hdr2")
    fs.put_file(path, "hdr2/j2k.dcm")
    counter = CountingS3(fs)
    header = read_header(fs, "hdr2/j2k.dcm", block_size=4096)
    assert header["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.90"
    assert counter.fetched < Path(path).stat().st_size / 4


def test_truncated_pixel_data_is_unreadable() -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    assert read_header_bytes(data)["has_pixel_data"]
    pixel_value_at = pydicom.dcmread(get_testdata_file("CT_small.dcm"))["PixelData"].file_tell
    with pytest.raises(UnreadableError, match="truncated"):
        read_header_bytes(data[:pixel_value_at + 1000])  # cut inside the 32 KB of pixel data


def test_truncated_encapsulated_data_is_unreadable() -> None:
    data = Path(get_testdata_file("JPEG2000.dcm")).read_bytes()
    read_header_bytes(data)
    with pytest.raises(UnreadableError):
        read_header_bytes(data[:-40])


@pytest.mark.parametrize("payload", [b"", b"hello world, this is not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 300])
def test_not_dicom(payload: bytes) -> None:
    with pytest.raises(NotDicomError):
        read_header_bytes(payload)


def test_garbage_after_the_dicm_marker_is_unreadable() -> None:
    with pytest.raises(UnreadableError):
        read_header_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)


@pytest.mark.parametrize("name", ["ExplVR_BigEnd.dcm", "MR_small_implicit.dcm", "image_dfl.dcm", "JPEG-lossy.dcm",
                                  "ExplVR_LitEndNoMeta.dcm", "MR_small_RLE.dcm"])
def test_transfer_syntaxes_and_files_without_meta_match_pydicom(name: str) -> None:
    path = get_testdata_file(name)
    header = read_header_bytes(Path(path).read_bytes())
    ds = pydicom.dcmread(path, force=True)
    assert header["sop_instance_uid"] == ds.SOPInstanceUID
    assert header["study_instance_uid"] == ds.StudyInstanceUID
    assert header["modality"] == ds.Modality


def test_names_in_other_character_sets_are_decoded(tmp_path: Path) -> None:
    src = synth.generate_ct_slices(tmp_path / "ct", 1, rows=8, columns=8)
    ds = pydicom.dcmread(src.good()[0].path)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.StudyDescription = "Thorax ïàé"
    out = tmp_path / "utf8.dcm"
    ds.save_as(out)
    header = read_header_bytes(out.read_bytes())
    assert header["patient_name"] == "Müller^Jürgen"
    assert header["study_description"] == "Thorax ïàé"
