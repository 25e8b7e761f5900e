"""read_header: an instance's place (study, series, instance), read without its pixels, guarded."""

from __future__ import annotations

import hashlib
import io

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medfn.errors import UnprocessableInput, UnsupportedMediaType
from medfn.studies import InstanceHeader, read_header
from tests.studies.helpers import edited, enhanced, series


def test_a_single_frame_instance() -> None:
    data = series()[2]
    ds = pydicom.dcmread(io.BytesIO(data))
    header = read_header(data)
    assert header == InstanceHeader(
        study_instance_uid=ds.StudyInstanceUID,
        series_instance_uid=ds.SeriesInstanceUID,
        sop_instance_uid=ds.SOPInstanceUID,
        sop_class_uid=pydicom.uid.CTImageStorage,
        modality="CT",
        instance_number=3,
        number_of_frames=1,
        expected_instances=None,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def test_an_enhanced_instance_counts_its_frames_and_the_series_size_is_read_when_stated() -> None:
    header = read_header(edited(enhanced(), ImagesInAcquisition=1))
    assert (header.number_of_frames, header.expected_instances) == (6, 1)
    assert header.sop_class_uid == pydicom.uid.EnhancedCTImageStorage
    # A value that is not a number is only a missing hint, not a refusal (written raw: pydicom would not)
    data = edited(series()[0], ImagesInAcquisition=12)
    element = b"\x20\x00\x02\x10IS\x02\x0012"
    assert read_header(data.replace(element, element[:-2] + b"x ")).expected_instances is None


def test_it_stops_before_the_pixels() -> None:
    data = series()[0]
    at = data.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data: cut in the middle of it
    assert read_header(data[: at + 40]).sop_instance_uid == read_header(data).sop_instance_uid


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not dicom at all" * 20, "not a DICOM file"),
        (series()[0][:200], "DICOM file"),  # pydicom reads what is there: then a UID is missing
        (edited(series()[0], SeriesInstanceUID=None), "no Series Instance UID"),
        (edited(series()[0], StudyInstanceUID="../../etc"), "Study Instance UID is not a valid UID"),
        (edited(series()[0], SOPInstanceUID="1." + "2" * 70), "SOP Instance UID is not a valid UID"),
    ],
    ids=["not-dicom", "truncated", "no-series-uid", "path-as-uid", "uid-too-long"],
)
def test_unusable_headers_are_refused_with_a_reason_and_no_header_value(data: bytes, reason: str) -> None:
    with pytest.raises(UnprocessableInput) as caught:
        read_header(data)
    assert reason in caught.value.message
    assert "Phantom" not in caught.value.message and "../" not in caught.value.message


def test_a_deflated_file_is_refused_before_it_is_inflated() -> None:
    ds = pydicom.dcmread(io.BytesIO(series()[0]))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(UnsupportedMediaType):
        read_header(buffer.getvalue())
