"""The pipeline's analysis step: a scan's bytes in, the model's answer out, through the plane.

The worker (medfn.pipeline.worker) calls this for every object, whichever way it arrived, so
a scan gets the same answer as on the HTTP task route.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from medfn.codecs import signature_media_type
from medfn.errors import ModelNotReady, NotFound, UnprocessableInput
from medfn.serving import InferencePlane, Payload


@dataclass(frozen=True)
class Analysis:
    model: str
    model_version: int
    media_type: str
    body: dict[str, Any]  # the task's answer, in the shape the HTTP route gives it
    inference_ms: float
    dicom: bytes = b""  # a DICOM scan's own bytes: its results in DICOM (an SR) copy its study from it
    overlay: bytes = b""  # explained (function.toml `explain`): the map over the scan, PNG
    method: str = ""  # how it was explained (medfn.explain)


def analyse(plane: InferencePlane, model_name: str, data: bytes, explain: bool = False) -> Analysis:
    """Detect the type from the bytes, run the model; raises medfn.errors (4xx: the input's fault).
    explain: the model explains its answer too, as on `/explain`; the overlay is kept apart (a
    file of its own), not in the JSON.

    The model is resolved after the cheap checks, so an empty or unknown file is poison
    whatever state the model is in; a missing or unready model is a 503, i.e. transient.
    """
    if not data:
        raise UnprocessableInput("object is empty (0 bytes)")
    media_type = signature_media_type(data)
    if media_type is None:
        raise UnprocessableInput("object is not a PNG, JPEG or DICOM image (unrecognised signature)")
    try:
        model = plane.get(model_name)
    except NotFound as exc:  # the deployment's fault, not the scan's: retry, never quarantine
        raise ModelNotReady(exc.message) from None
    payload = Payload(data=data, media_type=media_type)
    overlay, method = b"", ""
    if explain:
        explanation = plane.explain_blocking(model, payload)
        prediction, overlay, method = explanation.prediction, explanation.overlay or b"", explanation.method
        details = {key: value for key, value in explanation.details.items() if key != "overlay_png_base64"}
        body = {**prediction.answer(model, uuid.uuid4().hex), "explanation": {"method": method, "details": details}}
    else:
        prediction = plane.predict_blocking(model, payload)
        body = prediction.answer(model, uuid.uuid4().hex)
    return Analysis(
        model=model.name,
        model_version=model.version,
        media_type=media_type,
        body=body,
        inference_ms=prediction.inference_ms,
        dicom=data if media_type == "application/dicom" else b"",
        overlay=overlay,
        method=method,
    )
