"""One uploaded object from event to record: the part every transport shares.

    settled already? -> duplicate, nothing written (poison: finish releasing the original)
    fetch -> analyse -> write result(s) -> record "result"
    (a series function: fetch -> add the instance to its series; the series is answered when a
     check finds it complete, medfn.pipeline.series.worker)
    poison (a 4xx MedfnError)  -> quarantine -> record "error" -> release the original
    transient (5xx, a bug)     -> count the attempt; after the last, record a retryable
                                  "error"; raise TransientFailure so the delivery is retried
                                  (SQS: a batchItemFailure, then the dead-letter queue)

Every step can be repeated: results and quarantine copies are overwritten under the same
name, and the record is a conditional write, so a redelivered event never makes a second one.
Logs carry the object's key and DICOM UIDs only, never its content or a parser's text.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from medfn.errors import ObjectMissing, TransientFailure, UnprocessableInput
from medfn.metering.record import ANONYMOUS, Meter, UsageRecord
from medfn.pipeline.analysis import Analysis, analyse
from medfn.pipeline.failures import error_code, is_poison, safe_reason
from medfn.pipeline.results import render
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.status import StatusTable, now_iso
from medfn.pipeline.storage import ScanStorage
from medfn.pipeline.types import Announced, BatchSummary, ObjectRef, StatusRecord
from medfn.serving import InferencePlane

if TYPE_CHECKING:
    from medfn.dicomweb.destination import ResultDestination
    from medfn.pipeline.series.worker import SeriesWorker

log = logging.getLogger(__name__)

Handled = Literal["result", "error", "duplicate", "instance", "waiting"]


@dataclass
class ScanWorker:
    plane: InferencePlane
    model: str
    storage: ScanStorage
    status: StatusTable
    settings: PipelineSettings
    # Whether the transport delivers an object again after its last failed attempt (SQS, then
    # its dead-letter queue): the last attempt then still raises TransientFailure. `medfn watch`
    # sets False: nothing redelivers a file, so the retryable error record is its outcome.
    redelivers: bool = True
    # Where a DICOM scan's SR goes besides storage (a PACS). Delivered before the status record, so
    # a destination that stays down ends, after the last attempt, in the retryable error record
    # (a redrive delivers it); the SR keeps its UIDs on every attempt, so a PACS stores it once.
    destination: ResultDestination | None = None
    meter: Meter | None = None  # in AWS the EMF meter: an answered upload is a billed call like a predict
    memory_mb: int = 0  # the function's memory, as the metering record states it
    # Set for a function with `[series]`: uploads are instances of series, answered series by series
    series: SeriesWorker | None = None
    explain: bool = False  # function.toml `explain`: results carry the explanation (an overlay, in DICOM too)

    def process_announced(self, announced: Announced, attempt: int | None = None) -> BatchSummary:
        """Settle every object an event announced; raise TransientFailure at the end if any must
        be retried. The settled ones are skipped when the event comes again."""
        summary = BatchSummary(ignored=len(announced.ignored))
        for reason in announced.ignored:
            log.info("ignored: %s", reason)
        for ref in announced.objects:
            if self.settings.is_own_output(ref.bucket, ref.key):
                log.info("ignored our own output: %s", ref.shown)
                summary.ignored += 1
                continue
            try:
                handled = self.process(ref, attempt)
            except TransientFailure:
                summary.transient.append(ref.key)
                continue
            summary.count(handled)
        for check in announced.checks:
            if self.series is None:
                summary.ignored += 1
                log.info("ignored a series check: this function answers single scans")
                continue
            try:
                summary.count(self.series.check(check, attempt))
            except TransientFailure:
                summary.transient.append(check.series)
        if summary.transient:
            total = len(announced.objects) + len(announced.checks)
            raise TransientFailure(f"{len(summary.transient)} of {total} objects or series will be retried")
        return summary

    def process(self, ref: ObjectRef, attempt: int | None = None) -> Handled:
        """Settle `ref` or raise TransientFailure. `attempt`: the delivery's count where the
        transport keeps one (SQS ApproximateReceiveCount); otherwise the status table counts."""
        try:
            settled = self.status.settled(ref)
            if settled is not None:
                log.info("already recorded, skipped: %s (%s)", ref.shown, ref.identity)
                if settled.outcome == "error" and settled.location:
                    # poison with a quarantine copy; an error that kept nothing (a vanished
                    # object) must not remove the same bytes uploaded again under its key
                    self._finish_release(ref)
                return "duplicate"
            fetched = self.storage.fetch(ref)
            if fetched.key_id and self.status.used_before(ref):
                raise UnprocessableInput(
                    "this upload slot was used before: a slot takes one scan; ask POST /v1/uploads for another"
                )
            if self.series is not None:
                return self.series.arrive(ref, fetched.data)
            analysis = analyse(self.plane, self.model, fetched.data, explain=self.explain)
        except Exception as exc:  # sorted below: poison is recorded, the rest retried
            if is_poison(exc):
                return self._reject(ref, exc, attempt)
            return self._retry_or_give_up(ref, exc, attempt)
        try:
            return self._accept(ref, analysis, fetched.key_id)
        except Exception as exc:  # storage, or a FHIR report that fails validation: never the scan's fault
            return self._retry_or_give_up(ref, exc, attempt)

    def _accept(self, ref: ObjectRef, analysis: Analysis, key_id: str = "") -> Handled:
        at = now_iso()
        documents = render(ref, analysis, at, self.settings.formats)
        locations = [self.storage.write_result(ref, suffix, document) for suffix, document in documents.items()]
        dicom = [documents[suffix] for suffix in (".sr.dcm", ".explain.dcm") if suffix in documents]
        if self.destination is not None and dicom:  # before the record: see `destination`
            self.destination.deliver(dicom)
        body = analysis.body
        record = StatusRecord(
            ref=ref,
            outcome="result",
            location=locations[0],
            model=analysis.model,
            model_version=analysis.model_version,
            top_label=str(body.get("label") or ""),
            sop_instance_uid=str(body.get("sop_instance_uid", "")),
            recorded_at=at,
            key_id=key_id,
        )
        if not self.status.record(record):
            log.info("recorded meanwhile by another delivery, kept theirs: %s", ref.shown)
            return "duplicate"
        if self.meter is not None:  # one billed call per answered scan, to the key that asked for its slot
            self.meter.record(
                UsageRecord(
                    timestamp=time.time(),
                    api_key_id=key_id or ANONYMOUS,
                    model=analysis.model,
                    version=str(analysis.model_version),
                    status=200,
                    duration_ms=analysis.inference_ms,
                    billed_units=1,
                    memory_mb=self.memory_mb,
                    request_id=ref.identity,
                )
            )
        sop = hashlib.sha256(record.sop_instance_uid.encode()).hexdigest()[:12] if record.sop_instance_uid else "-"
        log.info("result for %s (%s, sop sha256 %s): %s", ref.shown, ref.identity, sop, record.top_label)
        return "result"

    def _reject(self, ref: ObjectRef, exc: BaseException, attempt: int | None) -> Handled:
        """A poison object: one error record, quarantined, never retried (unless storage fails)."""
        code, reason = error_code(exc), safe_reason(exc)
        try:
            # An object that is gone cannot be quarantined; its record says why.
            location = "" if isinstance(exc, ObjectMissing) else self.storage.quarantine(ref, code, reason)
            written = self.status.record(
                StatusRecord(
                    ref=ref,
                    outcome="error",
                    location=location,
                    code=code,
                    reason=reason,
                    model=self.model,
                    recorded_at=now_iso(),
                )
            )
            if location:
                self._release(ref)
        except Exception as failure:  # counted like any storage failure: the last attempt leaves a record
            return self._retry_or_give_up(ref, failure, attempt)
        log.warning("error for %s (%s): %s [%s]", ref.shown, ref.identity, reason, code)
        return "error" if written else "duplicate"

    def _release(self, ref: ObjectRef) -> None:
        try:
            self.storage.release(ref)
        except ObjectMissing:
            pass  # removed already, or replaced by a newer upload that is not ours to remove

    def _finish_release(self, ref: ObjectRef) -> None:
        """A delivery killed between its error record and the release left the original in
        place (move mode); the record and the quarantine copy exist, so finish the removal. A
        failure here is only logged: the record stands, and the next delivery tries again."""
        try:
            self._release(ref)
        except Exception:
            log.warning("recorded as poison, still in place (removal failed): %s", ref.shown)

    def _retry_or_give_up(self, ref: ObjectRef, exc: BaseException, attempt: int | None) -> Handled:
        reason = safe_reason(exc)
        try:
            failures = attempt if attempt is not None else self.status.count_failure(ref)
        except Exception:
            failures = 0  # the table is down too: retry without a count
        if failures is None:
            log.info("recorded meanwhile by another delivery: %s", ref.shown)
            return "duplicate"
        log.warning("transient failure %d/%d for %s: %s", failures, self.settings.max_attempts, ref.shown, reason)
        if failures >= self.settings.max_attempts:
            written = self._record_exhausted(ref, exc, failures)
            if written is not None and not self.redelivers:
                return "error" if written else "duplicate"
        raise TransientFailure(f"{ref.shown}: {reason}") from None

    def _record_exhausted(self, ref: ObjectRef, exc: BaseException, failures: int) -> bool | None:
        """The last attempt: the error record exists before the message goes to the DLQ.
        Whether it was written (False: another delivery's record was there), None if it failed."""
        try:
            return self.status.record(
                StatusRecord(
                    ref=ref,
                    outcome="error",
                    code=error_code(exc),
                    model=self.model,
                    reason=f"gave up after {failures} attempts: {safe_reason(exc)}",
                    attempts=failures,
                    retryable=True,
                    recorded_at=now_iso(),
                )
            )
        except Exception:
            where = "the dead-letter queue holds it" if self.redelivers else "it stays in place, to be tried again"
            log.error("could not record the final failure of %s: %s", ref.shown, where)
            return None
