"""S3 event notifications invoking the function directly (asynchronous invokes).

A transient failure raises, so Lambda retries the event and then hands it to the function's
on-failure destination; the status table counts the attempts. Keys in S3 notifications arrive
URL-encoded (`+` for a space) and are decoded here, once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from medfn.pipeline.types import Announced, ObjectRef
from medfn.sources._uploads import UploadSource, int_or_none


def is_s3_notification(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and isinstance(records[0], dict)
        and records[0].get("eventSource") == "aws:s3"
    )


def from_s3_notification(event: dict[str, Any]) -> Announced:
    """The new objects a notification names; its other events (removals, ...) are ignored."""
    from aws_lambda_powertools.utilities.data_classes import S3Event

    announced = Announced()
    for record in S3Event(event).records:
        name = record.get("eventName", "")
        if not str(name).startswith("ObjectCreated:"):
            announced.ignored.append(f"S3 {name or 'event without a name'}")
            continue
        obj = record.s3.get_object
        announced.objects.append(
            ObjectRef(
                bucket=record.s3.bucket.name,
                key=unquote_plus(obj.key),
                version_id=obj.get("versionId") or None,
                etag=obj.get("eTag") or None,
                size=int_or_none(obj.get("size")),
            )
        )
    return announced


class S3Notifications(UploadSource):
    name = "s3"

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        return is_s3_notification(event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.settle(from_s3_notification(event)).as_dict()
