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
import logging
from typing import Any

from medfn.function import LoadedFunction
from medfn.pipeline.errors import TransientFailure
from medfn.pipeline.events import (
    Announced,
    from_message_body,
    from_s3_eventbridge,
    from_s3_notification,
    is_s3_eventbridge,
    is_s3_notification,
    is_sqs_batch,
)
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.types import BatchSummary
from medfn.pipeline.worker import ScanWorker

log = logging.getLogger(__name__)


def aws_worker(function: LoadedFunction) -> ScanWorker:
    """The function's model with S3 storage and the DynamoDB status table, as configured."""
    from medfn.pipeline.dynamo_status import DynamoStatusTable
    from medfn.pipeline.s3_storage import S3Storage

    settings = PipelineSettings.from_env()
    return ScanWorker(
        plane=function.plane, model=function.config.model, storage=S3Storage(settings),
        status=DynamoStatusTable(settings.status_table), settings=settings,
    )


def process_announced(worker: ScanWorker, announced: Announced, attempt: int | None = None) -> BatchSummary:
    """Settle every announced object; raise TransientFailure at the end if any must be retried."""
    summary = BatchSummary(ignored=len(announced.ignored))
    for reason in announced.ignored:
        log.info("ignored: %s", reason)
    for ref in announced.objects:
        if worker.settings.is_own_output(ref.bucket, ref.key):
            log.info("ignored our own output: %s", ref.key)
            summary.ignored += 1
            continue
        try:
            handled = worker.process(ref, attempt)
        except TransientFailure:
            summary.transient.append(ref.key)
            continue
        summary.count(handled)
    if summary.transient:
        # The settled ones are skipped when the event comes again: only these are redone.
        raise TransientFailure(f"{len(summary.transient)} of {len(announced.objects)} objects will be retried")
    return summary


class _UploadSource:
    def __init__(self, function: LoadedFunction) -> None:
        self.worker = aws_worker(function)


class S3Notifications(_UploadSource):
    """S3 event notifications invoking the function directly."""

    name = "s3"

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        return is_s3_notification(event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_announced(self.worker, from_s3_notification(event)).as_dict()


class S3EventBridgeEvents(_UploadSource):
    """EventBridge rules matching S3's "Object Created" (and, ignored, its other events)."""

    name = "eventbridge-s3"

    @classmethod
    def infer(cls, event: dict[str, Any]) -> bool:
        return is_s3_eventbridge(event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_announced(self.worker, from_s3_eventbridge(event)).as_dict()


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
            process_announced(self.worker, from_message_body(body), attempt)

        # Not raising when every message failed: the response lists them all, same effect.
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        return dict(process_partial_response(event, handle, processor, context))


UPLOAD_SOURCES: list[type] = [S3Notifications, SqsUploads, S3EventBridgeEvents]
