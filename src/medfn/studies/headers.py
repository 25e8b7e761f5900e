"""One DICOM instance's header: which study and series it joins, read before (and without) its pixels.

The pipeline files each arriving instance under its series with `read_header`, and only later
builds the volume. Both reads are guarded as medfn.codecs.dicom guards its own: pydicom's
validation warnings are off (they quote values), a file that does not parse is a 422 that names
the problem and never the file's contents, and a deflated data set is refused before it is
inflated (it would be inflated whole, with no bound known in advance).
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble

from medfn.errors import UnprocessableInput, UnsupportedMediaType
from medfn.studies.planes import number_of_frames, optional_int

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# pydicom warns about a value that does not fit its VR by quoting it: the header's text.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")

# Digits and dots, at most 64 characters (PS3.5 9.1). UIDs become storage keys and file names
# downstream, so anything else is refused here rather than escaped there.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX = 64


@dataclass(frozen=True)
class InstanceHeader:
    """Where an instance belongs, and what it says about the series it belongs to."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str | None
    instance_number: int | None
    number_of_frames: int
    # How many instances the series should have, when the header says so (a hint for deciding
    # that a series is complete, never a promise: a series may span several acquisitions).
    expected_instances: int | None
    sha256: str  # of the bytes as received: a redelivery of the same file is recognised as such


# What an instance is routed by: only these are parsed on arrival (each read guarded); the rest of
# the header is checked when the series' volume is built, where a bad value quarantines the instance.
HEADER_KEYWORDS = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality", "InstanceNumber",
    "NumberOfFrames", "NumberOfSeriesRelatedInstances", "ImagesInAcquisition",
)  # fmt: skip


def read_header(data: bytes) -> InstanceHeader:
    """The routing header of a Part-10 file (HEADER_KEYWORDS). Raises UnprocessableInput."""
    return header_of(read_dataset(data, pixels=False, only=HEADER_KEYWORDS), sha256=hashlib.sha256(data).hexdigest())


def header_of(ds: Dataset, *, sha256: str = "") -> InstanceHeader:
    """An InstanceHeader from a dataset already read; missing or malformed UIDs are a 422."""
    return InstanceHeader(
        study_instance_uid=checked_uid(ds, "StudyInstanceUID", "Study Instance UID"),
        series_instance_uid=checked_uid(ds, "SeriesInstanceUID", "Series Instance UID"),
        sop_instance_uid=checked_uid(ds, "SOPInstanceUID", "SOP Instance UID"),
        sop_class_uid=checked_uid(ds, "SOPClassUID", "SOP Class UID"),
        modality=_text(ds, "Modality"),
        instance_number=optional_int(ds, "InstanceNumber"),
        number_of_frames=number_of_frames(ds),
        expected_instances=_expected_instances(ds),
        sha256=sha256,
    )


def read_dataset(data: bytes, *, pixels: bool = True, only: tuple[str, ...] = ()) -> Dataset:
    """A Part-10 file as a pydicom Dataset, pixel data included unless `pixels` is False; `only`:
    just these attributes, parsed (no pixels), the caller reading each one guarded.

    Raises UnprocessableInput (not DICOM, truncated, corrupt) or UnsupportedMediaType (deflated).
    """
    try:
        stream = io.BytesIO(data)
        read_preamble(stream, False)
        # The file meta alone (pydicom's file-like way to it is private; read_file_meta_info takes paths)
        syntax = _read_file_meta_info(stream).get("TransferSyntaxUID")
    except InvalidDicomError as exc:
        raise UnprocessableInput("not a DICOM file (no DICM preamble)") from exc
    except Exception as exc:  # parser text may quote the file: none of it goes out
        raise UnprocessableInput("DICOM file is truncated or corrupt") from exc
    if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        raise UnsupportedMediaType(
            "DICOM transfer syntax Deflated Explicit VR Little Endian is not accepted (it inflates without a"
            " bound known in advance)"
        )
    try:
        if only:
            return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=list(only))
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not pixels)
        # Touch every element now, so that a value that cannot be decoded fails here (as a 422)
        # rather than later, wherever a header value happens to be read first.
        for _ in ds.iterall():
            pass
    except InvalidDicomError as exc:
        raise UnprocessableInput("not a DICOM file (no DICM preamble)") from exc
    except Exception as exc:
        raise UnprocessableInput("DICOM file is truncated or corrupt") from exc
    return ds


def checked_uid(ds: Dataset, keyword: str, what: str) -> str:
    """A UID attribute's value, refused (422) when missing or not a UID."""
    value = _text(ds, keyword)
    if value is None:
        raise UnprocessableInput(f"DICOM file has no {what}")
    if len(value) > _UID_MAX or not _UID.fullmatch(value):
        raise UnprocessableInput(f"DICOM file's {what} is not a valid UID")
    return value


def _expected_instances(ds: Dataset) -> int | None:
    # (0020,1209) is what a query answers and is rarely in a file; (0020,1002) is what modalities write.
    for keyword in ("NumberOfSeriesRelatedInstances", "ImagesInAcquisition"):
        count = optional_int(ds, keyword)
        if count is not None and count > 0:
            return count
    return None


def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # a value that cannot be decoded counts as missing
        return None
    text = str(value).strip() if value is not None else ""
    return text or None
