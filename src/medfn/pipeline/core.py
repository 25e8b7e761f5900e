"""The transport-free heart of the pipeline: bytes in, a prediction out.

S3 events, SQS messages, EventBridge events and `medfn watch` all end here, so a scan gives
the same answer whichever way it arrived, and the same answer as the HTTP task route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medfn.codecs import sniff
from medfn.errors import ModelNotReady, NotFound, UnprocessableInput
from medfn.model import Payload
from medfn.plane import InferencePlane

# What each signature is sent to the model as; a name or a Content-Type is never trusted.
MEDIA_TYPES = {"dicom": "application/dicom", "png": "image/png", "jpeg": "image/jpeg"}


@dataclass(frozen=True)
class Analysis:
    model: str
    model_version: int
    media_type: str
    body: dict[str, Any]  # the task's JSON answer, as the HTTP route gives it
    inference_ms: float


def analyse(plane: InferencePlane, model_name: str, data: bytes) -> Analysis:
    """Detect the type from the bytes, run the model; raises medfn.errors (4xx: the input's fault).

    The model is resolved after the cheap checks, so an empty or unknown file is poison
    whatever state the model is in; a missing or unready model is a 503, i.e. transient.
    """
    if not data:
        raise UnprocessableInput("object is empty (0 bytes)")
    kind = sniff(data)
    if kind is None:
        raise UnprocessableInput("object is not a PNG, JPEG or DICOM image (unrecognised signature)")
    media_type = MEDIA_TYPES[kind]
    try:
        model = plane.get(model_name)
    except NotFound as exc:  # the deployment's fault, not the scan's: retry, never quarantine
        raise ModelNotReady(exc.message) from None
    prediction = model.predict(Payload(data=data, media_type=media_type))
    return Analysis(
        model=model.name,
        model_version=model.version,
        media_type=media_type,
        body=prediction.body,
        inference_ms=prediction.inference_ms,
    )
