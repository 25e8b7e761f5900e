"""Status records: one per uploaded object version, written once, whichever way it was delivered.

Both backends (DynamoDB in AWS, SQLite locally) keep the same rule with a conditional write:
a record is written only where none settles the object yet. An error record written after the
last transient failure is marked `retryable`, so a redrive from the dead-letter queue that
succeeds replaces it with the result; nothing else is ever replaced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from medfn.pipeline.types import ObjectRef, Settled, StatusRecord


class StatusTable(Protocol):
    def settled(self, ref: ObjectRef) -> Settled | None:
        """The outcome (and location) already recorded for `ref`, not open to a retry, or None."""
        ...

    def record(self, record: StatusRecord) -> bool:
        """Write `record` unless `ref` is settled; False when another delivery got there first."""
        ...

    def used_before(self, ref: ObjectRef) -> bool:
        """Whether another upload under `ref`'s key has a record (or a counted failure): an upload
        slot buys one scan, even after the first was quarantined and its version removed."""
        ...

    def count_failure(self, ref: ObjectRef) -> int | None:
        """Add one transient failure and return the count; None when `ref` is settled meanwhile."""
        ...


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
