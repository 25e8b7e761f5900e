"""`POST /dicomweb/studies` and `POST /dicomweb/studies/{study}`: STOW-RS into the upload storage.

A body that cannot be taken at all answers as every medfn route does, `{"error": ...}`: 413 over
the size limit or with too many parts (saying how to send it instead), 415 for another media
type, 400 for a malformed multipart body or a study that is not a UID, 406 when the client
will not take DICOM JSON. Otherwise the answer is the Store Instances Response
(`application/dicom+json`), per part, with the status medfn.dicomweb.stow gives it.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from medfn.dicomweb.multipart import TOO_LARGE_HINT, Limits, Part, RelatedParser, related_boundary
from medfn.dicomweb.sinks import InstanceSink
from medfn.dicomweb.stow import response_body, response_status, store_parts
from medfn.errors import BadRequest, MedfnError, NotFound, PayloadTooLarge
from medfn.http.responses import JSONBody

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
DICOM_JSON = "application/dicom+json"


class DicomJSON(JSONBody):
    media_type = DICOM_JSON


_ANSWER = {"content": {DICOM_JSON: {"schema": {"type": "object"}}}}
_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {'multipart/related; type="application/dicom"': {"schema": {"type": "string", "format": "binary"}}},
    },
    "responses": {
        "200": {"description": "every instance stored (Referenced SOP Sequence)", **_ANSWER},
        "202": {"description": "some stored; the others in Failed SOP Sequence, each with its reason", **_ANSWER},
        "409": {"description": "none stored: a conflict (another study, a SOP class not taken)", **_ANSWER},
    },
}


def dicomweb_router(
    sink: InstanceSink, max_body_bytes: int, max_parts: int = 1000, models: Collection[str] = ()
) -> APIRouter:
    """STOW-RS at `/dicomweb/studies[/{study}]`, and for each of `models` (a function's own) at
    `/v1/models/{model}/dicomweb/studies[/{study}]`, the path API Gateway gives it beside predict."""
    router = APIRouter(tags=["DICOMweb"])
    limits = Limits(max_body_bytes=max_body_bytes, max_parts=max_parts)

    async def store(request: Request, study: str | None) -> Response:
        if study is not None and (len(study) > 64 or not _UID.fullmatch(study)):
            raise BadRequest("the study in the URL is not a Study Instance UID")
        _check_accept(request.headers.get("accept", ""))
        parts = await _read_parts(request, limits)
        outcomes = await run_in_threadpool(store_parts, parts, sink, study)
        status = response_status(outcomes)
        headers = {"Retry-After": "30"} if status == 503 else None
        return DicomJSON(response_body(outcomes), status_code=status, headers=headers)

    @router.post(
        "/dicomweb/studies",
        summary="STOW-RS: store instances (multipart/related; type=application/dicom)",
        response_class=DicomJSON,
        openapi_extra=_OPENAPI,
    )
    async def store_instances(request: Request) -> Response:
        return await store(request, None)

    @router.post(
        "/dicomweb/studies/{study}",
        summary="STOW-RS: store instances of one study",
        response_class=DicomJSON,
        openapi_extra=_OPENAPI,
    )
    async def store_study_instances(study: str, request: Request) -> Response:
        return await store(request, study)

    if models:

        def served(model: str) -> None:
            if model not in models:
                raise NotFound(f"no model named {model!r} takes DICOM instances here")

        @router.post(
            "/v1/models/{model}/dicomweb/studies",
            summary="STOW-RS to one function (the path API Gateway routes to it)",
            response_class=DicomJSON,
            openapi_extra=_OPENAPI,
        )
        async def store_model_instances(model: str, request: Request) -> Response:
            served(model)
            return await store(request, None)

        @router.post(
            "/v1/models/{model}/dicomweb/studies/{study}",
            summary="STOW-RS of one study to one function",
            response_class=DicomJSON,
            openapi_extra=_OPENAPI,
        )
        async def store_model_study_instances(model: str, study: str, request: Request) -> Response:
            served(model)
            return await store(request, study)

    return router


async def _read_parts(request: Request, limits: Limits) -> list[Part]:
    boundary = related_boundary(request.headers.get("content-type", ""))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise PayloadTooLarge(f"body is over the limit of {limits.max_body_bytes} bytes: {TOO_LARGE_HINT}")
    parser = RelatedParser(boundary, limits)
    try:
        async for chunk in request.stream():
            parser.feed(chunk)
    except MedfnError:
        raise
    except Exception as exc:  # the client went away, or sent a body that does not match its framing
        raise BadRequest("the request body could not be read whole") from exc
    return parser.close()


def _check_accept(accept: str) -> None:
    """406 only for a client that names media types and none of them is DICOM JSON (or a wildcard)."""
    accepted = [item.split(";", 1)[0].strip().lower() for item in accept.split(",") if item.strip()]
    if accepted and not any(kind in (DICOM_JSON, "application/json", "*/*", "application/*") for kind in accepted):
        raise HTTPException(406, "this server answers STOW-RS in application/dicom+json only")
