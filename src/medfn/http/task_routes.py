"""Task routes: `GET /v1/models`, `POST /v1/models/{model}/predict` and `.../explain`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from medfn.http.body import task_payload
from medfn.http.openapi import returns
from medfn.http.responses import JSONBody, request_id
from medfn.http.routing import RequestRoute
from medfn.serving import InferencePlane

_PREDICT_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"type": "string", "format": "binary"}}
        for media in ("image/png", "image/jpeg", "application/dicom", "application/octet-stream", "text/plain")
    }
    | {
        "application/json": {"schema": {"type": "object", "description": 'e.g. {"image": "<base64>"}; per task'}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
    },
}


def task_router(plane: InferencePlane, max_body_bytes: int) -> APIRouter:
    router = APIRouter(tags=["task routes"], route_class=RequestRoute)

    @router.get("/v1/models", openapi_extra=returns("ModelList"))
    async def list_models() -> JSONBody:
        rows = [{**entry.__dict__, "version": str(entry.version)} for entry in plane.entries()]
        return JSONBody({"models": rows})

    @router.post(
        "/v1/models/{model}/predict",
        openapi_extra=returns("PredictResponse", _PREDICT_BODY),
        summary="Predict from a scan, a note, a record or a series, as the model's task takes",
    )
    async def predict(request: Request) -> Response:
        rid = request_id(request)
        target = plane.get(request.path_params["model"])  # 404 before reading a body we would throw away
        target.ensure_ready()
        payload = await task_payload(request, max_body_bytes)
        prediction = await plane.predict(target, payload)
        headers = {"x-request-id": rid, "x-model-version": str(target.version)}
        if prediction.binary and _wants(payload.accept, prediction.binary[1]):
            return Response(prediction.binary[0], media_type=prediction.binary[1], headers=headers)
        return JSONBody(prediction.answer(target, rid), headers=headers)

    @router.post(
        "/v1/models/{model}/explain",
        openapi_extra=returns("ExplainResponse", _PREDICT_BODY),
        summary="Predict, and say why: a saliency map over a scan (PNG overlay), token or feature weights",
    )
    async def explain(request: Request) -> Response:
        rid = request_id(request)
        target = plane.get(request.path_params["model"])
        target.ensure_ready()
        payload = await task_payload(request, max_body_bytes)
        explanation = await plane.explain(target, payload)
        headers = {"x-request-id": rid, "x-model-version": str(target.version)}
        if explanation.overlay is not None and _wants(payload.accept, "image/png"):
            return Response(explanation.overlay, media_type="image/png", headers=headers)
        return JSONBody(explanation.answer(target, rid), headers=headers)

    return router


def _wants(accept: str, media_type: str) -> bool:
    return media_type in {part.split(";", 1)[0].strip() for part in accept.split(",")}
