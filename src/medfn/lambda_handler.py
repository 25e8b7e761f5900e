"""The Lambda entry point every `functions/<name>/handler.py` exposes.

Events are dispatched by an ordered list of event sources, as Mangum does for HTTP: each has
`infer(event)` that only looks at keys. HTTP events go to the FastAPI app through Mangum
(lifespan off: the model is loaded at init, not per invocation). The app, and with it
FastAPI, is built at init when the function serves HTTP, so the first request is warm and a
SnapStart snapshot holds it; a function deployed only for upload events never imports it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

from medfn import snapstart
from medfn.startup import collector_paused

if TYPE_CHECKING:
    from medfn.function import LoadedFunction

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


class EventSource(Protocol):
    name: ClassVar[str]

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool: ...

    def __call__(self, event: dict[str, Any], context: Any) -> Any: ...


class HttpEvents:
    """API Gateway REST (1.0) and HTTP API (2.0), ALB, Function URLs: through Mangum."""

    name = "http"

    def __init__(self, function: LoadedFunction) -> None:
        from mangum import Mangum

        from medfn.http import create_app

        self.app = create_app(
            function.plane,
            max_body_bytes=function.config.max_body_bytes,
            title=f"medfn {function.config.name}",
            offload_inference=False,  # one request per environment: a thread hop is pure cost
        )
        self.adapter = Mangum(self.app, lifespan="off")

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        context = event.get("requestContext") or {}
        return "httpMethod" in event or "http" in context or "elb" in context

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        return self.adapter(strip_stage(event), context)


def strip_stage(event: dict[str, Any]) -> dict[str, Any]:
    """Drop a named stage from an HTTP API path (`/prod/v1/models` -> `/v1/models`).

    HTTP API (2.0) events carry the stage in `rawPath` and `requestContext.http.path` for
    every stage but `$default`; REST API (1.0) events already give `path` without it.
    """
    context = event.get("requestContext") or {}
    stage, http = context.get("stage") or "$default", context.get("http")
    prefix = f"/{stage}/"
    if stage == "$default" or not isinstance(http, dict) or not str(http.get("path", "")).startswith(prefix):
        return event
    unstaged = lambda path: path[len(prefix) - 1 :] if path.startswith(prefix) else path  # noqa: E731
    return {
        **event,
        "rawPath": unstaged(str(event.get("rawPath", ""))),
        "requestContext": {**context, "http": {**http, "path": unstaged(http["path"])}},
    }


def default_sources(function: LoadedFunction) -> list[type]:
    """HTTP first; the upload sources where `function.toml` has `[triggers] uploads = true`."""
    if not function.config.uploads:
        return [HttpEvents]
    from medfn.pipeline.lambda_sources import UPLOAD_SOURCES  # keys only: no boto3 until an upload

    return [HttpEvents, *UPLOAD_SOURCES]


def make_handler(handler_file: str, sources: list[type] | None = None) -> Handler:
    """Load the function beside `handler_file` at init and return its `handler(event, context)`.

    This is the Lambda init, run once per process: the heavy imports and the model load run
    with the garbage collector paused, and what they made is frozen (medfn.startup).
    """
    with collector_paused():
        from medfn.function import load_function

        function = load_function(Path(handler_file).resolve().parent)
        snapstart.register([function.store])  # re-seed and reconnect after a SnapStart restore
        warm_http = function.config.http and os.environ.get("MEDFN_WARM_HTTP", "1") != "0"
        ordered: list[type] = sources if sources is not None else default_sources(function)
        built: dict[type, Any] = {HttpEvents: HttpEvents(function)} if warm_http and HttpEvents in ordered else {}

    def handler(event: dict[str, Any], context: Any) -> Any:
        for source in ordered:
            if isinstance(event, dict) and source.infer(event):
                if source not in built:
                    built[source] = source(function)
                return built[source](event, context)
        log.warning("ignored an event of unknown shape (keys: %s)", sorted(event)[:8] if isinstance(event, dict) else type(event).__name__)
        return {"ignored": True}

    handler.function = function  # type: ignore[attr-defined]  # for tests and the local gateway
    return handler
