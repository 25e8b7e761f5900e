"""What the pipeline passes around: the object it was told about and the record it leaves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Outcome = Literal["result", "error"]


class Settled(NamedTuple):
    """What the status table holds for an object already settled: its outcome, and where its
    result or quarantined copy lies ("" for an error with nothing kept, e.g. a vanished object)."""

    outcome: Outcome
    location: str


class Fetched(NamedTuple):
    """An object's bytes, and the API key that asked for its upload slot ("" when none did:
    a direct upload, a local file). S3 keeps the key id as the object's `medfn-key-id` metadata."""

    data: bytes
    key_id: str = ""


@dataclass(frozen=True)
class ObjectRef:
    """One uploaded object, as an event names it. Keys are already URL-decoded.

    `etag` (or else `version_id`) tells two uploads under one key apart;
    locally the folder backend puts the file's size and mtime in `etag`, as web servers do.
    """

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    scheme: str = "s3"  # "file" for `medfn watch`, whose bucket is the watched folder

    @property
    def versioned(self) -> bool:
        """S3 sends the version "null" for objects written before versioning was enabled."""
        return bool(self.version_id) and self.version_id != "null"

    @property
    def shown(self) -> str:
        """The key for a log line: control characters escaped, so a name cannot forge a line."""
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in self.key)

    @property
    def identity(self) -> str:
        """The idempotency key's second half: the ETag, else the version, else nothing known.

        The ETag first because every ObjectCreated shape carries it (direct, SQS, EventBridge),
        versioned bucket or not, so one upload is one record however its events arrive; the
        same bytes uploaded again under the same key are the same scan, with the same answer.
        """
        if self.etag:
            return f"etag:{self.etag.strip(chr(34))}"
        if self.versioned:
            return f"version:{self.version_id}"
        return "unversioned"

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class StatusRecord:
    """The one record every uploaded object ends with: a result or an error, never both.

    `retryable` marks an error written after the last attempt at a transient failure: a
    redrive from the dead-letter queue may still replace it with a result.
    """

    ref: ObjectRef
    outcome: Outcome
    location: str = ""  # where the result JSON or the quarantined object lies
    code: str = ""  # error code, e.g. "unprocessable-input"; empty for results
    reason: str = ""  # written by us, never a parser's text: safe to show and to log
    model: str = ""
    model_version: int | None = None  # None in error records: no model answered
    top_label: str = ""
    sop_instance_uid: str = ""
    attempts: int = 1
    retryable: bool = False
    recorded_at: str = ""
    # Series records only (medfn.pipeline.series): the instances answered about, counted by
    # arrival. A record of a later generation supersedes an earlier one; the current is the last.
    generation: int | None = None
    instances: int | None = None
    supersedes: int | None = None  # the generation whose record this one replaced
    key_id: str = ""  # the API key that asked for the upload slot, when one did

    def as_item(self) -> dict[str, Any]:
        """Flat, JSON- and DynamoDB-friendly fields (empty and unknown ones left out)."""
        item: dict[str, Any] = {
            "bucket": self.ref.bucket,
            "key": self.ref.key,
            "version_id": self.ref.version_id or "",
            "etag": self.ref.etag or "",
            "outcome": self.outcome,
            "location": self.location,
            "code": self.code,
            "reason": self.reason,
            "model": self.model,
            "model_version": self.model_version,
            "top_label": self.top_label,
            "sop_instance_uid": self.sop_instance_uid,
            "attempts": self.attempts,
            "retryable": self.retryable,
            "recorded_at": self.recorded_at,
            "generation": self.generation,
            "instances": self.instances,
            "supersedes": self.supersedes,
            "key_id": self.key_id,
        }
        return {name: value for name, value in item.items() if value not in ("", None)}


@dataclass(frozen=True)
class SeriesCheck:
    """ "Is this series complete yet?": sent after each instance's arrival, delayed by the settle
    time (in AWS, a delayed SQS message back to the function's own queue)."""

    series: str  # SeriesKey.id: "<function>/<StudyInstanceUID>/<SeriesInstanceUID>"
    generation: int  # how many instances had arrived when it was sent

    def as_message(self) -> dict[str, Any]:
        return {"medfn": "series-check", "series": self.series, "generation": self.generation}


@dataclass
class Announced:
    """The objects an event announces, and why the rest of it was ignored (medfn.sources)."""

    objects: list[ObjectRef] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    checks: list[SeriesCheck] = field(default_factory=list)


@dataclass
class BatchSummary:
    """What one event (or one folder pass) did, for the invoker and the logs."""

    results: int = 0
    errors: int = 0
    duplicates: int = 0
    ignored: int = 0
    instances: int = 0  # DICOM instances added to their series, answered when the series is complete
    transient: list[str] = field(default_factory=list)  # keys left for a retry

    def count(self, handled: str) -> None:
        """One object's outcome as ScanWorker.process returns it."""
        self.results += handled == "result"
        self.errors += handled == "error"
        self.duplicates += handled == "duplicate"
        self.instances += handled == "instance"

    def add(self, other: BatchSummary) -> None:
        self.results += other.results
        self.errors += other.errors
        self.duplicates += other.duplicates
        self.ignored += other.ignored
        self.instances += other.instances
        self.transient.extend(other.transient)

    def as_dict(self) -> dict[str, Any]:
        counts = {
            "results": self.results,
            "errors": self.errors,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "retrying": len(self.transient),
        }
        return counts | ({"instances": self.instances} if self.instances else {})
