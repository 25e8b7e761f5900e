"""RequestRoute: Request-only endpoints skip FastAPI's handler; anything else keeps it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse, Response

from medfn.http.routing import RequestRoute


def _app() -> FastAPI:
    router = APIRouter(route_class=RequestRoute)

    @router.post(
        "/echo/{name}", openapi_extra={"requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}}}
    )
    async def echo(request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"name": request.path_params["name"], "bytes": len(body)}, headers={"x-seen": "1"})

    @router.get("/typed")
    async def typed(count: int) -> dict[str, int]:
        return {"double": count * 2}

    async def needs_key(request: Request) -> None:
        if request.headers.get("x-key") != "k":
            raise ValueError("no key")

    @router.get("/guarded", dependencies=[Depends(needs_key)])
    async def guarded(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @router.get("/boom")
    async def boom(request: Request) -> Response:
        raise ValueError("no")

    app = FastAPI()
    app.include_router(router)
    app.state.routes = router.routes

    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    return app


def _handler_module(app: FastAPI, path: str) -> str:
    route = next(r for r in app.state.routes if r.path == path)
    return route.get_route_handler().__module__


def test_a_request_only_endpoint_is_called_directly_and_answers_as_before() -> None:
    app = _app()
    assert _handler_module(app, "/echo/{name}") == "medfn.http.routing"
    response = TestClient(app).post("/echo/scan", content=b"12345")
    assert response.status_code == 200
    assert response.json() == {"name": "scan", "bytes": 5}
    assert response.headers["x-seen"] == "1"


def test_an_endpoint_with_typed_parameters_keeps_fastapis_validation() -> None:
    app = _app()
    assert _handler_module(app, "/typed") == "fastapi.routing"
    client = TestClient(app)
    assert client.get("/typed", params={"count": 4}).json() == {"double": 8}
    assert client.get("/typed", params={"count": "four"}).status_code == 422


def test_a_route_with_dependencies_keeps_fastapis_handler_and_runs_them() -> None:
    app = _app()
    assert _handler_module(app, "/guarded") == "fastapi.routing"
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/guarded").json() == {"error": "no key"}
    assert client.get("/guarded", headers={"x-key": "k"}).json() == {"ok": True}


def test_exception_handlers_still_see_what_a_direct_endpoint_raises() -> None:
    response = TestClient(_app(), raise_server_exceptions=False).get("/boom")
    assert response.status_code == 400
    assert response.json() == {"error": "no"}


def test_the_openapi_document_still_lists_direct_routes() -> None:
    paths = TestClient(_app()).get("/openapi.json").json()["paths"]
    assert "text/plain" in paths["/echo/{name}"]["post"]["requestBody"]["content"]
    assert "/typed" in paths


def test_every_model_route_of_the_medfn_app_is_called_directly() -> None:
    from medfn.http.app import create_app
    from medfn.serving.plane import InferencePlane

    app = create_app(InferencePlane(), metrics_route=False)
    model_routes = [r for r in app.routes if getattr(r, "path", "").startswith(("/v2/models", "/v1/models/"))]
    assert model_routes
    assert {r.get_route_handler().__module__ for r in model_routes} == {"medfn.http.routing"}
