"""The OpenAPI document, built when someone asks for it rather than at cold start.

Routes return responses they render themselves (orjson), so FastAPI's `response_model` would
only feed the document, yet it builds a pydantic field per route and status at app creation:
with the error responses, ~20 ms of a Lambda cold start. Instead, routes name their schemas
with `returns(...)` (plain dicts, free at init), and the pydantic models of medfn.http.schemas
are imported and turned into `components` here, on the first request for /openapi.json.

The docs pages load Swagger UI and ReDoc from this machine, not from a CDN, so /docs works on
networks that reach nothing outside (`install_docs`).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from medfn.http.responses import error

# Swagger UI 5 and ReDoc 2, as fastapi-offline ships them (the `serve` extra): file -> type.
DOCS_ASSETS_PACKAGE = "fastapi_offline"
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}


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
            schema["paths"].update(_model_paths(app))
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
    install_docs(app)


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their scripts, styles and icon served by the app.

    The assets answer on the docs page's own path, `/docs?asset=swagger-ui.css`: a path the
    local gateway's API-key gate already leaves open, as a browser sends no key. They come with
    the `serve` extra (`medfn serve`, the GPU container); Lambda bundles leave them out, as API
    Gateway never routes /docs to a function, and there the pages keep FastAPI's CDN links.
    Nothing is read at import or at app creation: the files are found on the first request.
    """
    if not app.openapi_url or not app.docs_url:
        return
    docs_url, openapi_url = app.docs_url, app.openapi_url

    def asset_url(root: str, name: str) -> str | None:
        return f"{root}{docs_url}?asset={name}" if docs_assets() is not None else None

    async def swagger_ui(request: Request) -> Response:
        name = request.query_params.get("asset")
        if name is not None:
            return _asset(name)
        from fastapi.openapi.docs import get_swagger_ui_html

        root = request.scope.get("root_path", "").rstrip("/")
        redirect = app.swagger_ui_oauth2_redirect_url
        local = {
            key: url
            for key, url in (
                ("swagger_js_url", asset_url(root, "swagger-ui-bundle.js")),
                ("swagger_css_url", asset_url(root, "swagger-ui.css")),
                ("swagger_favicon_url", asset_url(root, "favicon.png")),
            )
            if url is not None
        }
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + redirect if redirect else None,
            init_oauth=app.swagger_ui_init_oauth,
            # no validator badge: it would send the document's address to validator.swagger.io
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            **local,
        )

    async def redoc(request: Request) -> HTMLResponse:
        from fastapi.openapi.docs import get_redoc_html

        root = request.scope.get("root_path", "").rstrip("/")
        script, icon = asset_url(root, "redoc.standalone.js"), asset_url(root, "favicon.png")
        if script is None or icon is None:
            return get_redoc_html(openapi_url=root + openapi_url, title=f"{app.title} - ReDoc")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=script,
            redoc_favicon_url=icon,
            with_google_fonts=False,
        )

    pages = {docs_url: swagger_ui, app.redoc_url: redoc}
    routes = app.router.routes
    for index, route in enumerate(routes):  # in place of FastAPI's own pages, where they were
        if isinstance(route, Route) and route.path in pages:
            routes[index] = Route(route.path, pages[route.path], include_in_schema=False)


@cache
def docs_assets() -> Path | None:
    """The folder holding DOCS_ASSETS, or None where the `serve` extra is not installed."""
    from importlib import resources

    try:
        folder = Path(str(resources.files(DOCS_ASSETS_PACKAGE) / "static"))
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in DOCS_ASSETS) else None


def _asset(name: str) -> Response:
    folder = docs_assets()
    if folder is None or name not in DOCS_ASSETS:  # a known name only: never a path from the request
        return error(404, "no such docs asset")
    return FileResponse(folder / name, media_type=DOCS_ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})


def _document_path_parameters(path: str, operation: dict[str, Any]) -> None:
    """Routes read `{model}` and `{version}` from the request; the document still names them."""
    parameters = operation.setdefault("parameters", [])
    declared = {p.get("name") for p in parameters if p.get("in") == "path"}
    for name in re.findall(r"{(\w+)}", path):
        if name not in declared:
            parameters.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})


def _model_paths(app: FastAPI) -> dict[str, Any]:
    """`/v1/models/<name>/predict` for each served model, with the body its model.toml describes
    (breast_mass's 30 features, the vital signs with their ranges), beside the generic route."""
    paths = {}
    plane = app.state.plane
    for name in plane.names:
        if not plane.versions(name):
            continue
        model = plane.get(name)
        body = model.request_body()
        if body is None:
            continue
        paths[f"/v1/models/{name}/predict"] = {
            "post": {
                "tags": ["task routes"],
                "summary": f"Predict with {name} ({model.config.task})",
                "operationId": f"predict_{name}",
                "requestBody": body,
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": ref("PredictResponse")}}}
                },
            }
        }
    return paths
