"""`RequestRoute`: FastAPI routes whose endpoints take the Request and return a Response.

Every medfn endpoint reads what it needs from the Request itself (bodies go to simdjson or
the codecs, not to pydantic) and builds its own Response. For such an endpoint FastAPI's
request handler still solves an empty set of dependencies, makes a sub-response to merge
headers from and checks for streams and response models, on every call, for endpoints that
need none of it (benchmarks/README.md has the cost). This route class calls the endpoint
directly. Everything else stays FastAPI's: matching, the OpenAPI document, exception
handlers, the body limit and the per-request exit stacks.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class RequestRoute(APIRoute):
    """An APIRoute that awaits `endpoint(request)` itself when the endpoint is a coroutine
    function of the Request alone returning a Response, with no dependencies; any other
    endpoint keeps FastAPI's own handler, with its validation and dependencies."""

    def get_route_handler(self) -> Handler:
        if self.dependant.dependencies or not _takes_request_returns_response(self.endpoint):
            return super().get_route_handler()  # dependencies to solve, or parameters to validate
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            # What FastAPI's handler would tell an OpenTelemetry hook (None unless OTel is on)
            telemetry = get_telemetry_data()
            if telemetry is not None:
                telemetry.request, telemetry.values, telemetry.errors = request, {"request": request}, []
            response: Response = await endpoint(request)
            return response

        return handler


def _takes_request_returns_response(endpoint: Callable[..., Any]) -> bool:
    if not inspect.iscoroutinefunction(endpoint):
        return False
    try:
        hints = typing.get_type_hints(endpoint)
    except (NameError, TypeError):  # an annotation named only for type checkers: FastAPI decides
        return False
    parameters = list(inspect.signature(endpoint).parameters)
    returns = hints.get("return")
    return (
        len(parameters) == 1
        and hints.get(parameters[0]) is Request
        and isinstance(returns, type)
        and issubclass(returns, Response)
    )
