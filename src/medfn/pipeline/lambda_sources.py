"""The upload event sources `medfn.lambda_handler` dispatches to, beside HTTP.

Each has `infer(event)`, which only looks at keys, and is built once per function, at its
first event; the S3 client, the status table and Powertools load then, never for HTTP.

- S3 notifications and EventBridge events (asynchronous invokes): a transient failure
  raises, so Lambda retries the event and then hands it to the function's on-failure
  destination; the status table counts the attempts.
- SQS batches: each message succeeds or fails alone (`batchItemFailures`), SQS counts the
  attempts (ApproximateReceiveCount) and moves a message to the dead-letter queue after
  the queue's maxReceiveCount, which MEDFN_MAX_ATTEMPTS should equal.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from medfn.pipeline.events import (
    from_message_body,
    from_s3_eventbridge,
    from_s3_notification,
    is_s3_eventbridge,
    is_s3_notification,
    is_sqs_batch,
)

if TYPE_CHECKING:
    from medfn.function import LoadedFunction


class _UploadSource:
    def __init__(self, function: LoadedFunction) -> None:
        from medfn.pipeline.aws_processing import aws_worker, process_announced

        self.worker = aws_worker(function)
        self.process = process_announced


class S3Notifications(_UploadSource):
    """S3 event notifications invoking the function directly."""

    name = "s3"

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        return is_s3_notification(event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.process(self.worker, from_s3_notification(event)).as_dict()


class S3EventBridgeEvents(_UploadSource):
    """EventBridge rules matching S3's "Object Created" (and, ignored, its other events)."""

    name = "eventbridge-s3"

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        return is_s3_eventbridge(event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.process(self.worker, from_s3_eventbridge(event)).as_dict()


class SqsUploads(_UploadSource):
    """SQS batches whose messages carry S3 notifications or EventBridge events."""

    name = "sqs-s3"

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        return is_sqs_batch(event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
        from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

        def handle(record: SQSRecord) -> None:
            try:
                body = json.loads(record.body)
            except ValueError:
                body = None  # never valid: retrying would only delay the ignore
            attributes = record.get("attributes") or {}
            attempt = int(attributes.get("ApproximateReceiveCount") or 1)
            self.process(self.worker, from_message_body(body), attempt)

        # Not raising when every message failed: the response lists them all, same effect.
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        return dict(process_partial_response(event, handle, processor, context))


UPLOAD_SOURCES: list[type] = [S3Notifications, SqsUploads, S3EventBridgeEvents]
