"""The OpenAPI document, with the error body every route can answer with.

Request bodies the routes read themselves (raw tensors, scans) are described by schemas
added here too, under `components`, so `openapi_extra` can point at them by reference.

Declaring `responses={4xx: ErrorBody}` on each route makes FastAPI build a pydantic field per
route and status at app creation: measured ~15 ms of a Lambda cold start. The document is only
wanted when someone opens /docs, so the error responses are added there, once, instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pydantic import BaseModel

from medfn.http.schemas import ErrorBody, InferenceRequest

_REFERENCED: tuple[type[BaseModel], ...] = (ErrorBody, InferenceRequest)

_ERROR_RESPONSE = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}


def install_openapi(app: FastAPI) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in _REFERENCED:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    responses.pop("422", None)  # FastAPI's validation shape: ours is ErrorBody
                    responses["4XX"] = {"description": "The request cannot be served; `error` says why", **_ERROR_RESPONSE}
                    responses["5XX"] = {"description": "Model not ready (503), or an internal error", **_ERROR_RESPONSE}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
