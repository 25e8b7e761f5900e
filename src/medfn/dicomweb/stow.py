"""STOW-RS (PS3.18 10.5): each part checked and stored, and the Store Instances Response (Annex I).

Each part is one instance; one that cannot be stored is a Failed SOP Sequence item with its
Failure Reason (PS3.18 Table I.2-2), and never stops the others:

    not application/dicom, empty, its Content-Length not its size,
    not DICOM, truncated or corrupt                                  C000  cannot understand
    deflated (inflates without a known bound)                        C122  transfer syntax not supported
    a SOP class that is not one of medfn.dicomweb.conformance's       0122  SOP class not supported
    another study than the one in the URL                            A900  does not match
    the upload storage did not take it                               A700  out of resources
    anything unexpected (its type logged, never its text)            0110  processing failure

The status (PS3.18 Table 10.5.3-1): 200 all stored, 202 some, and none: 400 when no part could
be understood, 503 when storage failed them all (retry later), else 409.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medfn.dicomweb import conformance as dc
from medfn.dicomweb.multipart import DICOM, Part
from medfn.dicomweb.sinks import InstanceSink
from medfn.errors import StorageUnavailable, UnprocessableInput, UnsupportedMediaType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    index: int  # the part's place in the body
    sop_class_uid: str | None  # None: the part could not be read that far
    sop_instance_uid: str | None
    failure: int | None = None  # None: stored
    reason: str = ""  # ours, for the log


def store_parts(parts: Sequence[Part], sink: InstanceSink, study: str | None = None) -> list[Outcome]:
    """Every part stored, or its failure; `study`: the Study Instance UID of the target URL."""
    outcomes = [_store(part, sink, study) for part in parts]
    failures = Counter(f"{o.failure:04X}" for o in outcomes if o.failure is not None)
    log.info(
        "STOW-RS: %d of %d instances stored%s",
        len(outcomes) - sum(failures.values()),
        len(outcomes),
        "; failed: " + ", ".join(f"{code} x{n}" for code, n in sorted(failures.items())) if failures else "",
    )
    for o in outcomes:
        if o.failure is not None:
            log.info(
                "STOW-RS part %d (SOP %s) failed %04X: %s", o.index, o.sop_instance_uid or "-", o.failure, o.reason
            )
    return outcomes


def _store(part: Part, sink: InstanceSink, study: str | None) -> Outcome:
    from medfn.studies.headers import read_header  # pydicom loads with the first instance, not at start

    def failed(code: int, reason: str, sop_class: str | None = None, sop: str | None = None) -> Outcome:
        return Outcome(part.index, sop_class, sop, code, reason)

    if part.media_type not in ("", DICOM):
        return failed(dc.CANNOT_UNDERSTAND, "the part is not application/dicom")
    if not part.data:
        return failed(dc.CANNOT_UNDERSTAND, "the part is empty")
    if part.declared_length is not None and part.declared_length != len(part.data):
        return failed(dc.CANNOT_UNDERSTAND, "the part's Content-Length is not its size (truncated?)")
    try:
        header = read_header(part.data)
    except UnsupportedMediaType:
        return failed(dc.TRANSFER_SYNTAX_NOT_SUPPORTED, "deflated transfer syntax")
    except UnprocessableInput as exc:
        return failed(dc.CANNOT_UNDERSTAND, exc.message)  # medfn's words, never the parser's
    except Exception as exc:
        return failed(dc.PROCESSING_FAILURE, f"unexpected {type(exc).__name__} reading the header")
    sop_class, sop = header.sop_class_uid, header.sop_instance_uid
    if sop_class not in dc.STORAGE_SOP_CLASSES:
        return failed(dc.SOP_CLASS_NOT_SUPPORTED, "not an image SOP class medfn takes", sop_class, sop)
    if study is not None and header.study_instance_uid != study:
        return failed(dc.DOES_NOT_MATCH, "the instance belongs to another study than the URL's", sop_class, sop)
    try:
        dc.check_pixels(part.data)
    except UnprocessableInput as exc:
        return failed(dc.CANNOT_UNDERSTAND, exc.message, sop_class, sop)
    except Exception as exc:
        return failed(dc.PROCESSING_FAILURE, f"unexpected {type(exc).__name__} reading the pixel data", sop_class, sop)
    try:
        where = sink.put(header, part.data)
    except StorageUnavailable as exc:
        return failed(dc.OUT_OF_RESOURCES, exc.message, sop_class, sop)
    except Exception as exc:
        return failed(dc.PROCESSING_FAILURE, f"unexpected {type(exc).__name__} storing it", sop_class, sop)
    log.debug("STOW-RS part %d stored at %s", part.index, where)
    return Outcome(part.index, sop_class, sop)


def response_status(outcomes: Sequence[Outcome]) -> int:
    failures = [o.failure for o in outcomes if o.failure is not None]
    if not failures:
        return 200
    if len(failures) < len(outcomes):
        return 202
    if all(code == dc.CANNOT_UNDERSTAND for code in failures):
        return 400
    if all(code == dc.OUT_OF_RESOURCES for code in failures):
        return 503
    return 409


def response_body(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The Store Instances Response Module in DICOM JSON (PS3.18 F.2). Retrieve URL (type 2) is
    empty: medfn stores for processing and serves no WADO-RS."""
    body: dict[str, Any] = {"00081190": {"vr": "UR"}}
    failed = [o for o in outcomes if o.failure is not None]
    stored = [o for o in outcomes if o.failure is None]
    if failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [{**_reference(o), "00081197": {"vr": "US", "Value": [o.failure]}} for o in failed],
        }
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [{**_reference(o), "00081190": {"vr": "UR"}} for o in stored]}
    return body


def _reference(outcome: Outcome) -> dict[str, Any]:
    """The SOP Instance Reference Macro; a part unread that far has its UIDs present but empty."""

    def uid(value: str | None) -> dict[str, Any]:
        return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}

    return {"00081150": uid(outcome.sop_class_uid), "00081155": uid(outcome.sop_instance_uid)}
