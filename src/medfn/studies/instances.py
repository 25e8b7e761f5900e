"""One instance of a series opened for the volume: its Dataset, its header, its planes.

Anything that makes one instance unusable is a CorruptInstance carrying its index in the list
given, so that the caller can set that instance aside; the reason is ours, never parser text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from medfn.errors import CorruptInstance, MedfnError
from medfn.studies.headers import InstanceHeader, header_of, read_dataset
from medfn.studies.planes import Plane, planes_of

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class OpenedInstance:
    dataset: Dataset
    header: InstanceHeader
    planes: list[Plane]


def open_instance(item: bytes | Dataset, index: int) -> OpenedInstance:
    """Read (bytes) or take (Dataset) one instance, with its header and planes; no pixel decoded."""
    try:
        ds = read_dataset(bytes(item)) if isinstance(item, (bytes, bytearray, memoryview)) else item
        header = header_of(ds)
    except MedfnError as exc:  # our own message (not DICOM, truncated, no UID, ...)
        raise CorruptInstance(index, exc.message) from None
    return OpenedInstance(ds, header, planes_of(ds, index))


def check_decodable(ds: Dataset, index: int) -> None:
    """Refuse, before decoding, pixel data in a transfer syntax pydicom cannot decode here."""
    from medfn.codecs.dicom import undecodable_syntax

    named = undecodable_syntax(ds)
    if named is not None:
        raise CorruptInstance(index, f"its transfer syntax {named} cannot be decoded here")
