"""One metered call, and the interface every meter implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

ANONYMOUS = "anonymous"  # the key id of a call no key was asked for (local serve without --api-keys)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    timestamp: float  # seconds since the epoch, when the call arrived
    api_key_id: str  # API Gateway's key id in AWS; the key's name in the local keys file
    model: str
    version: str  # the version that answered ("" when the call failed before choosing one)
    status: int
    duration_ms: float  # measured inside the function, as Lambda bills it (before rounding)
    billed_units: int  # 1 for an answered inference call; metadata, errors and health are free
    memory_mb: int  # the function's configured memory: with duration, what Lambda charges for
    request_id: str = ""


class Meter(Protocol):
    def record(self, usage: UsageRecord) -> None: ...
