"""Event shapes -> the objects they name, read with Powertools' event data classes.

Three shapes announce an upload: an S3 notification (`Records[].eventSource == "aws:s3"`),
the same notification inside SQS message bodies, and an EventBridge "Object Created" event
from S3 (also possibly inside SQS). Keys in S3 notifications arrive URL-encoded (`+` for a
space) and are decoded here, once; Powertools decodes EventBridge keys itself. Optional fields
are read with defaults. Anything that is not a new object comes back as a reason to ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from medfn.pipeline.types import ObjectRef


@dataclass
class Announced:
    """The objects an event announces, and why the rest of it was ignored."""

    objects: list[ObjectRef] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def is_s3_notification(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and isinstance(records[0], dict) \
        and records[0].get("eventSource") == "aws:s3"


def is_sqs_batch(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and isinstance(records[0], dict) \
        and records[0].get("eventSource") == "aws:sqs"


def is_s3_eventbridge(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.s3" and "detail-type" in event and isinstance(event.get("detail"), dict)


def from_s3_notification(event: dict[str, Any]) -> Announced:
    from aws_lambda_powertools.utilities.data_classes import S3Event

    announced = Announced()
    for record in S3Event(event).records:
        name = record.get("eventName", "")
        if not str(name).startswith("ObjectCreated:"):
            announced.ignored.append(f"S3 {name or 'event without a name'}")
            continue
        obj = record.s3.get_object
        announced.objects.append(ObjectRef(
            bucket=record.s3.bucket.name,
            key=unquote_plus(obj.key),
            version_id=obj.get("versionId") or None,
            etag=obj.get("eTag") or None,
            size=_int_or_none(obj.get("size")),
        ))
    return announced


def from_s3_eventbridge(event: dict[str, Any]) -> Announced:
    from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

    parsed = S3EventBridgeNotificationEvent(event)
    if parsed.detail_type != "Object Created":
        return Announced(ignored=[f"EventBridge {parsed.detail_type!r}"])
    obj = parsed.detail.object
    return Announced(objects=[ObjectRef(
        bucket=parsed.detail.bucket.name,
        key=obj.key,
        version_id=obj.get("version-id") or None,
        etag=obj.get("etag") or None,
        size=_int_or_none(obj.get("size")),
    )])


def from_message_body(body: Any) -> Announced:
    """An SQS message body: an S3 notification, an EventBridge event, or a test message."""
    if not isinstance(body, dict):
        return Announced(ignored=["SQS message whose body is not a JSON object"])
    if body.get("Event") == "s3:TestEvent":  # S3 sends one when the notification is configured
        return Announced(ignored=["s3:TestEvent"])
    if is_s3_notification(body):
        return from_s3_notification(body)
    if is_s3_eventbridge(body):
        return from_s3_eventbridge(body)
    return Announced(ignored=[f"SQS message of unknown shape (keys: {sorted(body)[:6]})"])


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
