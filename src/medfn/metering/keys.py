"""Local API keys, enforced the way API Gateway enforces them (for `medfn serve --api-keys`).

A missing or unknown key gets 403 `{"message": "Forbidden"}`; a key over its tier's rate
gets 429 `{"message": "Too Many Requests"}`, and over its quota 429 `{"message": "Limit
Exceeded"}`: the statuses and bodies API Gateway sends, so clients can be tested locally.

The keys file (TOML):

    tiers_file = "../infra/tiers.toml"  # relative to this file; default: ./infra/tiers.toml;
                                        # or write [tiers.<name>] tables here instead
    [keys.clinic-a]              # the key's id: what usage records and `medfn usage` show
    value = "a-long-random-secret"
    tier = "standard"
"""

from __future__ import annotations

import threading
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from medfn.metering.tiers import Tier, load_tiers, parse_tiers

FORBIDDEN = (403, "Forbidden")
TOO_MANY_REQUESTS = (429, "Too Many Requests")
LIMIT_EXCEEDED = (429, "Limit Exceeded")
DEFAULT_TIERS = Path("infra") / "tiers.toml"  # the file the CDK app makes usage plans from


@dataclass(frozen=True)
class ApiKey:
    id: str
    value: str
    tier: Tier


def load_keys(path: Path, default_tiers: Path | None = None) -> list[ApiKey]:
    raw = tomllib.loads(path.read_text("utf-8"))
    tiers = parse_tiers(raw)  # tiers written inline, else a tiers file
    if not tiers:
        named = raw.get("tiers_file")
        tiers = load_tiers(path.parent / str(named) if named else (default_tiers or DEFAULT_TIERS))
    keys = []
    for key_id, spec in raw.get("keys", {}).items():
        tier = tiers.get(str(spec.get("tier", "")))
        if tier is None:
            raise ValueError(f"key {key_id}: tier {spec.get('tier')!r} is not one of {sorted(tiers)}")
        if len(str(spec.get("value", ""))) < 20:
            raise ValueError(f"key {key_id}: value must be at least 20 characters (API Gateway's minimum)")
        keys.append(ApiKey(id=key_id, value=str(spec["value"]), tier=tier))
    if not keys:
        raise ValueError(f"{path} defines no [keys.<id>] table")
    return keys


def period_start(period: str, now: float) -> float:
    """Start of the current quota period, in UTC as API Gateway counts it."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "WEEK":
        day -= timedelta(days=day.weekday())
    elif period == "MONTH":
        day = day.replace(day=1)
    return day.timestamp()


class _Allowance:
    """A token bucket for the rate and a counter for the quota of one key."""

    def __init__(self, tier: Tier, used: int, now: float) -> None:
        self.tier = tier
        self.tokens = float(tier.burst_limit)
        self.refilled = now
        self.period = period_start(tier.period, now)
        self.used = used

    def take(self, now: float) -> tuple[int, str] | None:
        period = period_start(self.tier.period, now)
        if period != self.period:
            self.period, self.used = period, 0
        if self.used >= self.tier.quota:
            return LIMIT_EXCEEDED
        self.tokens = min(self.tier.burst_limit, self.tokens + (now - self.refilled) * self.tier.rate_limit)
        self.refilled = now
        if self.tokens < 1:
            return TOO_MANY_REQUESTS
        self.tokens -= 1
        self.used += 1
        return None


class KeyGate:
    def __init__(self, keys: list[ApiKey], used: dict[str, int] | None = None, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        now = clock()
        self._by_value = {key.value: key for key in keys}
        self._allowances = {key.id: _Allowance(key.tier, (used or {}).get(key.id, 0), now) for key in keys}
        self._clock = clock
        self._lock = threading.Lock()  # uvicorn may run the app on more than one thread

    @property
    def keys(self) -> list[ApiKey]:
        return list(self._by_value.values())

    def admit(self, value: str | None) -> tuple[str, tuple[int, str] | None]:
        """(key id, None) when the call may go on, else (key id or "", (status, message))."""
        key = self._by_value.get(value or "")
        if key is None:
            return "", FORBIDDEN
        with self._lock:
            return key.id, self._allowances[key.id].take(self._clock())
