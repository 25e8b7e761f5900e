"""`medfn watch DIR`: DIR/incoming polled for scans, each one through the same ScanWorker as S3.

Polling, not inotify: it works the same on network shares and in containers, and a scan
takes far longer to analyse than a directory listing. A file is taken once it has not
changed for `settle_s` seconds, so a copy still in progress is never read half-written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from medfn.errors import TransientFailure
from medfn.pipeline.folder_storage import FolderStorage
from medfn.pipeline.types import BatchSummary, ObjectRef
from medfn.pipeline.worker import ScanWorker

log = logging.getLogger(__name__)

_SKIPPED_SUFFIXES = (".part", ".tmp", ".crdownload")  # downloads and copies still in progress


@dataclass
class FolderWatch:
    storage: FolderStorage
    worker: ScanWorker
    settle_s: float = 1.0
    progress: bool = True
    total: BatchSummary = field(default_factory=BatchSummary)  # everything since the start
    # (key, identity) of files settled in this session, so each poll lists only news;
    # the status table is what makes a restart skip them.
    _done: set[tuple[str, str]] = field(default_factory=set)
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)

    def pending(self, settle_s: float | None = None) -> list[ObjectRef]:
        """Files under incoming/ unchanged for `settle_s` and not yet handled here, oldest first."""
        settle_s, now = self.settle_s if settle_s is None else settle_s, time.time()
        found: list[tuple[float, ObjectRef]] = []
        for path in self.storage.incoming.rglob("*"):
            if path.name.startswith(".") or path.name.endswith(_SKIPPED_SUFFIXES):
                continue
            if self.storage.outside(path):  # a link out of the folder is no upload to it
                continue
            try:
                if not path.is_file() or now - path.stat().st_mtime < settle_s:
                    continue
                ref = self.storage.ref_for(path)
                mtime = path.stat().st_mtime
            except FileNotFoundError:  # moved away between the listing and the look
                continue
            if (ref.key, ref.identity) not in self._done:
                found.append((mtime, ref))
        return [ref for _, ref in sorted(found, key=lambda item: (item[0], item[1].key))]

    def process(self, refs: list[ObjectRef]) -> BatchSummary:
        """Settle each of `refs`; a transient failure is retried on a later pass, up to the limit."""
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        summary = BatchSummary()
        bar = tqdm(total=len(refs), unit="scan", desc="scans", disable=not self.progress or len(refs) < 2)
        with bar, logging_redirect_tqdm():
            for ref in refs:
                self._process_one(ref, summary)
                bar.update(1)
        return summary

    def run(self, poll_s: float = 1.0, once: bool = False, stop: Callable[[], bool] = lambda: False) -> BatchSummary:
        """Process the backlog, then what arrives, until `stop()` (or right after, with `once`)."""
        while True:
            refs = self.pending(settle_s=0.0 if once else None)  # once: take the backlog as it is
            if refs:
                self.total.add(self.process(refs))
            if once or stop():
                return self.total
            time.sleep(poll_s)

    def _process_one(self, ref: ObjectRef, summary: BatchSummary) -> None:
        marker = (ref.key, ref.identity)
        attempt = self._failures.get(marker, 0) + 1
        try:
            handled = self.worker.process(ref, attempt)
        except TransientFailure:
            self._failures[marker] = attempt
            if attempt >= self.worker.settings.max_attempts:
                self._done.add(marker)  # the worker recorded the error; a restart tries again
            summary.transient.append(ref.key)
            return
        self._done.add(marker)
        self._failures.pop(marker, None)
        summary.count(handled)
