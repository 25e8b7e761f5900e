"""Settling the objects an upload event announces, with the S3 store and the DynamoDB table.

Split from lambda_sources so that deciding what an event is (at every invocation, HTTP ones
included) imports none of this: the worker, S3 and DynamoDB load at the first upload event.
"""

from __future__ import annotations

import logging

from medfn.function import LoadedFunction
from medfn.pipeline.errors import TransientFailure
from medfn.pipeline.events import Announced
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
