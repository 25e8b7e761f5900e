"""DICOM instances to series, and a complete series to one current result: the series function's
side of the pipeline (medfn.pipeline.worker hands it every upload and every check).

    instance arrives -> header read (poison: quarantined like any scan) -> series table: added,
                        or a duplicate that changes nothing -> a check is sent, delayed by settle_s
    check arrives    -> stale (a later instance sent its own) or not settled: wait;
                        claimed by this worker -> fetch the instances -> volume -> model ->
                        seg.dcm, sr.dcm, result.json under results/<study>/<series>/ -> one status
                        record for the series -> the generation is marked answered

A corrupt instance (its pixels unreadable) is quarantined with its own error record and the series
goes on without it; if that leaves a gap, the series' record says so. A series that cannot be
answered (two orientations, one slice for a 3D model) gets an error record naming the problem.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from medfn.errors import ModelNotReady, NotFound, ObjectMissing, TransientFailure
from medfn.pipeline.failures import error_code, is_poison, safe_reason
from medfn.pipeline.series.checks import CheckSender
from medfn.pipeline.series.results import SeriesAnswer, render_series
from medfn.pipeline.series.table import Member, SeriesKey, SeriesState, SeriesTable
from medfn.pipeline.settings import PipelineSettings
from medfn.pipeline.status import StatusTable, now_iso
from medfn.pipeline.storage import ScanStorage
from medfn.pipeline.types import ObjectRef, SeriesCheck, StatusRecord
from medfn.serving import InferencePlane, Payload

if TYPE_CHECKING:
    from medfn.dicomweb.destination import ResultDestination

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 60.0

Checked = Literal["result", "error", "duplicate", "waiting"]
SERIES_MEDIA_TYPE = "application/dicom"  # a series is DICOM instances; Payload.volume holds them assembled


@dataclass
class SeriesWorker:
    plane: InferencePlane
    model: str
    function: str
    storage: ScanStorage
    status: StatusTable
    table: SeriesTable
    settings: PipelineSettings
    settle_s: float
    sender: CheckSender | None = None  # None: the caller polls the table for due series (medfn watch)
    result_prefix: str = ""  # put before "<study>/<series>" in result keys: in AWS the function's own prefix
    memory_mb: int = 1024
    lease_s: float = 900.0  # a claim outlives the longest run (Lambda's 15 minutes), then lapses
    redelivers: bool = True
    # Where the SEG and SR go besides storage (a PACS, by DICOMweb or C-STORE); delivered before the
    # status record, so a destination that stays down leaves the retryable error record, not a result
    destination: ResultDestination | None = None
    retry_s: float = 1.0
    # Without a redelivering transport, whether the last attempt's record ends the series (--once)
    # or it is tried again after the backoff until it succeeds (a watcher left running)
    give_up: bool = True  # without a redelivering transport: the first backoff, doubled per failure
    clock: Callable[[], float] = field(default=time.time)
    # Failed attempts per series where no transport counts them (medfn watch): the process is the transport
    _failures: dict[str, int] = field(default_factory=dict)

    # -- an instance arrives ----------------------------------------------------------------------

    def arrive(self, ref: ObjectRef, data: bytes) -> Literal["instance", "duplicate"]:
        """Add one uploaded instance to its series; raises UnprocessableInput for a file that is not
        a DICOM instance with its UIDs (the caller quarantines it, as any poison scan)."""
        from medfn.studies.headers import read_header

        header = read_header(data)
        key = SeriesKey(self.function, header.study_instance_uid, header.series_instance_uid)
        state, new = self.table.arrive(
            key, Member(header.sop_instance_uid, ref), header.expected_instances, self.clock()
        )
        # Sent for a duplicate too: a redelivered arrival whose first delivery died before sending
        self._send(SeriesCheck(key.id, state.arrived), max(0.0, state.settles_at(self.settle_s) - self.clock()))
        return "instance" if new else "duplicate"

    # -- a check arrives --------------------------------------------------------------------------

    def check(self, check: SeriesCheck, attempt: int | None = None, complete: bool = False) -> Checked:
        """Answer the series if it is complete and nobody else is on it; raises TransientFailure
        when it must be tried again (the check message is then redelivered). `complete`: the
        caller knows every instance is in (`medfn watch --once`, after its backlog)."""
        key = SeriesKey.parse(check.series)
        if key.function != self.function:
            log.info("ignored a check for another function's series")
            return "duplicate"
        state = self.table.state(key)
        if state is None or state.answered:
            return "duplicate"
        now = self.clock()
        if not complete and state.settles_at(self.settle_s) > now:
            if check.generation == state.arrived:  # an older check: the newest instance sent its own
                self._send(SeriesCheck(key.id, state.arrived), state.settles_at(self.settle_s) - now)
            return "waiting"
        if not self.table.claim(key, state.arrived, now, self.lease_s):
            # Another worker answers an earlier generation (or a failed one waits out its backoff):
            # look again a settle time later, until the claim is gone
            self._send(SeriesCheck(key.id, state.arrived), max(self.settle_s, 1.0))
            return "waiting"
        try:
            members = self.table.members(key)
        except Exception:
            self.table.release(key)
            raise
        ref = self.series_ref(key, members)
        try:
            outcome = self._answer(key, state, ref, members)
        except Exception as exc:  # never poison here: _answer records what the input caused
            return self._retry_or_give_up(key, state, ref, exc, attempt)
        self.table.finish(key, state.arrived)
        self._failures.pop(key.id, None)
        return outcome

    def series_ref(self, key: SeriesKey, members: list[Member]) -> ObjectRef:
        """The series as the status table and the results name it: series://<bucket>/<prefix><study>/<series>,
        in the bucket (or folder) its instances were uploaded to."""
        return ObjectRef(
            bucket=members[0].ref.bucket if members else self.function,
            key=f"{self.result_prefix}{key.study_instance_uid}/{key.series_instance_uid}",
            scheme="series",
        )

    def _answer(
        self, key: SeriesKey, state: SeriesState, ref: ObjectRef, members: list[Member]
    ) -> Literal["result", "error", "duplicate"]:
        from medfn.studies.volume import CorruptInstance, build_volume

        members, instances = self._fetch(key, members)
        try:
            while True:
                try:
                    volume = build_volume(instances, memory_mb=self.memory_mb)
                    break
                except CorruptInstance as bad:
                    self._quarantine_member(key, members.pop(bad.index), bad)
                    instances.pop(bad.index)
            try:
                model = self.plane.get(self.model)
            except NotFound as exc:  # the deployment's fault, not the series': retried
                raise ModelNotReady(exc.message) from None
            prediction = self.plane.predict_blocking(
                model, Payload(data=b"", media_type=SERIES_MEDIA_TYPE, volume=volume)
            )
        except Exception as exc:
            if not is_poison(exc):
                raise
            return self._record(
                StatusRecord(
                    ref=ref,
                    outcome="error",
                    code=error_code(exc),
                    reason=safe_reason(exc),
                    model=self.model,
                    recorded_at=now_iso(),
                    generation=state.arrived,
                    instances=len(instances),
                    supersedes=state.processed or None,
                ),
                key,
            )
        at = now_iso()
        answer = SeriesAnswer(
            volume=volume,
            prediction=prediction,
            model=model,
            body=prediction.answer(model, uuid.uuid4().hex),
            generation=state.arrived,
            supersedes=state.processed or None,
        )
        documents = render_series(answer, at, self.settings.formats)
        locations = {suffix: self.storage.write_result(ref, suffix, document) for suffix, document in documents.items()}
        if self.destination is not None:
            self.destination.deliver([documents[name] for name in ("/seg.dcm", "/sr.dcm") if name in documents])
        return self._record(
            StatusRecord(
                ref=ref,
                outcome="result",
                location=locations["/result.json"],
                model=model.name,
                model_version=model.version,
                top_label=str(prediction.label or ""),
                recorded_at=at,
                generation=state.arrived,
                instances=len(instances),
                supersedes=state.processed or None,
            ),
            key,
        )

    def _fetch(self, key: SeriesKey, members: list[Member]) -> tuple[list[Member], list[bytes]]:
        """Every instance still in the series, with its bytes; a vanished one is left out."""
        kept, instances = [], []
        for member in members:
            if member.excluded:
                continue
            try:
                instances.append(self.storage.fetch(member.ref).data)
            except ObjectMissing:
                self.table.exclude(key, member.sop_instance_uid, "its object is gone")
                continue
            kept.append(member)
        return kept, instances

    def _quarantine_member(self, key: SeriesKey, member: Member, exc: BaseException) -> None:
        code, reason = error_code(exc), safe_reason(exc)
        location = self.storage.quarantine(member.ref, code, reason)
        self.status.record(
            StatusRecord(
                ref=member.ref,
                outcome="error",
                location=location,
                code=code,
                reason=reason,
                model=self.model,
                recorded_at=now_iso(),
            )
        )
        if location:
            try:
                self.storage.release(member.ref)
            except ObjectMissing:
                pass
        self.table.exclude(key, member.sop_instance_uid, reason)
        log.warning("instance %s quarantined, its series goes on without it: %s", member.ref.shown, reason)

    def _record(self, record: StatusRecord, key: SeriesKey) -> Literal["result", "error", "duplicate"]:
        if not self.status.record(record):
            log.info("a later generation of series %s was recorded meanwhile; kept it", _short(key))
            return "duplicate"
        done = f"{record.top_label or '-'}" if record.outcome == "result" else f"{record.reason} [{record.code}]"
        log.info("%s for series %s (generation %s): %s", record.outcome, _short(key), record.generation, done)
        return record.outcome

    def _retry_or_give_up(
        self, key: SeriesKey, state: SeriesState, ref: ObjectRef, exc: BaseException, attempt: int | None
    ) -> Checked:
        reason = safe_reason(exc)
        if attempt is None:
            self._failures[key.id] = self._failures.get(key.id, 0) + 1
        failures = attempt if attempt is not None else self._failures[key.id]
        backoff = 0.0 if self.redelivers else min(self.retry_s * 2 ** (failures - 1), _MAX_BACKOFF_S)
        try:
            self.table.release(key, until=self.clock() + backoff if backoff else 0.0)
        except Exception:
            log.warning("could not release series %s: its claim lapses by itself", _short(key))
        log.warning(
            "transient failure %d/%d for series %s: %s", failures, self.settings.max_attempts, _short(key), reason
        )
        if failures >= self.settings.max_attempts:
            try:
                self.status.record(
                    StatusRecord(
                        ref=ref,
                        outcome="error",
                        code=error_code(exc),
                        model=self.model,
                        reason=f"gave up after {failures} attempts: {reason}",
                        attempts=failures,
                        retryable=True,
                        recorded_at=now_iso(),
                        generation=state.arrived,
                    )
                )
                if not self.redelivers and self.give_up:  # `medfn watch --once`: this record is its outcome
                    self.table.finish(key, state.arrived)
                    return "error"
            except Exception:
                log.error("could not record the final failure of series %s", _short(key))
        raise TransientFailure(f"series {_short(key)}: {reason}") from None

    def _send(self, check: SeriesCheck, delay_s: float) -> None:
        if self.sender is not None:
            self.sender.send(check, delay_s)


def _short(key: SeriesKey) -> str:
    """A series in a log line: its UID's tail, enough to find it, not a full identifier."""
    return f"...{key.series_instance_uid[-12:]}"
