"""The FastAPI application: task routes and Open Inference Protocol routes over one plane.

The same app serves one model inside a Lambda function and every model under `medfn serve`.
Every failure leaves as `{"error": "..."}` with the status its error class owns.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import medfn
from medfn.errors import MedfnError
from medfn.http.inference_protocol_routes import inference_protocol_router
from medfn.http.openapi import install_openapi
from medfn.http.responses import JSONBody, error
from medfn.http.task_routes import task_router
from medfn.metering.middleware import Metering, MeteringMiddleware, from_environment
from medfn.serving import InferencePlane

if TYPE_CHECKING:
    from medfn.dicomweb.sinks import InstanceSink

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit


def create_app(
    plane: InferencePlane,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    title: str = "medfn",
    metering: Metering | None = None,
    metrics_route: bool = True,
    token: str | None = None,
    dicomweb_sink: InstanceSink | None = None,
) -> FastAPI:
    """`metering` defaults to CloudWatch EMF inside Lambda and to none elsewhere.

    Where model calls run is the plane's (its runner); `metrics_route` adds `GET /metrics`,
    for servers, whose counters outlive a request (a Lambda sandbox's do not). `token`: every
    route but health needs it as a bearer token (`medfn serve --require-token`). `dicomweb_sink`
    adds STOW-RS (`POST /dicomweb/studies[/{study}]`), storing what it takes there (medfn.dicomweb).
    """
    app = FastAPI(
        title=title,
        version=medfn.__version__,
        description="Medical ONNX models as pay-per-call APIs. Demonstration models are not for clinical use.",
    )
    app.state.plane = plane
    routers = [inference_protocol_router(plane, max_body_bytes), task_router(plane, max_body_bytes)]
    if metrics_route:
        from medfn.http.metrics import metrics_router

        routers.append(metrics_router(plane))
    if dicomweb_sink is not None:
        from medfn.dicomweb.routes import dicomweb_router

        routers.append(dicomweb_router(dicomweb_sink, max_body_bytes, models=plane.names))
    # The routes join the app's own router, model calls first, rather than being included:
    # FastAPI tries routes in order, and keeps an included router as a layer it matches each
    # path through twice, on every call (benchmarks/README.md has the cost).
    # They go ahead of the docs routes FastAPI has already added, which no model call matches.
    app.router.routes[:0] = [route for router in routers for route in router.routes]

    @app.exception_handler(MedfnError)
    async def medfn_error(request: Request, exc: MedfnError) -> JSONBody:
        return error(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONBody:
        return error(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONBody:
        # pydantic's messages name the field and the rule, never the value sent
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid request')}")

    app.add_middleware(ErrorBoundary)
    if token is not None:  # outside the error boundary, inside metering: a refusal is recorded, not billed
        from medfn.http.auth import BearerToken

        app.add_middleware(BearerToken, token=token)
    install_openapi(app)
    metering = metering or from_environment()
    if metering is not None:  # added last, so outermost: it times and sees every answer
        app.add_middleware(MeteringMiddleware, metering=metering, plane=plane)
    return app


class ErrorBoundary:
    """Turns an unexpected exception into a 500 `{"error"}` so the process (and Lambda) survives.

    Starlette's own last-resort handler re-raises after answering, which under Mangum would
    surface as a failed invocation; this one answers and stops there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error(500, "internal error; the request id is in the function's log")(scope, receive, send)
