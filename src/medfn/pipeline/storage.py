"""Where scans come from and results go: S3 in AWS, a folder locally. One protocol, two backends."""

from __future__ import annotations

import re
from typing import Protocol

from medfn.pipeline.types import ObjectRef

RESULT_MEDIA_TYPES = {".json": "application/json", ".fhir.json": "application/fhir+json"}


class ScanStorage(Protocol):
    def fetch(self, ref: ObjectRef) -> bytes:
        """The object's bytes, exactly the version the event named.

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
