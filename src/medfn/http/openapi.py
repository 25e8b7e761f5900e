"""The OpenAPI document, built when someone asks for it rather than at cold start.

Routes return responses they render themselves (orjson), so FastAPI's `response_model` would
only feed the document, yet it builds a pydantic field per route and status at app creation:
with the error responses, ~20 ms of a Lambda cold start. Instead, routes name their schemas
with `returns(...)` (plain dicts, free at init), and the pydantic models of medfn.http.schemas
are imported and turned into `components` here, on the first request for /openapi.json.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


def ref(schema: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema}"}


def returns(schema: str, request_body: dict[str, Any] | None = None) -> dict[str, Any]:
    """`openapi_extra` for a route answering 200 with `schema` (a class in medfn.http.schemas)."""
    extra: dict[str, Any] = {
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref(schema)}}}}
    }
    if request_body is not None:
        extra["requestBody"] = request_body
    return extra


_ERROR_RESPONSE = {"content": {"application/json": {"schema": ref("ErrorBody")}}}


def install_openapi(app: FastAPI) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            from pydantic import BaseModel

            from medfn.http import schemas as models

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in vars(models).values():
                if not (
                    isinstance(model, type) and issubclass(model, BaseModel) and model.__module__ == models.__name__
                ):
                    continue
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    _document_path_parameters(path, operation)
                    responses = operation.setdefault("responses", {})
                    responses.pop("422", None)  # FastAPI's validation shape: ours is ErrorBody
                    responses["4XX"] = {
                        "description": "The request cannot be served; `error` says why",
                        **_ERROR_RESPONSE,
                    }
                    responses["5XX"] = {"description": "Model not ready (503), or an internal error", **_ERROR_RESPONSE}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _document_path_parameters(path: str, operation: dict[str, Any]) -> None:
    """Routes read `{model}` and `{version}` from the request; the document still names them."""
    parameters = operation.setdefault("parameters", [])
    declared = {p.get("name") for p in parameters if p.get("in") == "path"}
    for name in re.findall(r"{(\w+)}", path):
        if name not in declared:
            parameters.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
