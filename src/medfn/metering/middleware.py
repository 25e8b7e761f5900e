"""The ASGI middleware that meters every call naming a model, and gates keys locally.

It sits outermost in the app, so a rejected key costs nothing further and every answer,
500s included, is measured. Who called: API Gateway's `requestContext.identity.apiKeyId`
(Mangum puts the Lambda event in `scope["aws.event"]`), else the local key's id.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medfn.metering.record import ANONYMOUS, Meter, UsageRecord

if TYPE_CHECKING:  # the key store is a local-gateway feature: Lambda never loads it
    from medfn.metering.keys import KeyGate

# /v1/models/{model}/predict, /v2/models/{model}[/versions/{v}][/infer|/ready]
_MODEL_PATH = re.compile(r"^/v[12]/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<rest>/[^/]*)?$")
_BILLED_ACTIONS = {"/predict", "/infer"}
# Health answers load balancers and uptime checks: API Gateway routes it without a key too.
# The docs pages exist only locally (API Gateway does not route them); a browser sends no key.
_OPEN_PATHS = {"/v2/health/live", "/v2/health/ready", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
_WATCHED_HEADERS = frozenset({b"x-model-version", b"x-request-id"})  # read off each model answer
UNKNOWN = "unknown"  # a model or version that the path names but nothing serves


@dataclass
class Metering:
    meter: Meter
    gate: KeyGate | None = None
    memory_mb: dict[str, int] = field(default_factory=dict)  # model -> its function's memory
    default_memory_mb: int = 1024


def from_environment() -> Metering | None:
    """EMF metering inside Lambda (where AWS_LAMBDA_FUNCTION_NAME is set), none elsewhere."""
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if not function:
        return None
    from medfn.metering.emf import EmfMeter

    memory = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))
    return Metering(meter=EmfMeter(function), default_memory_mb=memory)


class MeteringMiddleware:
    def __init__(self, app: ASGIApp, metering: Metering, plane: Any) -> None:
        self.app = app
        self.metering = metering
        self.plane = plane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.time()
        path: str = scope["path"]
        key_id = _gateway_key_id(scope)
        gate = self.metering.gate
        if gate is not None and path not in _OPEN_PATHS:
            key_id, refusal = gate.admit(_header(scope, b"x-api-key"))
            if refusal is not None:
                await _refuse(send, *refusal)
                return
        match = _MODEL_PATH.match(path)
        if match is None:
            await self.app(scope, receive, send)
            return
        status = 500
        answered: dict[bytes, str] = {}

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                answered.update(_response_headers(message, _WATCHED_HEADERS))
            await send(message)

        clock = time.perf_counter()
        try:
            await self.app(scope, receive, watching_send)
        finally:
            duration_ms = (time.perf_counter() - clock) * 1000
            # A caller's text never becomes a metric dimension: what no served model names is "unknown".
            model = match["model"] if match["model"] in self.plane.names else UNKNOWN
            billed = 1 if 200 <= status < 300 and match["rest"] in _BILLED_ACTIONS else 0
            self.metering.meter.record(
                UsageRecord(
                    timestamp=started,
                    api_key_id=key_id or ANONYMOUS,
                    model=model,
                    version=answered.get(b"x-model-version") or self._served_version(model, match["version"]),
                    status=status,
                    duration_ms=duration_ms,
                    billed_units=billed,
                    memory_mb=self.metering.memory_mb.get(model, self.metering.default_memory_mb),
                    request_id=_request_id(scope, answered),
                )
            )

    def _served_version(self, model: str, asked: str | None) -> str:
        try:
            return str(self.plane.get(model, asked).version)
        except Exception:  # an unknown model or version: the call was answered 404 already
            return UNKNOWN


def _gateway_key_id(scope: Scope) -> str:
    event = scope.get("aws.event") or {}
    identity = (event.get("requestContext") or {}).get("identity") or {}
    return str(identity.get("apiKeyId") or "")


def _request_id(scope: Scope, answered: dict[bytes, str]) -> str:
    """Lambda's own id where there is one (it ties the record to the invocation's logs), else
    the id the caller was answered with: the one it sent, or one the route made."""
    context = scope.get("aws.context")
    return str(
        getattr(context, "aws_request_id", "") or answered.get(b"x-request-id") or _header(scope, b"x-request-id") or ""
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _response_headers(message: Message, names: frozenset[bytes]) -> dict[bytes, str]:
    found = {}
    for key, value in message.get("headers", ()):
        name = key.lower()
        if name in names:
            found[name] = str(value.decode("latin-1"))
    return found


async def _refuse(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"message": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
