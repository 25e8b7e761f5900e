"""EventBridge rules matching S3's "Object Created" (its other events are ignored).

Invoked asynchronously, as S3 notifications are: a transient failure raises so Lambda retries.
Powertools decodes EventBridge keys itself; optional fields are read with defaults.
"""

from __future__ import annotations

from typing import Any

from medfn.pipeline.types import Announced, ObjectRef
from medfn.sources._uploads import UploadSource, int_or_none


def is_s3_eventbridge(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.s3" and "detail-type" in event and isinstance(event.get("detail"), dict)


def from_s3_eventbridge(event: dict[str, Any]) -> Announced:
    from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

    parsed = S3EventBridgeNotificationEvent(event)
    if parsed.detail_type != "Object Created":
        return Announced(ignored=[f"EventBridge {parsed.detail_type!r}"])
    obj = parsed.detail.object
    return Announced(
        objects=[
            ObjectRef(
                bucket=parsed.detail.bucket.name,
                key=obj.key,
                version_id=obj.get("version-id") or None,
                etag=obj.get("etag") or None,
                size=int_or_none(obj.get("size")),
            )
        ]
    )


class S3EventBridgeEvents(UploadSource):
    name = "eventbridge-s3"

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        return is_s3_eventbridge(event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.settle(from_s3_eventbridge(event)).as_dict()
