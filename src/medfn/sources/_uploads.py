"""What the upload sources share: the scan worker they build at their first event, in AWS.

The worker is built here, not at import, so that deciding what an event is (at every
invocation, HTTP ones included) loads none of it: S3, DynamoDB and the pipeline's worker
load at the first upload event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medfn.config import SeriesConfig
    from medfn.function import LoadedFunction
    from medfn.pipeline.series.worker import SeriesWorker
    from medfn.pipeline.settings import PipelineSettings
    from medfn.pipeline.status import StatusTable
    from medfn.pipeline.storage import ScanStorage
    from medfn.pipeline.types import Announced, BatchSummary


class UploadSource:
    """Builds the function's scan worker with S3 storage and the DynamoDB status table."""

    def __init__(self, function: LoadedFunction) -> None:
        from medfn.dicomweb.destination import destination_from_env
        from medfn.metering.emf import EmfMeter
        from medfn.pipeline.dynamo_status import DynamoStatusTable
        from medfn.pipeline.s3_storage import S3Storage
        from medfn.pipeline.settings import PipelineSettings
        from medfn.pipeline.worker import ScanWorker

        settings = PipelineSettings.from_env()
        storage, status = S3Storage(settings), DynamoStatusTable(settings.status_table)
        self.worker = ScanWorker(
            plane=function.plane,
            model=function.config.model,
            storage=storage,
            status=status,
            settings=settings,
            meter=EmfMeter(function.config.name),
            destination=destination_from_env(),
            memory_mb=function.config.memory_mb,
            explain=function.config.explain,
        )
        if function.config.series is not None:
            self.worker.series = _series_worker(function, function.config.series, storage, status, settings)
            self.worker.series.destination = self.worker.destination

    def settle(self, announced: Announced, attempt: int | None = None) -> BatchSummary:
        return self.worker.process_announced(announced, attempt)


def _series_worker(
    function: LoadedFunction,
    series: SeriesConfig,
    storage: ScanStorage,
    status: StatusTable,
    settings: PipelineSettings,
) -> SeriesWorker:
    """A series function's: instances in the DynamoDB series table, checks as delayed SQS messages."""
    import os

    from medfn.pipeline.series.checks import SqsCheckSender
    from medfn.pipeline.series.dynamo_table import DynamoSeriesTable
    from medfn.pipeline.series.worker import SeriesWorker

    config = function.config
    return SeriesWorker(
        plane=function.plane,
        model=config.model,
        function=config.name,
        storage=storage,
        status=status,
        table=DynamoSeriesTable(
            os.environ.get("MEDFN_SERIES_TABLE", ""),
            retention_days=float(os.environ.get("MEDFN_SERIES_RETENTION_DAYS", "30")),
        ),
        settings=settings,
        settle_s=float(os.environ.get("MEDFN_SERIES_SETTLE_S", series.settle_s)),
        sender=SqsCheckSender(os.environ.get("MEDFN_SERIES_QUEUE_URL", "")),
        result_prefix=f"{config.name}/",  # results/<function>/<study>/<series>/: the role writes its own only
        memory_mb=config.memory_mb,
        lease_s=float(config.timeout_s) + 60.0,
    )


def int_or_none(value: Any) -> int | None:
    """An optional event field that should be a whole number (an object's size)."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
