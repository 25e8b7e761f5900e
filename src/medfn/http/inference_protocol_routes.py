"""Open Inference Protocol v2 routes (KServe / Triton REST), binary tensor extension included."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

import medfn
from medfn.config import TensorSpec
from medfn.errors import BadRequest
from medfn.http.body import read_body
from medfn.http.openapi import ref, returns
from medfn.http.responses import JSONBody, request_id
from medfn.http.routing import RequestRoute
from medfn.inference_protocol import encode_response, parse_request
from medfn.serving import InferencePlane, Model

HEADER_LENGTH = "inference-header-content-length"
_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": ref("InferenceRequest")},
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary", "description": "JSON header, then binary tensors"}
        },
    },
}


def inference_protocol_router(plane: InferencePlane, max_body_bytes: int) -> APIRouter:
    router = APIRouter(tags=["Open Inference Protocol v2"], route_class=RequestRoute)

    def metadata(model: Model) -> JSONBody:
        def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]

        return JSONBody(
            {
                "name": model.name,
                "versions": [str(v) for v in plane.versions(model.name)],
                "platform": "onnx_onnxv1",
                "inputs": tensors(model.config.inputs),
                "outputs": tensors(model.config.outputs),
                "parameters": {
                    "task": model.config.task,
                    "version": str(model.version),
                    "ready": model.ready,
                    "provider": model.provider,
                    "max_batch_size": model.config.max_batch_size,
                    **model.serving_parameters(),
                },
            }
        )

    def model_ready(model: Model) -> JSONBody:
        return JSONBody({"name": model.name, "ready": model.ready}, status_code=200 if model.ready else 503)

    async def infer(model: Model, request: Request) -> Response:
        model.ensure_ready()
        body = await read_body(request, max_body_bytes)
        header = request.headers.get(HEADER_LENGTH)
        if header is not None and not header.strip().isdigit():
            raise BadRequest("Inference-Header-Content-Length must be a whole number")
        parsed = parse_request(body, int(header) if header is not None else None)
        outputs = await plane.infer(model, parsed.inputs, list(parsed.outputs) or None)
        content, head_length = encode_response(
            model_name=model.name, model_version=str(model.version), request=parsed, outputs=outputs
        )
        headers = {"x-request-id": request_id(request)}
        if head_length is None:
            return Response(content, media_type="application/json", headers=headers)
        headers["Inference-Header-Content-Length"] = str(head_length)
        return Response(content, media_type="application/octet-stream", headers=headers)

    def target(request: Request) -> Model:
        return plane.get(request.path_params["model"], request.path_params.get("version"))

    # The same three endpoints with and without /versions/{version}, infer first: FastAPI
    # tries routes in the order they were added, and each miss costs about a microsecond
    # on every call (the server routes, which no call to a model can match, go after).
    # Endpoints take only the Request (path parameters read from it): a typed parameter
    # makes FastAPI import pydantic.v1 to inspect it, ~25 ms of every cold start;
    # medfn.http.openapi documents them.
    for suffix in ("", "/versions/{version}"):
        base = "/v2/models/{model}" + suffix

        @router.post(base + "/infer", openapi_extra=returns("InferenceResponse", _INFER_BODY))
        async def model_infer(request: Request) -> Response:
            return await infer(target(request), request)

        @router.get(base + "/ready", openapi_extra=returns("ModelReady"))
        async def model_ready_route(request: Request) -> JSONBody:
            return model_ready(target(request))

        @router.get(base, openapi_extra=returns("ModelMetadata"))
        async def model_metadata(request: Request) -> JSONBody:
            return metadata(target(request))

    @router.get("/v2", openapi_extra=returns("ServerMetadata"))
    async def server_metadata() -> JSONBody:
        return JSONBody({"name": "medfn", "version": medfn.__version__, "extensions": ["binary_tensor_data"]})

    @router.get("/v2/health/live", openapi_extra=returns("ServerLive"))
    async def live() -> JSONBody:
        return JSONBody({"live": True})

    @router.get("/v2/health/ready", openapi_extra=returns("ServerReady"))
    async def ready() -> JSONBody:
        return JSONBody({"ready": plane.ready}, status_code=200 if plane.ready else 503)

    return router
