"""SQS batches whose messages carry S3 notifications or EventBridge events from S3, or the
series checks a series function sends itself (medfn.pipeline.series).

Each message succeeds or fails alone (`batchItemFailures`): SQS counts the attempts
(ApproximateReceiveCount) and moves a message to the dead-letter queue after the queue's
maxReceiveCount, which MEDFN_MAX_ATTEMPTS should equal.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from medfn.pipeline.types import Announced, SeriesCheck
from medfn.sources._uploads import UploadSource
from medfn.sources.eventbridge import from_s3_eventbridge, is_s3_eventbridge
from medfn.sources.s3 import from_s3_notification, is_s3_notification

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


def is_sqs_batch(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and isinstance(records[0], dict)
        and records[0].get("eventSource") == "aws:sqs"
    )


def from_message_body(body: Any) -> Announced:
    """An SQS message body: an S3 notification, an EventBridge event, or a test message."""
    if not isinstance(body, dict):
        return Announced(ignored=["SQS message whose body is not a JSON object"])
    if body.get("medfn") == "series-check":
        series, generation = body.get("series"), body.get("generation")
        if isinstance(series, str) and series.count("/") == 2 and isinstance(generation, int):
            return Announced(checks=[SeriesCheck(series, generation)])
        return Announced(ignored=["series check without a series id and generation"])
    if body.get("Event") == "s3:TestEvent":  # S3 sends one when the notification is configured
        return Announced(ignored=["s3:TestEvent"])
    if is_s3_notification(body):
        return from_s3_notification(body)
    if is_s3_eventbridge(body):
        return from_s3_eventbridge(body)
    return Announced(ignored=[f"SQS message of unknown shape (keys: {sorted(body)[:6]})"])


class SqsUploads(UploadSource):
    name = "sqs-s3"

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        return is_sqs_batch(event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

        def handle(record: SQSRecord) -> None:
            try:
                body = json.loads(record.body)
            except ValueError:
                body = None  # never valid: retrying would only delay the ignore
            attributes = record.get("attributes") or {}
            attempt = int(attributes.get("ApproximateReceiveCount") or 1)
            self.settle(from_message_body(body), attempt)

        # Not raising when every message failed: the response lists them all, same effect.
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        return dict(process_partial_response(event, handle, processor, context))
