"""HTTP events: API Gateway REST (1.0) and HTTP API (2.0), ALB, Function URLs, through Mangum.

Lifespan is off: the model is loaded at init, not per invocation. The app runs every model
call inline, since a Lambda environment serves one request at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medfn.dicomweb.sinks import InstanceSink
    from medfn.function import LoadedFunction


class HttpEvents:
    name = "http"

    def __init__(self, function: LoadedFunction) -> None:
        from mangum import Mangum
        from mangum.adapter import DEFAULT_TEXT_MIME_TYPES

        from medfn.http import create_app

        self.app = create_app(
            function.plane,
            max_body_bytes=function.config.max_body_bytes,
            title=f"medfn {function.config.name}",
            metrics_route=False,  # a sandbox's counters die with it: CloudWatch has the figures
            dicomweb_sink=upload_sink(function),
        )
        # "+json" (DICOM JSON, FHIR) is text: sent as is, not base64 that a client must ask to decode
        self.adapter = Mangum(self.app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "+json"])

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        context = event.get("requestContext") or {}
        return "httpMethod" in event or "http" in context or "elb" in context

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        return self.adapter(strip_stage(event), context)


def upload_sink(function: LoadedFunction) -> InstanceSink | None:
    """STOW-RS for a function that takes uploads: instances go to its own prefix of the upload
    bucket (`<function>/`), whose events bring them back to it as uploads (docs/pacs.md)."""
    import os

    bucket = os.environ.get("MEDFN_UPLOAD_BUCKET", "")
    if not function.config.uploads or not bucket:
        return None
    from medfn.dicomweb.sinks import S3Sink

    return S3Sink(bucket, f"{function.config.name}/")


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

    def unstaged(path: str) -> str:
        return path[len(prefix) - 1 :] if path.startswith(prefix) else path

    return {
        **event,
        "rawPath": unstaged(str(event.get("rawPath", ""))),
        "requestContext": {**context, "http": {**http, "path": unstaged(http["path"])}},
    }
