"""What the upload sources share: the scan worker they build at their first event, in AWS.

The worker is built here, not at import, so that deciding what an event is (at every
invocation, HTTP ones included) loads none of it: S3, DynamoDB and the pipeline's worker
load at the first upload event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medfn.function import LoadedFunction
    from medfn.pipeline.types import Announced, BatchSummary


class UploadSource:
    """Builds the function's scan worker with S3 storage and the DynamoDB status table."""

    def __init__(self, function: LoadedFunction) -> None:
        from medfn.pipeline.dynamo_status import DynamoStatusTable
        from medfn.pipeline.s3_storage import S3Storage
        from medfn.pipeline.settings import PipelineSettings
        from medfn.pipeline.worker import ScanWorker

        settings = PipelineSettings.from_env()
        self.worker = ScanWorker(
            plane=function.plane,
            model=function.config.model,
            storage=S3Storage(settings),
            status=DynamoStatusTable(settings.status_table),
            settings=settings,
        )

    def settle(self, announced: Announced, attempt: int | None = None) -> BatchSummary:
        return self.worker.process_announced(announced, attempt)


def int_or_none(value: Any) -> int | None:
    """An optional event field that should be a whole number (an object's size)."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
