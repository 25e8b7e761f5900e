"""The local embedded default, assembled: a folder for storage, SQLite for the status (and series)
tables, the workers, and the watch that feeds them (`medfn watch`, and tests that drive it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medfn.pipeline.folder_storage import FolderStorage
from medfn.pipeline.folder_watch import FolderWatch
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.sqlite_status import SqliteStatusTable
from medfn.pipeline.worker import ScanWorker

if TYPE_CHECKING:
    from medfn.dicomweb.destination import ResultDestination
    from medfn.function import LoadedFunction
    from medfn.pipeline.series.sqlite_table import SqliteSeriesTable


@dataclass
class LocalPipeline:
    watch: FolderWatch
    status: SqliteStatusTable
    series: SqliteSeriesTable | None

    def close(self) -> None:
        self.status.close()
        if self.series is not None:
            self.series.close()


def open_local_pipeline(
    root: Path,
    function: LoadedFunction,
    settings: PipelineSettings,
    *,
    destination: ResultDestination | None = None,
    settle_s: float = 1.0,
    progress: bool = True,
    once: bool = False,
) -> LocalPipeline:
    """`root`/incoming watched for `function`; `once`: a series that keeps failing ends with its
    retryable error record instead of being tried again (a watcher left running keeps trying)."""
    storage = FolderStorage(root, settings)
    status = SqliteStatusTable(storage.root / "status.sqlite3")
    worker = ScanWorker(
        plane=function.plane,
        model=function.config.model,
        storage=storage,
        status=status,
        settings=settings,
        destination=destination,
        explain=function.config.explain,
    )
    series_table = None
    if function.config.series is not None:  # DICOM instances, answered series by series
        from medfn.pipeline.series.sqlite_table import SqliteSeriesTable
        from medfn.pipeline.series.worker import SeriesWorker

        series_table = SqliteSeriesTable(storage.root / "status.sqlite3")
        worker.series = SeriesWorker(
            plane=function.plane,
            model=function.config.model,
            function=function.config.name,
            storage=storage,
            status=status,
            table=series_table,
            settings=settings,
            settle_s=function.config.series.local_settle_s,
            memory_mb=function.config.memory_mb,
            redelivers=False,
            destination=destination,
            give_up=once,
        )
    watch = FolderWatch(storage=storage, worker=worker, settle_s=settle_s, progress=progress, series=series_table)
    return LocalPipeline(watch, status, series_table)
