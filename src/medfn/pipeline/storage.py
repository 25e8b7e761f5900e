"""Where scans come from and results go: S3 in AWS, a folder locally. One protocol, two backends."""

from __future__ import annotations

import re
from typing import Protocol

from medfn.pipeline.types import Fetched, ObjectRef

# What a result is written as, by the end of its name: a scan's `<key>.json` (and `.fhir.json`,
# `.sr.dcm` for DICOM scans); a series' `<study>/<series>/result.json`, `fhir.json`, `seg.dcm`, `sr.dcm`.
RESULT_MEDIA_TYPES = {
    ".json": "application/json",
    ".fhir.json": "application/fhir+json",
    ".sr.dcm": "application/dicom",
    "/result.json": "application/json",
    "/fhir.json": "application/fhir+json",
    "/seg.dcm": "application/dicom",
    "/sr.dcm": "application/dicom",
}


class ScanStorage(Protocol):
    def fetch(self, ref: ObjectRef) -> Fetched:
        """The object's bytes, exactly the version the event named, with the key that asked for it.

        Raises ObjectMissing when it is gone or changed, StorageUnavailable when the store
        did not answer, PayloadTooLarge over the configured size.
        """
        ...

    def write_result(self, ref: ObjectRef, suffix: str, document: bytes) -> str:
        """Write `<results prefix><key><suffix>`, overwriting (a retry writes the same name)."""
        ...

    def quarantine(self, ref: ObjectRef, code: str, reason: str) -> str:
        """Copy (or tag) the object as quarantined with its reason; return where it now lies."""
        ...

    def release(self, ref: ObjectRef) -> None:
        """After the error record: remove the original where quarantine moves objects, only
        while it is still the upload `ref` names. ObjectMissing: gone, or replaced since."""
        ...


def tag_safe(text: str, limit: int = 256) -> str:
    """S3 tag values allow letters, digits, spaces and `_ . : / = + - @`, up to 256 characters."""
    return re.sub(r"[^\w\s.:/=+\-@]", " ", text)[:limit].strip()
