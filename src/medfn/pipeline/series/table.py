"""The series table: which instances of a series have arrived, and which generation is answered.

One record per series and one per instance, in DynamoDB in AWS and SQLite locally. Each new
instance (a SOP Instance UID not seen in its series) adds one to `arrived`: the series'
generation. A series is answered for one generation at a time, by the one worker that claimed it;
`processed` is the generation whose result is current, so an instance that arrives later makes
the series due again and its new result supersedes the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from medfn.pipeline.types import ObjectRef


@dataclass(frozen=True)
class SeriesKey:
    function: str
    study_instance_uid: str
    series_instance_uid: str

    @property
    def id(self) -> str:
        """The table's partition key; the function first, so each function's role sees only its own."""
        return f"{self.function}/{self.study_instance_uid}/{self.series_instance_uid}"

    @classmethod
    def parse(cls, text: str) -> SeriesKey:
        function, study, series = text.split("/")
        return cls(function, study, series)


@dataclass(frozen=True)
class Member:
    """One instance of a series: where its object lies, and why it was left out (if it was)."""

    sop_instance_uid: str
    ref: ObjectRef
    excluded: str = ""  # the reason it is not part of the volume: a corrupt instance, a vanished one


@dataclass(frozen=True)
class SeriesState:
    key: SeriesKey
    arrived: int  # distinct instances so far: the generation a result now would answer
    last_arrival: float  # epoch seconds
    expected: int | None  # how many instances the headers announce, when they do
    processed: int  # the generation whose result (or error) is current; 0: none yet
    claimed_until: float  # epoch seconds; a worker answering the series holds it until then

    @property
    def answered(self) -> bool:
        return self.processed >= self.arrived

    def settles_at(self, settle_s: float) -> float:
        """When the series counts as complete: at once when every announced instance is here."""
        if self.expected is not None and self.arrived >= self.expected:
            return self.last_arrival
        return self.last_arrival + settle_s


class SeriesTable(Protocol):
    def arrive(self, key: SeriesKey, member: Member, expected: int | None, now: float) -> tuple[SeriesState, bool]:
        """Add an instance; the series after it, and whether it was new (False: a duplicate,
        which changes nothing). The instance record and the count change together or not at all."""
        ...

    def state(self, key: SeriesKey) -> SeriesState | None: ...

    def members(self, key: SeriesKey) -> list[Member]: ...

    def claim(self, key: SeriesKey, generation: int, now: float, lease_s: float) -> bool:
        """Take the series to answer `generation`: only while no live claim is held and no result
        of that generation (or a later one) exists. False: another worker has it, or it is done."""
        ...

    def finish(self, key: SeriesKey, generation: int) -> None:
        """`generation` is answered (never lowering `processed`); the claim is dropped."""
        ...

    def release(self, key: SeriesKey, until: float = 0.0) -> None:
        """Drop the claim after a failure: the next check may try again from `until` (epoch
        seconds; 0: at once). Locally that is the retry's backoff; SQS makes its own."""
        ...

    def exclude(self, key: SeriesKey, sop_instance_uid: str, reason: str) -> None:
        """Leave one instance out of the series from now on (it was quarantined)."""
        ...
