"""Lambda event sources: one module each, tried in order by `medfn.lambda_handler`.

    base.py         the `EventSource` protocol every source follows
    http.py         API Gateway REST and HTTP APIs, ALB, Function URLs: the FastAPI app via Mangum
    s3.py           S3 event notifications invoking the function directly
    sqs.py          SQS batches whose messages carry S3 notifications or EventBridge events
    eventbridge.py  EventBridge "Object Created" events from S3
    queue_worker.py not a Lambda source: `medfn work`, the upload queue long-polled by a process of
                    our own (GPU scan workers), settled as SqsUploads settles it

A new event source is a new module here with a class that follows `EventSource`, and its place
in `sources_for`. Each `infer` only looks at keys, so picking a source imports nothing heavy;
Mangum, boto3 and Powertools load when a source is built, at its first event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medfn.sources.base import EventSource
from medfn.sources.eventbridge import S3EventBridgeEvents
from medfn.sources.http import HttpEvents
from medfn.sources.s3 import S3Notifications
from medfn.sources.sqs import SqsUploads

if TYPE_CHECKING:
    from medfn.function import LoadedFunction

__all__ = [
    "UPLOAD_SOURCES",
    "EventSource",
    "HttpEvents",
    "S3EventBridgeEvents",
    "S3Notifications",
    "SqsUploads",
    "sources_for",
]

# The sources of uploaded scans, in the order they are tried; their predicates never overlap.
UPLOAD_SOURCES: list[type[EventSource]] = [S3Notifications, SqsUploads, S3EventBridgeEvents]


def sources_for(function: LoadedFunction) -> list[type[EventSource]]:
    """HTTP first; the upload sources where `function.toml` has `[triggers] uploads = true`."""
    if not function.config.uploads:
        return [HttpEvents]
    return [HttpEvents, *UPLOAD_SOURCES]
