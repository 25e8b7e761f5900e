"""`medfn watch DIR`: DIR/incoming polled for scans, each one through the same ScanWorker as S3.

Polling, not inotify: it works the same on network shares and in containers, and a scan
takes far longer to analyse than a directory listing. A file is taken once it has not
changed for `settle_s` seconds, so a copy still in progress is never read half-written;
files and folders whose names start with "." and names ending in `.part`, `.tmp` or
`.crdownload` are never taken (senders write there, then rename into place).

The folder is its own transport, so the retries SQS would make happen here: a transient
failure is tried again in the same run after a short backoff (doubling, from `retry_s`),
up to the worker's `max_attempts`; the last one leaves the retryable error record, so even
`--once` ends with one record per file. Only a file whose record cannot be written at all
(the status table itself failing) is left without one: it stays in incoming/, and the next
run (or, when watching, the next backoff) tries again.

For a series function the files are DICOM instances: each poll also answers the series that
have settled (no new instance for the function's `local_settle_s`; with `--once`, every series
once the backlog is in), through the same series worker as AWS's delayed checks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from stat import S_ISREG

from medfn.errors import TransientFailure
from medfn.pipeline.folder_storage import FolderStorage
from medfn.pipeline.series.sqlite_table import SqliteSeriesTable
from medfn.pipeline.types import BatchSummary, ObjectRef, SeriesCheck
from medfn.pipeline.worker import ScanWorker

log = logging.getLogger(__name__)

_SKIPPED_SUFFIXES = (".part", ".tmp", ".crdownload")  # downloads and copies still in progress
_MAX_BACKOFF_S = 30.0  # between retries of a scan whose record cannot be written (watching)
_NAP_S = 0.1  # the longest a wait goes without looking at `stop`

Marker = tuple[str, str]  # (key, identity): one version of one file


def _never() -> bool:
    return False


@dataclass
class FolderWatch:
    storage: FolderStorage
    worker: ScanWorker
    settle_s: float = 1.0
    progress: bool = True
    retry_s: float = 0.5  # the first wait before a transient failure is retried; doubled each time
    total: BatchSummary = field(default_factory=BatchSummary)  # everything since the start, kept as it goes
    # (key, identity) of files settled here while they stayed in incoming/, so each poll lists
    # only news; the status table is what makes a restart (or a file's return) skip them.
    _done: set[Marker] = field(default_factory=set)
    _failures: dict[Marker, int] = field(default_factory=dict)  # failed attempts so far
    _retrying: dict[Marker, tuple[ObjectRef, float]] = field(default_factory=dict)  # -> when (monotonic)
    _unrecorded: dict[Marker, ObjectRef] = field(default_factory=dict)  # --once: out of attempts, no record
    series: SqliteSeriesTable | None = None  # the series worker's table, asked what is due at each poll
    _once: bool = False
    _stop: Callable[[], bool] = field(default_factory=lambda: _never)

    def __post_init__(self) -> None:
        self.worker.redelivers = False  # nothing redelivers a file: the last attempt's record is its outcome

    def pending(self, settle_s: float | None = None) -> list[ObjectRef]:
        """Files under incoming/ unchanged for `settle_s` and not yet handled here, oldest first."""
        settle_s, now = self.settle_s if settle_s is None else settle_s, time.time()
        found: list[tuple[float, ObjectRef]] = []
        present: set[Marker] = set()
        for path in self.storage.incoming.rglob("*"):
            relative = path.relative_to(self.storage.incoming).parts
            if any(part.startswith(".") for part in relative) or path.name.endswith(_SKIPPED_SUFFIXES):
                continue
            if self.storage.outside(path):  # a link out of the folder is no upload to it
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # moved away between the listing and the look
                continue
            if not S_ISREG(stat.st_mode):
                continue
            ref = self.storage.ref_for(path, stat)
            present.add((ref.key, ref.identity))
            if now - stat.st_mtime < settle_s:
                continue
            if (ref.key, ref.identity) not in self._done:
                found.append((stat.st_mtime, ref))
        # A file that left the folder is forgotten here: if it comes back, the status table
        # says whether it is settled (a duplicate) or still to be processed.
        self._done &= present
        return [ref for _, ref in sorted(found, key=lambda item: (item[0], item[1].key))]

    def process(self, refs: list[ObjectRef]) -> BatchSummary:
        """One attempt at each of `refs` (until `stop`); what failed transiently is scheduled for
        a retry, which `run` makes. Each outcome is added to `total` as soon as it is known."""
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        summary = BatchSummary()
        bar = tqdm(total=len(refs), unit="scan", desc="scans", disable=not self.progress or len(refs) < 2)
        try:
            with bar, logging_redirect_tqdm():
                for ref in refs:
                    if self._stop():
                        break
                    self._process_one(ref, summary)
                    bar.update(1)
        finally:
            self._count_retrying()
        return summary

    def run(self, poll_s: float = 1.0, once: bool = False, stop: Callable[[], bool] = _never) -> BatchSummary:
        """Process the backlog, then what arrives, until `stop()`; with `once`, the backlog only,
        and its retries, until each file has its record (or `stop()`)."""
        self._once, self._stop = once, stop
        try:
            listed = False
            while not stop():
                fresh = [] if once and listed else self.pending(settle_s=0.0 if once else None)
                listed = True
                now = time.monotonic()
                due = [ref for ref, at in self._retrying.values() if at <= now]
                fresh = [ref for ref in fresh if (ref.key, ref.identity) not in self._retrying]
                if due or fresh:
                    self.process(due + fresh)
                self.answer_settled_series(settle_now=once and not self._retrying)
                if once and not self._retrying and not self._series_open():
                    break
                wake = math.inf if once else time.monotonic() + poll_s
                if once and self._series_open():  # a series that failed transiently: its next attempt
                    wake = time.monotonic() + self.retry_s
                if self._retrying:
                    wake = min(wake, *(at for _, at in self._retrying.values()))
                self._sleep_until(wake)
        finally:
            self._once, self._stop = False, _never
            self._count_retrying()
        return self.total

    def answer_settled_series(self, settle_now: bool = False) -> None:
        """Answer each series that has settled (`settle_now`: every one with unanswered instances);
        a transient failure is tried again at a later poll, up to the worker's max_attempts."""
        series = self.worker.series
        if self.series is None or series is None:
            return
        for key in self.series.due(time.time(), 0.0 if settle_now else series.settle_s):
            if self._stop():
                return
            try:
                handled = series.check(SeriesCheck(key.id, 0), complete=settle_now)
            except TransientFailure:
                continue
            self.total.count(handled)

    def _series_open(self) -> bool:
        """Some series still has instances that no record answers (with --once: keep going)."""
        return self.series is not None and bool(self.series.due(math.inf, 0.0))

    def _count_retrying(self) -> None:
        """`total`'s "retrying": the scans waiting for another attempt, each once, however many
        attempts it has had."""
        self.total.transient = [ref.key for ref, _ in self._retrying.values()]
        self.total.transient += [ref.key for ref in self._unrecorded.values()]

    def _sleep_until(self, wake: float) -> None:
        while not self._stop() and (left := wake - time.monotonic()) > 0:
            time.sleep(min(left, _NAP_S))

    def _process_one(self, ref: ObjectRef, summary: BatchSummary) -> None:
        marker = (ref.key, ref.identity)
        attempt = self._failures.get(marker, 0) + 1
        self._retrying.pop(marker, None)
        try:
            handled = self.worker.process(ref, attempt)
        except TransientFailure:
            self._failed(ref, attempt, summary)
        else:
            self._done.add(marker)
            self._failures.pop(marker, None)
            self._unrecorded.pop(marker, None)
            summary.count(handled)
            self.total.count(handled)

    def _failed(self, ref: ObjectRef, attempt: int, summary: BatchSummary) -> None:
        marker = (ref.key, ref.identity)
        if not self.storage.present(ref):
            # Moved away before it was read: nothing to retry, nothing to record. Not in
            # _done either, so it is processed if it comes back.
            self._failures.pop(marker, None)
            log.info("%s left incoming/ before it was processed: processed if it comes back", ref.shown)
            summary.ignored += 1
            self.total.ignored += 1
            return
        self._failures[marker] = attempt
        summary.transient.append(ref.key)
        limit = self.worker.settings.max_attempts
        if self._once and attempt >= limit:
            self._unrecorded[marker] = ref
            log.error("no record for %s after %d attempts: it stays in incoming/ for the next run", ref.shown, attempt)
            return
        wait = min(self.retry_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
        self._retrying[marker] = (ref, time.monotonic() + wait)
        log.info("%s: attempt %d of %d failed, tried again in %.1f s", ref.shown, attempt, limit, wait)
